"""A real-terminal test: ``aisci-tui --demo`` inside tmux (private socket, 120x40), keys
via send-keys, the screen via capture-pane. The demo runs the pipeline for real on the
CPU with the scripted model, so this test takes about a minute."""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.engines import stop_lab_engine
from support.terminal import Terminal

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

TUI = Path(sys.executable).with_name("aisci-tui")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Terminal]:
    env = {"AISCI_USER_CONFIG": str(tmp_path / "no-user-config.toml"), "TERM": "xterm-256color",
           # grokking at 2 updates and 1 validation batch per dataset: the baseline, and so
           # the first experiment output, come sooner (the shipped demo: test_demo.py)
           "AISCI_WORK_STEPS": "2", "AISCI_WORK_EVAL": "1"}
    t = Terminal("demo", f"{TUI} --demo --lab {tmp_path / 'demo'}", tmp_path, size=(120, 40),
                 env=env)
    try:
        yield t
    finally:
        t.close()
        stop_lab_engine(tmp_path / "demo")  # a closed terminal leaves the engine running


def idea_rows(screen: str) -> list[str]:
    return [line for line in screen.splitlines()
            if re.match(r"^\s+\d+\s+[a-z][a-z0-9_]+…?\s", line)]


def test_demo_in_a_real_terminal(tmux: Terminal) -> None:
    screen = tmux.wait_for(lambda s: "Ideas" in s and "Review" in s and "SCRIPTED" in s,
                           30, "the pane titles and the scripted-model banner")
    for title in ("1 Ideas", "2 Runs", "3 Review", "4 Log", "5 Plots", "6 Processes",
                  "7 Cost"):
        assert title in screen
    screen = tmux.wait_for(lambda s: any("approval ?" in r for r in idea_rows(s)), 120,
                           "an idea waiting for approval")
    rows = idea_rows(screen)
    target = next(i for i, r in enumerate(rows) if "approval ?" in r)
    name = rows[target].split()[1]
    tmux.keys("1", *["Down"] * target, "a")
    tmux.wait_for(lambda s: any(name in r and "approved" in r for r in idea_rows(s)), 20,
                  f"{name} shown as approved")
    tmux.keys("4")
    tmux.wait_for(lambda s: re.search(r"step \d+/\d+ train_loss=", s) is not None, 180,
                  "experiment output in the log pane")
    tmux.keys("q")
    time.sleep(0.5)
    if "Stop everything" in tmux.screen():  # experiments run: stop them with the UI
        tmux.keys("s")
