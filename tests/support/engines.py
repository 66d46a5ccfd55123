"""Real engines for the tests: settings that start fast (no model, no sandbox), and
stopping the engine a test started in a real terminal (closing the terminal leaves it
running in the background, on purpose, so each such test stops it before it ends)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aisci.engine.config import Settings
from aisci.engine.lab.store import LabStore

CLI = Path(sys.executable).with_name("aisci")
IDEA = {"Title": "Scheduled weight decay", "Experiment": "Ramp weight decay linearly.",
        "Interestingness": 7, "Feasibility": 8, "Novelty": 6}


def quick_settings() -> Settings:
    """No model (a stage that needs one fails at once), no sandbox, a short grace."""
    s = Settings()
    s.models.default = "scripted:none"
    s.sandbox.mode = "none"
    s.sandbox.grace_period_s = 0.5
    return s


def alive(pid: int) -> bool:
    """Running (a zombie is not: once an engine in the test process became the child
    subreaper of its runs, a daemon the tests start may end as the test process's
    zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def stop_lab_engine(lab: Path, timeout: float = 20.0) -> None:
    """Ask the engine holding ``lab`` to stop (``aisci stop``); SIGKILL it if it will
    not. Only the lock holder of a lab the test made is touched."""
    holder = LabStore.lock_holder(lab) if lab.exists() else None
    if not holder or holder <= 0:
        return
    subprocess.run([str(CLI), "stop", "--lab", str(lab)], capture_output=True, timeout=60)
    end = time.monotonic() + timeout
    while alive(holder) and time.monotonic() < end:
        time.sleep(0.2)
    if alive(holder):
        os.kill(holder, signal.SIGKILL)
