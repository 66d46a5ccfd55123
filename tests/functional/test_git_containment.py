"""Git is immune to what an experiment leaves in its idea folder.

Each payload is what hostile experiment code can write in its folder: a planted ``.git``
with hooks and an fsmonitor command, attribute filters, a nested repository, symlinks.
After each one the engine commits (as it does after every run) and nothing the payload
asked for runs: the marker file its commands would create never appears, and the
engine's own history keeps working.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from aisci.engine.lab.layout import git_dir
from aisci.engine.lab.workspace import IdeaWorkspace, adopt_legacy_git_dir
from support.labs import idea_row


def _script(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho pwned-$$ >> {marker}\nenv >> {marker}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _plant_git(root: Path, marker: Path) -> None:
    """A ``.git`` (directory) at ``root`` whose config and hooks run ``marker`` scripts."""
    g = root / ".git"
    subprocess.run(["git", "init", "-q", str(root)], check=True, capture_output=True,
                   env={"PATH": os.environ["PATH"], "HOME": str(root)})
    cmd = root / "evil.sh"
    _script(cmd, marker)
    for hook in ("pre-commit", "post-commit", "commit-msg", "post-checkout",
                 "reference-transaction", "post-index-change", "fsmonitor-watchman"):
        _script(g / "hooks" / hook, marker)
    with (g / "config").open("a") as fh:
        fh.write(f"[core]\n\tfsmonitor = {cmd}\n\thooksPath = {g / 'hooks'}\n"
                 f"\tpager = {cmd}\n[filter \"evil\"]\n\tclean = {cmd}\n\tsmudge = {cmd}\n"
                 f"\tprocess = {cmd}\n[diff \"evil\"]\n\ttextconv = {cmd}\n"
                 f"[diff]\n\texternal = {cmd}\n[alias]\n\tadd = !{cmd}\n"
                 f"[include]\n\tpath = {root / 'more.cfg'}\n")
    (root / "more.cfg").write_text(f"[core]\n\tfsmonitor = {cmd}\n")


@pytest.fixture
def ws(tmp_path, template, baseline):
    return IdeaWorkspace.create(tmp_path / "lab", idea_row(), template, True,
                                baseline=baseline)


def test_git_dir_lives_outside_the_idea_folder(ws):
    assert not (ws.path / ".git").exists()
    assert ws.git_dir == ws.path.parent.parent / "repos" / f"{ws.path.name}.git"
    assert (ws.git_dir / "HEAD").is_file() and "base" in ws.tags()


def test_planted_dot_git_hooks_fsmonitor_filters_never_run(ws, tmp_path):
    marker = tmp_path / "marker"
    _plant_git(ws.path, marker)
    (ws.path / ".gitattributes").write_text("* filter=evil diff=evil\n")
    (ws.path / "experiment.py").write_text("print('changed')\n")
    (ws.path / "new.txt").write_text("new\n")
    ws.commit("run_1: payload")
    ws.tag("run_1")
    ws.run_diff(1)
    ws.dirty()
    ws.restore_to("base")
    ws.commit("run_1: restart")
    assert not marker.exists()
    # the engine's repository recorded the run; the planted .git is never committed
    assert ws.head_message() == "run_1: restart"
    assert ws.file_at("run_1", "new.txt") == "new\n"
    assert ws.file_at("run_1", ".git/config") is None


def test_nested_repository_is_left_out_and_not_entered(ws, tmp_path):
    marker = tmp_path / "marker"
    nested = ws.path / "sub"
    nested.mkdir()
    (nested / "data.txt").write_text("x")
    _plant_git(nested, marker)
    ws.commit("run_1: nested repo")
    ws.tag("run_1")
    ws.dirty()  # status must not enter the nested repository
    ws.run_files(1)
    (nested / "data.txt").write_text("y")
    ws.commit("run_2: nested repo changed")
    assert not marker.exists()
    tracked = ws.git.ls_files().split()
    assert not any(t.startswith("sub") for t in tracked)
    assert "/sub/" in (ws.git_dir / "info" / "exclude").read_text()


def test_engine_secrets_and_stray_git_variables_do_not_reach_git(ws, monkeypatch):
    """The engine's own git processes run without its API keys or a caller's GIT_*."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-for-git-test")
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", "/bin/false")
    again = IdeaWorkspace.open(ws.path)  # the environment is computed at open
    seen = again.git.execute(["env"])  # what every git command of the engine gets
    assert "sk-ant-secret-for-git-test" not in seen and "/bin/false" not in seen
    assert f"GIT_DIR={again.git_dir}" in seen and "GIT_CONFIG_NOSYSTEM=1" in seen


def test_symlinked_paths_are_committed_as_links_not_followed(ws, tmp_path):
    secret = tmp_path / "host_secret.txt"
    secret.write_text("ssh-rsa PRIVATE")
    (ws.path / "leak.txt").symlink_to(secret)
    (ws.path / "leakdir").symlink_to(tmp_path)
    ws.commit("run_1: links")
    ws.tag("run_1")
    assert ws.file_at("run_1", "leak.txt") == str(secret)  # the link text, not the file
    assert "PRIVATE" not in ws.run_diff(1, code_only=False)
    ws.restore_to("base")
    assert secret.read_text() == "ssh-rsa PRIVATE" and tmp_path.is_dir()


def test_legacy_git_dir_is_adopted_and_repinned(tmp_path, template, baseline):
    ws = IdeaWorkspace.create(tmp_path / "lab", idea_row(), template, True,
                              baseline=baseline)
    marker = tmp_path / "marker"
    # the layout of older labs: the git dir inside the idea folder, edited by a run
    os.replace(ws.git_dir, ws.path / ".git")
    g = ws.path / ".git"
    _script(g / "hooks" / "post-commit", marker)
    with (g / "config").open("a") as fh:
        fh.write(f"[core]\n\tfsmonitor = {g / 'hooks' / 'post-commit'}\n\tbare = false\n")
    assert adopt_legacy_git_dir(ws.path)
    again = IdeaWorkspace.open(ws.path)
    (again.path / "experiment.py").write_text("print(2)\n")
    again.commit("run_1: after adoption")
    assert not marker.exists() and not (again.path / ".git").exists()
    assert git_dir(again.path) == again.git_dir and "base" in again.tags()
    assert "fsmonitor" not in (again.git_dir / "config").read_text()


def test_plain_git_inspection_as_documented(ws):
    """README: ``git -C repos/<idea>.git log`` and ``diff run_1 run_2`` work."""
    (ws.path / "experiment.py").write_text("print('run 1')\n")
    ws.commit("run_1: one")
    ws.tag("run_1")
    out = subprocess.run(["git", "-C", str(ws.git_dir), "log", "--oneline"],
                         capture_output=True, text=True, check=True).stdout
    assert "run_1: one" in out
    diff = subprocess.run(["git", "-C", str(ws.git_dir), "diff", "base", "run_1"],
                          capture_output=True, text=True, check=True).stdout
    assert "print('run 1')" in diff
