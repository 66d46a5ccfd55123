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
import os
import signal
import threading
from collections.abc import Callable

import psutil

_MAX_TRACKED = 100_000  # bound on remembered pids (a fork bomb is killed long before)


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
