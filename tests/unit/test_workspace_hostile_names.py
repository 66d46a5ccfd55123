"""Names and repositories an experiment leaves in its folder never change what the engine's
own git records: a child-chosen name cannot add a rule to the engine-owned
``info/exclude``, and no commit records a nested repository (a gitlink), whatever the
bounded scan before the commit saw."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from aisci.engine.lab import workspace
from aisci.engine.lab.workspace import MAX_COMMIT_BYTES, IdeaWorkspace
from support.labs import idea_row

#: Names git reads specially in an exclude line, or that cannot be one line at all.
HOSTILE_NAMES = ["x\nrun_2", "x\rrun_2", "x\r\nrun_2", "!run_2", "#run_2", "trail ",
                 "trail\t", "back\\", "st*r", "q?", "br[a]", "\\!", " lead", "a\x1bb"]


@pytest.fixture
def ws(tmp_path, template, baseline):
    return IdeaWorkspace.create(tmp_path / "lab", idea_row(), template, True,
                                baseline=baseline)


def _exclude_lines(ws: IdeaWorkspace) -> list[bytes]:
    return (ws.git_dir / "info" / "exclude").read_bytes().split(b"\n")


def _honest_run_2(ws: IdeaWorkspace) -> None:
    """What the next, honest run writes: its results and a file at the top."""
    (ws.path / "run_2").mkdir()
    (ws.path / "run_2" / "final_info.json").write_text('{"toy": {"means": {"loss": 1}}}')
    (ws.path / "run_2" / "x").write_text("honest")
    (ws.path / "keep").write_text("kept")
    (ws.path / "run_2" / "lead").write_text("kept")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_nested_repository_name_adds_no_exclude_rule(ws, name):
    nested = ws.path / "run_1" / name
    nested.mkdir(parents=True)
    (nested / ".git").mkdir()
    (nested / "data.txt").write_text("inside the nested repository")
    before = len(_exclude_lines(ws))
    ws.commit("run_1: hostile name")
    ws.tag("run_1")
    assert len(_exclude_lines(ws)) == before + 1  # one line, however the name is made
    assert not any(t.startswith("run_1/") for t in ws.git.ls_files().split("\n"))
    _honest_run_2(ws)
    ws.commit("run_2: honest")
    ws.tag("run_2")
    for rel in ("run_2/final_info.json", "run_2/x", "keep", "run_2/lead"):
        assert ws.file_at("run_2", rel) is not None, rel
    assert not ws.dirty()


@pytest.mark.parametrize("name", ["big\nrun_2", "big\r*", "!big", "#big ", "big\\"])
def test_a_large_file_name_adds_no_exclude_rule(ws, name):
    (ws.path / "run_1").mkdir()
    with (ws.path / "run_1" / name).open("wb") as fh:
        fh.truncate(MAX_COMMIT_BYTES + 1)
    before = len(_exclude_lines(ws))
    ws.commit("run_1: large file")
    assert len(_exclude_lines(ws)) == before + 1
    assert ws.git.ls_files("--", "run_1").strip() == ""
    _honest_run_2(ws)
    ws.commit("run_2: honest")
    ws.tag("run_2")
    assert ws.file_at("run_2", "run_2/final_info.json") is not None
    assert ws.file_at("run_2", "keep") == "kept" and not ws.dirty()


def test_a_name_that_is_not_utf8_is_excluded_as_its_bytes(ws):
    run1 = os.fsencode(ws.path / "run_1")
    os.makedirs(run1 + b"/bad\xff\nrun_2/.git")
    with open(run1 + b"/big\xfe", "wb") as fh:
        fh.truncate(MAX_COMMIT_BYTES + 1)
    ws.commit("run_1: undecodable names")
    lines = _exclude_lines(ws)
    assert b"/run_1/bad\xff?run_2/" in lines and b"/run_1/big\xfe" in lines
    _honest_run_2(ws)
    ws.commit("run_2: honest")
    ws.tag("run_2")
    assert ws.file_at("run_2", "run_2/final_info.json") is not None and not ws.dirty()


def _git_repo(path: Path) -> None:
    """A real repository with one commit at ``path`` (git would record it as a gitlink)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(path), "GIT_CONFIG_NOSYSTEM": "1"}
    path.mkdir(parents=True)
    (path / "f").write_text("x")
    for args in (["init", "-q"], ["add", "f"],
                 ["-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True,
                       env=env)


def test_a_nested_repository_past_the_scan_bound_is_never_a_gitlink(ws, monkeypatch):
    monkeypatch.setattr(workspace, "_MAX_SCAN_ENTRIES", 50)
    filler = ws.path / "a"
    filler.mkdir()
    for i in range(60):  # the scan stops before it reaches a/zz (walked after the files)
        (filler / f"{i:02d}").write_text("")
    _git_repo(filler / "zz")
    _git_repo(ws.path / "b" / "line\nbreak")
    ws.commit("run_1: past the scan")
    staged = ws.git.ls_files("--stage", "-z").split("\0")
    assert not [e for e in staged if e.startswith("160000")]
    assert ws.git.ls_tree("-r", "HEAD", "--", "a/zz", "b") == ""
    assert "a/00" in ws.git.ls_files("--", "a").split("\n")  # the rest is committed
    assert "/a/zz/" in (ws.git_dir / "info" / "exclude").read_text()
    assert not ws.dirty()
    ws.commit("run_2: again")  # stays out
    assert ws.git.ls_tree("-r", "HEAD", "--", "a/zz", "b") == ""
