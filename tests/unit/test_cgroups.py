"""Run cgroups: the machine-derived memory limit, and the sweep of cgroups left behind by
an engine that was killed with ``kill -9``."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest
from aisci.engine.run import cgroups

ROOTS = [r for r in (cgroups.controller_root("memory"), cgroups.controller_root("pids")) if r]


def test_default_memory_limit_shares_ram_among_slots():
    total_mb = psutil.virtual_memory().total / 2**20
    one, four = cgroups.default_memory_limit_mb(1), cgroups.default_memory_limit_mb(4)
    assert abs(one - total_mb * cgroups.DEFAULT_RAM_SHARE) < 2
    assert abs(four - one / 4) < 2


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(not ROOTS, reason="no writable cgroup hierarchy")
def test_sweep_removes_only_cgroups_of_dead_engines():
    dead = ROOTS[0][1] / f"aisci-{_dead_pid()}-1"
    live = ROOTS[0][1] / f"aisci-{os.getpid()}-999"
    dead.mkdir()
    live.mkdir()
    # a run of the dead engine still in its cgroup: the sweep ends it
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (dead / "cgroup.procs").write_text(str(orphan.pid))
        removed = cgroups.sweep_stale(kill_grace_s=2.0)
        assert str(dead) in removed and not dead.exists()
        assert live.is_dir()
        orphan.wait(timeout=5)  # reaped (by the sweep's wait or here): it is gone
        assert not psutil.pid_exists(orphan.pid)
    finally:
        orphan.kill()
        for p in (dead, live):
            if p.exists():
                p.rmdir()
