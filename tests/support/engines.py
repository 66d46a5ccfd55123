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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
