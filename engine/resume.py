"""Crash recovery: what a new engine does about the previous engine's unfinished work.

A ``runs`` row still ``running`` when an engine starts belongs to a dead engine (the lab
lock guarantees only one engine per lab). If its process still exists — same pid AND the
same start time as recorded (``psutil`` create_time, 0.01 s tolerance), so a recycled
pid is never touched — the process group/tree it leads is terminated (SIGTERM, a grace
period, SIGKILL). Processes of its group or session that outlived the leader are found
by process-group / session id and the same start-time rule; descendants that left both
(setsid) and were re-parented are found by the executor's run token in their environment
together with a working directory inside this lab. No other process is ever signalled. The attempt is then marked ``interrupted``; the run loop re-runs that run from
its start and keeps the partial log as a failed attempt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from aisci.engine.lab.store import LabStore, RunRow
from aisci.engine.run.cgroups import sweep_stale

log = logging.getLogger(__name__)

START_TIME_TOLERANCE_S = 0.01
INTERRUPTED_REASON = "interrupted: the engine stopped while this attempt ran"


@dataclass
class RecoveryReport:
    interrupted_runs: list[int] = field(default_factory=list)
    """Row ids of attempts marked interrupted."""
    terminated_pids: list[int] = field(default_factory=list)
    stale_stages: list[tuple[int, str]] = field(default_factory=list)
    """(idea_id, stage) left ``running`` by the previous engine."""
    removed_cgroups: list[str] = field(default_factory=list)
    """Run cgroups of engines that died (``kill -9``) without removing them."""

    @property
    def anything(self) -> bool:
        return bool(self.interrupted_runs or self.terminated_pids or self.stale_stages)

    def summary(self) -> str:
        parts = []
        if self.interrupted_runs:
            parts.append(f"{len(self.interrupted_runs)} interrupted run attempt(s)")
        if self.terminated_pids:
            parts.append(f"{len(self.terminated_pids)} orphaned process(es) terminated")
        if self.stale_stages:
            parts.append(f"{len(self.stale_stages)} stage(s) resumed")
        return ", ".join(parts) or "nothing to recover"


def is_same_process(pid: int, start_time: float | None) -> bool:
    """True when ``pid`` is alive and started at ``start_time`` (it is the one we ran)."""
    if not pid or start_time is None:
        return False
    try:
        proc = psutil.Process(pid)
        return (abs(proc.create_time() - start_time) <= START_TIME_TOLERANCE_S
                and proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _group_members(leader: int, not_before: float) -> list[psutil.Process]:
    """Processes in the leader's process group or session, started after the leader.

    Linux does not hand out a pid while a process group or session with that id still
    exists, so a process whose pgid/sid equals our recorded leader pid is ours."""
    out = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "create_time"]):
        pid = proc.info["pid"]
        if pid in (me, leader):
            continue
        try:
            if leader not in (os.getpgid(pid), os.getsid(pid)):
                continue
        except (ProcessLookupError, PermissionError, OSError):
            continue
        created = proc.info.get("create_time") or 0.0
        if created + START_TIME_TOLERANCE_S >= not_before:
            out.append(proc)
    return out


def terminate_orphan(pid: int, start_time: float | None, grace_s: float = 3.0) -> list[int]:
    """Terminate the tree of a previous engine's run. Returns the pids signalled."""
    targets: dict[int, psutil.Process] = {}
    if is_same_process(pid, start_time):
        leader = psutil.Process(pid)
        targets[pid] = leader
        with contextlib.suppress(psutil.Error):
            for child in leader.children(recursive=True):
                targets[child.pid] = child
    # Group/session members are only ours when the leader pid is ours or free: a live
    # process with that pid but another start time is a stranger that reused the pid.
    if start_time is not None and (targets or not psutil.pid_exists(pid)):
        for proc in _group_members(pid, start_time):
            targets.setdefault(proc.pid, proc)
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    targets.setdefault(child.pid, child)
    _terminate_then_kill(list(targets.values()), grace_s)
    return sorted(targets)


def _terminate_then_kill(procs: list[psutil.Process], grace_s: float) -> None:
    """SIGCONT and SIGTERM each process, wait ``grace_s``, SIGKILL the ones still alive."""
    if not procs:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGCONT)  # a paused tree cannot handle SIGTERM
            proc.terminate()
    _gone, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=2.0)


def _finish_interrupted(store: LabStore, row: RunRow) -> None:
    now = time.time()
    duration = (now - row.started_at) if row.started_at else None
    store.update_run(row.id, status="interrupted", reason=INTERRUPTED_REASON,
                     finished_at=now, duration_s=duration)


RUN_TOKEN_VAR = b"AISCI_RUN_TOKEN="
"""Set by the executor in every child's environment (inherited by its descendants)."""


def _is_lab_orphan(proc: psutil.Process, lab: Path) -> bool:
    """A process our executor started for this lab: it carries the run token in its
    environment and works inside the lab. Only the engine holding the lab lock may call
    this, so such a process is left over from a previous engine."""
    try:
        cwd = Path(proc.cwd()).resolve()
        if not cwd.is_relative_to(lab):
            return False
        with open(f"/proc/{proc.pid}/environ", "rb") as fh:
            return any(item.startswith(RUN_TOKEN_VAR) for item in fh.read().split(b"\0"))
    except (psutil.Error, OSError, ValueError):
        return False


def sweep_lab_orphans(lab: Path, grace_s: float = 3.0) -> list[int]:
    """Terminate leftovers the runs table cannot name: descendants that left their
    process group and session (setsid) and were re-parented when the engine died."""
    lab = Path(lab).resolve()
    me = os.getpid()
    procs = [p for p in psutil.process_iter() if p.pid != me and _is_lab_orphan(p, lab)]
    _terminate_then_kill(procs, grace_s)
    return sorted(p.pid for p in procs)


def recover_lab(store: LabStore, grace_s: float = 3.0) -> RecoveryReport:
    """Clean up after a previous engine: terminate its orphans, mark its attempts
    interrupted, and list the stages it left running (the pipeline re-runs them)."""
    report = RecoveryReport()
    for row in store.running_runs():
        if row.pid:
            killed = terminate_orphan(row.pid, row.pid_start_time, grace_s)
            if killed:
                log.warning("terminated orphaned %s of idea %s: pids %s", row.run, row.idea_id,
                            killed)
                report.terminated_pids.extend(killed)
        _finish_interrupted(store, row)
        report.interrupted_runs.append(row.id)
    if Path("/proc").is_dir():
        swept = sweep_lab_orphans(store.lab_dir, grace_s)
        report.terminated_pids.extend(p for p in swept if p not in report.terminated_pids)
    report.removed_cgroups = sweep_stale()
    for idea in store.list_ideas():
        for stage, st in store.stages(idea.id).items():
            if st["state"] == "running":
                report.stale_stages.append((idea.id, stage))
    return report
