"""The engine outlives its terminal, in real terminals (tmux, private sockets): start
``aisci-tui`` on a lab with a long experiment, hang up the terminal, and check that the
experiment lives on with its log growing; attach from a new terminal, watch the log
advance, kill the run from there, and see a veto made in a third shell."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aisci.engine.lab.store import LabStore
from support.engines import alive, stop_lab_engine
from support.slow_lab import baseline_log, make_slow_lab
from support.terminal import Terminal

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

BIN = Path(sys.executable).parent
TUI = BIN / "aisci-tui"
CLI = BIN / "aisci"


def terminal(name: str, lab: Path) -> Terminal:
    """A 160x48 terminal running ``aisci-tui --lab LAB``."""
    env = {"AISCI_USER_CONFIG": str(lab.parent / "none.toml"), "TERM": "xterm-256color"}
    return Terminal(name, f"{TUI} --lab {lab}", lab.parent, size=(160, 48), env=env,
                    key_gap_s=0.2)


def running_baseline(lab: Path) -> int | None:
    with LabStore(lab, read_only=True) as store:
        rows = [r for r in store.runs(kind="baseline") if r.status == "running" and r.pid]
    return rows[-1].pid if rows else None


def wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def last_step(text: str) -> int:
    steps = [int(m) for m in re.findall(r"step (\d+) loss", text)]
    return max(steps) if steps else -1


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Path]:
    lab = tmp_path / "lab"
    make_slow_lab(lab)
    yield lab
    stop_lab_engine(lab)  # the engine this test started, if still there


def test_the_engine_outlives_its_terminal_and_any_terminal_drives_it(lab: Path) -> None:
    first = terminal("first", lab)
    try:
        first.wait_for(lambda s: "Ideas" in s and "long_run" in s, 30, "the TUI")
        wait(lambda: running_baseline(lab), 60, "the long experiment to start")
        run_pid = running_baseline(lab)
        engine_pid = LabStore.lock_holder(lab)
        assert run_pid and engine_pid and engine_pid > 0
        log = baseline_log(lab)
        wait(lambda: log.exists() and log.stat().st_size > 0, 20, "its log")
    finally:
        first.close()  # the terminal goes away: SIGHUP to the app
    size = log.stat().st_size
    time.sleep(10)
    assert alive(run_pid), "the experiment died with the terminal"
    assert alive(engine_pid), "the engine died with the terminal"
    assert log.stat().st_size > size, "the run log stopped growing"
    assert LabStore.lock_holder(lab) == engine_pid
    status = subprocess.run([str(CLI), "status", "--lab", str(lab)], capture_output=True,
                            text=True, timeout=30)
    assert "serves" in status.stdout, status.stdout + status.stderr

    second = terminal("second", lab)
    try:
        started = time.monotonic()
        second.wait_for(lambda s: f"attached to engine {engine_pid}" in s, 20,
                        "the new TUI attached to the running engine")
        attach_s = time.monotonic() - started
        second.wait_for(lambda s: "detecting" not in s, 10, "the graphics probe to end")
        second.keys("6")
        second.wait_for(lambda s: "baseline" in s and "running" in s, 10,
                        "the running baseline in the processes pane")
        second.keys("l")  # its log, in the log pane
        screen = second.wait_for(lambda s: last_step(s) > 0, 10, "the run's log lines")
        before = last_step(screen)
        second.wait_for(lambda s: last_step(s) > before + 5, 10, "the log advancing")

        # a third shell vetoes the idea waiting for approval: the TUI shows it
        r = subprocess.run([str(CLI), "veto", "waiting_idea", "--why", "a duplicate",
                            "--lab", str(lab)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        second.keys("1")
        second.wait_for(lambda s: any("waiting_idea"[:15] in line and "vetoed" in line
                                      for line in s.splitlines()), 10,
                        "the veto from another shell")

        second.keys("6", "k")  # kill the run from the attached TUI
        second.wait_for(lambda s: "Kill" in s and "process tree" in s, 10, "the kill question")
        second.keys("y")
        wait(lambda: not alive(run_pid), 10, "the experiment to be killed")
        assert alive(engine_pid)
        status = subprocess.run([str(CLI), "status", "--lab", str(lab)], capture_output=True,
                                text=True, timeout=30)
        assert f"running, pid {engine_pid}" in status.stdout
        second.keys("q")  # a viewer leaving stops nothing
        second.wait_for(lambda s: "attached to engine" not in s, 10, "the viewer to quit")
        assert alive(engine_pid)
    finally:
        second.close()
    r = subprocess.run([str(CLI), "stop", "--lab", str(lab)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    wait(lambda: not alive(engine_pid), 20, "the engine to stop")
    assert not (lab / "aisci.sock").exists()
    text = (lab / "engine.log").read_text(encoding="utf-8")
    assert "ViewerChanged action=attached" in text and "EngineStopRequested" in text
    print(f"attached in {attach_s:.1f} s")
