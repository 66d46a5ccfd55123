"""Per-run memory cgroups, the machine-derived default memory limit, and the sweep of
cgroups left behind by an engine that was killed.

Each run's tree joins a memory cgroup of its own (cgroup v1 memory controller, or v2
with memory enabled) when the engine may create one: the kernel then holds the whole
tree, setsid'd grandchildren included, under ``memory.limit_in_bytes``/``memory.max``,
and an out-of-memory kill stays inside the run. Where no cgroup can be made, the
executor's tree-RSS watchdog and a per-process ``RLIMIT_DATA`` enforce the same number.

Run cgroups are named ``aisci-<engine pid>-<n>``; :func:`sweep_stale` removes those of
engines that are no longer alive (killing what is still in them: those are runs of the
dead engine, never anything else).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import signal
from pathlib import Path

import psutil

#: Share of the machine's RAM that all execution slots together may use by default.
DEFAULT_RAM_SHARE = 0.8
_NAME = re.compile(r"^aisci-(\d+)-\d+$")
_MAX_SWEEP = 1000


def default_memory_limit_mb(slots: int) -> int:
    """The per-run memory limit when the settings say "auto": a share of the RAM divided
    among the execution slots (at least 256 MB)."""
    total = psutil.virtual_memory().total
    return max(256, int(total * DEFAULT_RAM_SHARE / max(1, slots) / 2**20))


@functools.lru_cache(maxsize=4)
def controller_root(controller: str) -> tuple[str, Path] | None:
    """("v1"|"v2", parent directory) where this process may create cgroups of the
    controller ("memory", "pids"): the v1 hierarchy when writable, else this process's
    v2 cgroup when it delegates the controller."""
    v1 = Path("/sys/fs/cgroup") / controller
    if (v1 / "cgroup.procs").exists() and os.access(v1, os.W_OK):
        return "v1", v1
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                base = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
                if (os.access(base, os.W_OK) and
                        controller in (base / "cgroup.subtree_control").read_text().split()):
                    return "v2", base
    return None


def memory_root() -> tuple[str, Path] | None:
    return controller_root("memory")


class MemoryCgroup:
    """One run's memory cgroup: a hard limit on the tree, its peak, and whether the
    kernel had to kill inside it."""

    _counter = itertools.count(1)

    def __init__(self, version: str, path: Path, limit_bytes: int) -> None:
        self.version = version
        self.path = path
        self.limit_bytes = limit_bytes

    @classmethod
    def create(cls, limit_mb: int) -> MemoryCgroup | None:
        found = memory_root()
        if found is None:
            return None
        version, root = found
        path = root / f"aisci-{os.getpid()}-{next(cls._counter)}"
        limit = limit_mb * 2**20
        try:
            path.mkdir()
            if version == "v1":
                (path / "memory.limit_in_bytes").write_text(str(limit))
                # No swapping past the limit where swap accounting exists.
                with contextlib.suppress(OSError):
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
            else:
                (path / "memory.max").write_text(str(limit))
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(version, path, limit)

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def _read_int(self, name: str) -> int | None:
        try:
            return int((self.path / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def usage(self) -> int:
        name = "memory.usage_in_bytes" if self.version == "v1" else "memory.current"
        return self._read_int(name) or 0

    def peak(self) -> int:
        name = "memory.max_usage_in_bytes" if self.version == "v1" else "memory.peak"
        return self._read_int(name) or self.usage()

    def oom_kills(self) -> int:
        """Processes the kernel killed in this cgroup for want of memory."""
        name = "memory.oom_control" if self.version == "v1" else "memory.events"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def limit_hit(self) -> bool:
        """True when the tree reached the limit (an OOM kill, or reclaim failing)."""
        if self.oom_kills() > 0:
            return True
        if self.version == "v1":
            return (self._read_int("memory.failcnt") or 0) > 0 and \
                self.peak() >= self.limit_bytes * 0.98
        return False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _roots() -> list[Path]:
    out: list[Path] = []
    for found in (controller_root("memory"), controller_root("pids")):
        if found is not None and found[1] not in out:
            out.append(found[1])
    return out


def sweep_stale(kill_grace_s: float = 1.0) -> list[str]:
    """Remove run cgroups of engines that are not alive any more (``kill -9`` of the
    engine leaves them behind), first killing what still runs in them. Returns the
    removed cgroup paths. Never touches a cgroup of a live engine."""
    removed: list[str] = []
    for root in _roots():
        try:
            entries = sorted(root.iterdir())[:_MAX_SWEEP]
        except OSError:
            continue
        for path in entries:
            m = _NAME.match(path.name)
            if not m or not path.is_dir() or psutil.pid_exists(int(m.group(1))):
                continue
            pids = _members(path)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if pids:
                with contextlib.suppress(psutil.Error):
                    psutil.wait_procs([psutil.Process(p) for p in pids if
                                       psutil.pid_exists(p)], timeout=kill_grace_s)
            try:
                path.rmdir()
            except OSError:
                continue
            removed.append(str(path))
    return removed


def _members(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
