"""``aisci`` and ``aisci-tui`` (in-process) on a bad lab or a bad machine: one line on
stderr naming the file, exit code 2, no traceback, nothing created; a bug in aisci-tui is
one line naming the file that holds its traceback."""

from __future__ import annotations

import errno
import json
import os
import sqlite3

import pytest
from aisci.engine.cli import main as cli_main
from aisci.engine.errors import EXIT_FAILED, EXIT_USAGE
from aisci.engine.lab.store import LabStore
from aisci.tui import launch
from aisci.tui import main as tui

IDEA = {"Name": "wd", "Title": "Weight decay", "Experiment": "Vary the weight decay.", "Interestingness": 5,
        "Feasibility": 5, "Novelty": 5}


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AISCI_USER_CONFIG", str(tmp_path / "no-user-config.toml"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.mark.parametrize("command", [["approve", "1"], ["veto", "1", "--why", "x"],
                                     ["ideas", "check", "1"],
                                     ["ideas", "edit", "1", "--field", "Feasibility=3"],
                                     ["ideas", "list"], ["status"]])
def test_commands_on_a_missing_lab_create_nothing(tmp_path, capsys, command):
    lab = tmp_path / "typo" / "lab"
    assert cli_main([*command, "--lab", str(lab)]) == EXIT_USAGE
    assert _one_line(capsys.readouterr().err).startswith(f"aisci: no lab at {lab} (no aisci.db)")
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("command", [["status"], ["ideas", "list"], ["approve", "1"]])
def test_a_damaged_database_is_one_line(tmp_path, capsys, command):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "aisci.db").write_text("hello\n")
    assert cli_main([*command, "--lab", str(tmp_path / "lab")]) == EXIT_USAGE
    assert _one_line(capsys.readouterr().err) == (
        f"aisci: {tmp_path / 'lab' / 'aisci.db'} is not a usable lab database (file is not "
        "a database); restore it from a backup, or move it aside to start the lab's "
        "database afresh")


def test_a_full_disk_during_a_command_is_one_line(tmp_path, capsys, monkeypatch):
    lab = tmp_path / "lab"
    src = tmp_path / "ideas.json"
    src.write_text(json.dumps([IDEA]))
    assert cli_main(["ideas", "import", str(src), "--lab", str(lab)]) == 0

    def full(self, *a, **k):  # what SQLite says when the lab's disk fills up mid-write
        with self._naming_errors():
            raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(LabStore, "update_idea", full)
    capsys.readouterr()
    assert cli_main(["approve", "1", "--lab", str(lab)]) == EXIT_USAGE
    assert _one_line(capsys.readouterr().err) == (
        f"aisci: {lab / 'aisci.db'}: no space left on device (the lab's disk is full; free "
        "space, then run the command again; `aisci resume` continues a batch)")


def test_aisci_tui_on_a_damaged_or_uncreatable_lab_is_one_line(tmp_path, capsys):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "aisci.db").mkdir()
    assert tui.main(["--lab", str(tmp_path / "lab")]) == EXIT_USAGE
    assert "aisci.db is not a usable lab database (it is a directory)" in _one_line(
        capsys.readouterr().err)
    (tmp_path / "afile").write_text("x")
    assert tui.main(["--lab", str(tmp_path / "afile"), "--demo"]) == EXIT_USAGE
    assert _one_line(capsys.readouterr().err) == (
        f"aisci-tui: cannot create the lab folder {tmp_path / 'afile'}: it exists and is "
        "not a directory; choose another folder with --lab")


def test_aisci_tui_reports_a_full_disk_and_a_bug_in_one_line(tmp_path, capsys, monkeypatch):
    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "lab" / "x"))
    monkeypatch.setattr(launch, "open_engine", full)
    assert tui.main(["--lab", str(tmp_path / "lab")]) == EXIT_USAGE
    assert _one_line(capsys.readouterr().err) == (
        f"aisci-tui: {tmp_path / 'lab' / 'x'}: no space left on device (the lab's disk is "
        "full; free space, then start aisci-tui again)")

    def bug(*_a, **_k):
        raise KeyError("oops")
    monkeypatch.setattr(launch, "open_engine", bug)
    assert tui.main(["--lab", str(tmp_path / "lab")]) == EXIT_FAILED
    err = capsys.readouterr().err.strip()
    assert err.startswith("aisci-tui: internal error: KeyError: 'oops' (traceback in ")
    assert len(err.splitlines()) == 1
    logged = err.split("(traceback in ", 1)[1].rstrip(")")
    assert "KeyError: 'oops'" in open(logged, encoding="utf-8").read()
