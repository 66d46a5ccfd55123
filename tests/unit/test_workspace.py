"""The idea workspace: template copy, git history per run, diffs, big-file exclusion."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from aisci.engine.lab.layout import git_dir
from aisci.engine.lab.workspace import (
    MAX_COMMIT_BYTES,
    IdeaWorkspace,
    WorkspaceError,
    format_results,
    read_final_info,
)
from support.labs import idea_row


def git(path: Path, *args: str) -> str:
    """Plain git as a user runs it on an idea (README: the git dir is under repos/)."""
    return subprocess.run(["git", f"--git-dir={git_dir(path)}", f"--work-tree={path}",
                           *args], capture_output=True, text=True, check=True,
                          cwd=path).stdout


def test_create_copies_template_commits_base_and_starts_notes(tmp_path, template, baseline):
    lab = tmp_path / "lab"
    ws = IdeaWorkspace.create(lab, idea_row(), template, True, baseline=baseline)
    assert ws.path == lab / "ideas" / "1-faster_lr"
    files = set(git(ws.path, "ls-files").split())
    assert {"experiment.py", "plot.py", "prompt.json", "notes.txt", ".gitignore",
            "run_0/final_info.json"} <= files
    assert not any(f.startswith(("run_3", "logs/", "__pycache__")) for f in files)
    assert not (ws.path / "run_3").exists() and not (ws.path / "__pycache__").exists()
    assert "base" in ws.tags() and not ws.dirty()
    notes = (ws.path / "notes.txt").read_text()
    assert "A faster learning rate" in notes and "Raise the learning rate" in notes
    assert "final_loss=0.5" in notes
    assert "__pycache__/" in (ws.path / ".gitignore").read_text()
    assert git(ws.path, "config", "user.name").strip() == "aisci"
    # Idempotent: a second create returns the same repo without new commits.
    head = ws.head_sha()
    again = IdeaWorkspace.create(lab, idea_row(), template, True, baseline=baseline)
    assert again.head_sha() == head and len(again.log()) == 1


def test_create_without_baseline_then_add_baseline_moves_base(tmp_path, template, baseline):
    lab = tmp_path / "lab"
    ws = IdeaWorkspace.create(lab, idea_row(), template, True, baseline=tmp_path / "missing")
    assert "(not available)" in (ws.path / "notes.txt").read_text()
    first = ws.head_sha()
    ws.add_baseline(baseline, idea_row(), template)
    assert ws.head_sha() != first and ws.repo.commit("base").hexsha == ws.head_sha()
    assert "final_loss=0.5" in (ws.path / "notes.txt").read_text()


def simulate_run(ws: IdeaWorkspace, i: int, old: str, new: str, loss: float) -> str:
    exp = ws.path / "experiment.py"
    exp.write_text(exp.read_text().replace(old, new))
    ws.commit(f"run_{i}: set {new}")
    (ws.path / f"run_{i}").mkdir()
    (ws.path / f"run_{i}" / "final_info.json").write_text(
        json.dumps({"toy": {"means": {"final_loss": loss}}}))
    (ws.path / "logs").mkdir(exist_ok=True)
    (ws.path / "logs" / f"run_{i}.log").write_text("training...\n")
    sha = ws.commit(f"run_{i}: set {new}", amend=True)
    ws.tag(f"run_{i}")
    return sha


def test_run_history_diffs_and_files(tmp_path, template, baseline):
    ws = IdeaWorkspace.create(tmp_path / "lab", idea_row(), template, True, baseline=baseline)
    simulate_run(ws, 1, "LEARNING_RATE = 0.01", "LEARNING_RATE = 0.05", 0.1)
    # a failed attempt of run 2 keeps its edit in its own commit
    exp = ws.path / "experiment.py"
    exp.write_text(exp.read_text().replace("STEPS = 200", "STEPS = oops"))
    ws.commit("run_2: more steps")
    ws.commit("run_2 attempt 1 (failed: exit code 1)", amend=True)
    simulate_run(ws, 2, "STEPS = oops", "STEPS = 400", 0.05)

    assert ws.finished_runs() == [1, 2]
    subjects = [s for _, s in ws.log()]
    assert subjects[:3] == ["run_2: set STEPS = 400", "run_2 attempt 1 (failed: exit code 1)",
                            "run_1: set LEARNING_RATE = 0.05"]
    d1 = ws.run_diff(1)
    assert "-LEARNING_RATE = 0.01" in d1 and "+LEARNING_RATE = 0.05" in d1
    assert "final_info" not in d1 and "logs/" not in d1  # code only by default
    assert "run_1/final_info.json" in ws.run_diff(1, code_only=False)
    d2 = ws.run_diff(2)
    assert "-STEPS = 200" in d2 and "+STEPS = 400" in d2 and "-LEARNING_RATE" not in d2
    files = ws.run_files(2)
    assert set(files) == {"experiment.py"}
    before, after = files["experiment.py"]
    assert "STEPS = 200" in before and "STEPS = 400" in after
    assert ws.run_files(1, code_only=False)["run_1/final_info.json"][0] is None
    # the same diff plain git gives
    assert git(ws.path, "diff", "run_1..run_2", "--", "experiment.py").strip() in d2
    with pytest.raises(WorkspaceError, match="run_3 has not finished"):
        ws.run_diff(3)


def test_large_files_are_ignored_not_committed(tmp_path, template, baseline):
    ws = IdeaWorkspace.create(tmp_path / "lab", idea_row(), template, True, baseline=baseline)
    (ws.path / "run_1").mkdir()
    big = ws.path / "run_1" / "weights.npy"
    with big.open("wb") as fh:
        fh.truncate(MAX_COMMIT_BYTES + 1)
    (ws.path / "run_1" / "final_info.json").write_text("{}")
    ws.commit("run_1: test")
    tracked = git(ws.path, "ls-files").split()
    assert "run_1/final_info.json" in tracked and "run_1/weights.npy" not in tracked
    assert "/run_1/weights.npy" in (ws.git_dir / "info" / "exclude").read_text()
    assert big.exists() and not ws.dirty()
    # a tracked log that grows past the cap stops being tracked (it stays on disk)
    log = ws.path / "logs" / "run_1.log"
    log.parent.mkdir()
    log.write_text("small\n")
    ws.commit("run_1: small log")
    assert "logs/run_1.log" in git(ws.path, "ls-files").split()
    with log.open("ab") as fh:
        fh.truncate(MAX_COMMIT_BYTES + 10)
    ws.commit("run_1 attempt 2")
    assert "logs/run_1.log" not in git(ws.path, "ls-files").split()
    assert log.stat().st_size > MAX_COMMIT_BYTES and not ws.dirty()


def test_restore_to_and_commit_notes(tmp_path, template, baseline):
    ws = IdeaWorkspace.create(tmp_path / "lab", idea_row(), template, True, baseline=baseline)
    (ws.path / "helper.py").write_text("X = 1\n")
    (ws.path / "experiment.py").write_text("broken")
    ws.commit("run_1: broken")
    (ws.path / "scratch.txt").write_text("untracked")
    ws.restore_to("base")
    assert not (ws.path / "helper.py").exists() and not (ws.path / "scratch.txt").exists()
    assert "LEARNING_RATE" in (ws.path / "experiment.py").read_text()
    ws.commit("run_1: restart from base")
    assert ws.repo.commit("HEAD").tree == ws.repo.commit("base").tree
    assert ws.commit_notes() is None
    (ws.path / "notes.txt").write_text("new notes\n")
    sha = ws.commit_notes("notes: figures")
    assert sha == ws.head_sha() and ws.head_message() == "notes: figures"


def test_open_rejects_a_plain_folder(tmp_path):
    with pytest.raises(WorkspaceError, match="not an idea workspace"):
        IdeaWorkspace.open(tmp_path)


@pytest.mark.parametrize("content, message", [
    (None, "was not written"),
    ("{not json", "not valid JSON"),
    ("[]", "non-empty object"),
    ('{"toy": {"loss": 1}}', "has no 'means'"),
    ('{"toy": {"means": {"loss": "low"}}}', "expected a number"),
])
def test_read_final_info_rejects_bad_results(tmp_path, content, message):
    run = tmp_path / "run_1"
    run.mkdir()
    if content is not None:
        (run / "final_info.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_final_info(run)


def test_format_results_states_direction_only_when_declared():
    base = {"d": {"means": {"final_loss": 1.0, "time": 10.0}}}
    new = {"d": {"means": {"final_loss": 0.5, "time": 12.0}}}
    text = format_results(new, base, ["final_loss"], [])
    assert "final_loss=0.5 (baseline 1, -0.5, better)" in text
    assert "time=12 (baseline 10, +2)" in text
