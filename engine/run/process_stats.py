"""The process tree of one run: who belongs to it, what it uses, and how to signal all of
it without ever touching a process the engine did not start.

Membership is the union of (a) the root's descendants now, (b) every process ever seen
as a descendant (recorded with its start time, so a recycled pid is never signalled),
and (c) the run's pids cgroup when there is one. (b) is what catches a grandchild that
called setsid and was re-parented away from the tree (the sandbox also makes the run's
main process a child subreaper so such orphans normally stay in the tree, and marks the
environment with a run token that identifies orphans re-parented to init). Processes are never
matched by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import psutil

log = logging.getLogger(__name__)

_MAX_TRACKED = 100_000  # bound on remembered pids (a fork bomb is killed long before)
_MAX_ESCAPEES = 4096  # bound on one sweep's kills
_PR_SET_CHILD_SUBREAPER = 36
_NO_LIMIT = float("inf")


# -- processes that left their run ---------------------------------------------------------
# Without a pid namespace (bubblewrap) or a pids cgroup, a run's main process is its
# tree's subreaper only while it lives. A grandchild that double-forks, re-execs with an
# empty environment (no run token) and outlives the main process would be re-parented to
# init, out of every sweep's reach. So the engine becomes a subreaper itself: such a
# process becomes the engine's child, and it is recognised by what it cannot undo: the
# hard RLIMIT_NPROC every run is started with (a process can lower a hard limit, never
# raise it; the engine's own, inherited by everything else it starts, is higher).

_mains_lock = threading.Lock()
_mains: dict[int, subprocess.Popen[bytes]] = {}
"""Main processes of runs not yet reaped: the engine's children that are runs, not
escapees. Changed under the lock, with the spawn, so a sweep never sees a new run's main
process before it is known."""
_subreaper: bool = False
_run_nprocs: set[int] = set()
_ESCAPEE_SWEEP_S = 1.0


def become_subreaper(run_nproc: int) -> bool:
    """Make this process the child subreaper of everything it starts (once), for runs
    started with a hard RLIMIT_NPROC of ``run_nproc``. A subreaper must reap what it
    adopts: a thread sweeps for escapees every _ESCAPEE_SWEEP_S for the process's life
    (executors also sweep as each run ends, and say what they killed)."""
    global _subreaper
    with _mains_lock:
        if _subreaper:
            _run_nprocs.add(run_nproc)
            return True
        own = _hard_nproc("self")
        if own is None or own <= run_nproc:
            return False  # nothing would tell the runs' escapees from other children
        _run_nprocs.add(run_nproc)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
        except (OSError, AttributeError):
            return False
        if _subreaper:
            threading.Thread(target=_sweep_forever, name="aisci-escapee-sweep",
                             daemon=True).start()
        return _subreaper


def is_subreaper() -> bool:
    return _subreaper


def _sweep_forever() -> None:
    while True:
        time.sleep(_ESCAPEE_SWEEP_S)
        with contextlib.suppress(Exception):  # a /proc hiccup: the next sweep retries
            killed = sweep_escapees()
            if killed:
                log.warning("killed %d process(es) that outlived their run: pid %s",
                            len(killed), ", ".join(map(str, killed[:5])))


def spawn_main(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Start a run's main process (``start()``) and record it as one."""
    with _mains_lock:
        proc = start()
        _mains[proc.pid] = proc
        return proc


def main_reaped(proc: subprocess.Popen[bytes]) -> None:
    """A run's main process was waited for: a child with its pid is no longer a run
    (unless the pid already went to a newer run's main process)."""
    with _mains_lock:
        if _mains.get(proc.pid) is proc:
            del _mains[proc.pid]


def _hard_nproc(pid: int | str) -> float | None:
    try:
        with open(f"/proc/{pid}/limits", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Max processes"):
                    hard = line[26:].split()[1]
                    return _NO_LIMIT if hard == "unlimited" else float(hard)
    except (OSError, IndexError, ValueError):
        pass
    return None


def _own_children() -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as fh:
                out.extend(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def sweep_escapees() -> list[int]:
    """Kill and reap this process's children that were started as part of a run (hard
    RLIMIT_NPROC at most a run's, below this process's own) but are no run's main
    process: what is left of finished runs (zombies included). Returns their pids."""
    own = _hard_nproc("self")
    killed: list[int] = []
    with _mains_lock:
        run_nproc = max(_run_nprocs, default=0)
        if own is None or own <= run_nproc:
            return []  # no mark tells a run's process from anything else started here
        for pid in _own_children():
            if len(killed) >= _MAX_ESCAPEES:
                break
            if pid in _mains:
                continue
            hard = _hard_nproc(pid)
            if hard is None or hard > run_nproc:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    for pid in killed:  # our children: nobody else waits for them
        for _ in range(20):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.005)
    return killed


def _children_map() -> dict[int, list[int]]:
    """ppid -> child pids, from one pass over /proc (children() per pid would rescan)."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            out.setdefault(int(fields[1]), []).append(int(name))
    return out


class ProcessTree:
    """One run's processes, refreshed by :meth:`refresh` (call it periodically).

    Safe to use from two threads: the executor's watchdog samples :meth:`usage` on a
    worker thread (a /proc pass of the whole machine, kept off the event loop the TUI
    draws on) while kill / pause signal the tree from the loop."""

    def __init__(self, root_pid: int, cgroup_pids: Callable[[], list[int]] | None = None,
                 token: str | None = None) -> None:
        self.root_pid = root_pid
        self._cgroup_pids = cgroup_pids
        self._marker = f"AISCI_RUN_TOKEN={token}".encode() if token else None
        self._procs: dict[int, psutil.Process] = {}
        self._lock = threading.RLock()
        try:
            root = psutil.Process(root_pid)
            self._procs[root_pid] = root
            self.root_start_time: float | None = root.create_time()
        except psutil.Error:
            self.root_start_time = None
        self.peak_count = 1

    def _adopt(self, proc: psutil.Process) -> None:
        if proc.pid not in self._procs and len(self._procs) < _MAX_TRACKED:
            self._procs[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                proc.cpu_percent(None)  # prime the CPU counter

    def refresh(self) -> list[psutil.Process]:
        """Discover new members, forget dead ones, reap our own zombies; return live ones."""
        by_parent = _children_map()
        with self._lock:
            return self._refresh_locked(by_parent)

    def _refresh_locked(self, by_parent: dict[int, list[int]]) -> list[psutil.Process]:
        stack = list(self._procs)
        if self._marker is not None:
            # Orphans (e.g. a setsid'd double fork) re-parent to init or to this engine
            # (subreaper); they are ours only if they still carry this run's token.
            for orphan in (*by_parent.get(os.getpid(), ()), *by_parent.get(1, ())):
                if orphan not in self._procs and self._has_marker(orphan):
                    with contextlib.suppress(psutil.Error):
                        self._adopt(psutil.Process(orphan))
                        stack.append(orphan)
        while stack:
            for kid in by_parent.get(stack.pop(), ()):
                if kid not in self._procs:
                    with contextlib.suppress(psutil.Error):
                        self._adopt(psutil.Process(kid))
                        stack.append(kid)
        if self._cgroup_pids is not None:
            for pid in self._cgroup_pids():
                if pid not in self._procs:
                    with contextlib.suppress(psutil.Error):
                        self._adopt(psutil.Process(pid))
        live: list[psutil.Process] = []
        me = os.getpid()
        for pid, proc in list(self._procs.items()):
            try:
                # is_running() compares the start time too: a recycled pid is not ours.
                alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
                if not alive and pid != self.root_pid and proc.ppid() == me:
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(pid, os.WNOHANG)  # an orphan re-parented to us
            except psutil.Error:
                alive = False
            if alive:
                live.append(proc)
            elif pid != self.root_pid:
                del self._procs[pid]
        self.peak_count = max(self.peak_count, len(live))
        return live

    def _has_marker(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                return self._marker in fh.read(1 << 20).split(b"\0")
        except OSError:
            return False

    def pids(self) -> list[int]:
        return [p.pid for p in self.refresh()]

    def signal(self, sig: int, exclude: set[int] | None = None) -> int:
        """Send ``sig`` to every live member (except ``exclude``); returns how many."""
        sent = 0
        for proc in self.refresh():
            if exclude and proc.pid in exclude:
                continue
            try:
                proc.send_signal(sig)  # psutil re-checks the start time before signalling
                sent += 1
            except psutil.Error:
                pass
        return sent

    def stop(self) -> None:
        # Twice: a process forked between the snapshot and the stop is caught the second time.
        self.signal(signal.SIGSTOP)
        self.signal(signal.SIGSTOP)

    def cont(self) -> None:
        self.signal(signal.SIGCONT)

    def usage(self) -> tuple[float, int, int]:
        """(cpu percent summed over the tree, rss bytes summed, process count)."""
        cpu, rss, n = 0.0, 0, 0
        live = self.refresh()
        with self._lock:  # cpu_percent keeps per-process state
            for proc in live:
                try:
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    n += 1
                except psutil.Error:
                    continue
        return cpu, rss, n
