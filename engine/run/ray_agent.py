"""What runs on a Ray node for one remote run: :class:`RunAgent`, an actor pinned to the
node the scheduler chose, which unpacks the idea folder it is sent, runs the command in
the SAME contained :class:`~aisci.engine.run.executor.Executor` as a local run (time
limit owned outside the child, tree kill, clean environment, isolation, memory limit,
bounded output), hands the head its events in bounded batches, obeys kill / extend /
pause / resume, and returns the files the run changed.

A guard process watches the agent during each run: if the agent dies (the engine was killed, Ray tore the
actor down) it kills every process carrying the run's marker, so nothing is left running
on the node. :func:`sweep_orphans` does the same for a whole lab when an engine starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.events import Event, EventBus, ProcessStats, RunOutput
from aisci.engine.lab import safe_files
from aisci.engine.run import ray_cluster
from aisci.engine.run.executor import Executor, RunSpec

#: Bound on output lines buffered between two polls of the head (older lines are dropped
#: from the live stream only: the run's log keeps them and comes back at the end).
MAX_BUFFERED_LINES = 5000
MAX_BUFFERED_EVENTS = 1000
_GUARD_TICK_S = 0.5
_SWEEP_ROUNDS = 20
#: The guard: a bare interpreter (no aisci import: it starts in milliseconds) that waits
#: for the agent (pid and start time) to be gone, then SIGKILLs every process carrying
#: the run's marker, in bounded rounds. argv: agent pid, "<RUN_MARKER>=<marker>".
_GUARD = f"""
import os, signal, sys, time
def start(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            return f.read().rsplit(b')', 1)[1].split()[19]
    except (OSError, IndexError):
        return None
pid, needle = int(sys.argv[1]), sys.argv[2].encode()
t0 = start(pid)
while t0 is not None and start(pid) == t0:
    time.sleep({_GUARD_TICK_S})
for _ in range({_SWEEP_ROUNDS}):
    hit = 0
    for d in os.listdir('/proc'):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open('/proc/%s/environ' % d, 'rb') as f:
                if needle in f.read(1 << 20).split(b'\\0'):
                    os.kill(int(d), signal.SIGKILL)
                    hit += 1
        except OSError:
            pass
    if not hit:
        break
    time.sleep(0.05)
"""


class RunAgent:
    """Runs on one node, one run at a time (a Ray actor: ``ray.remote(RunAgent)``); the
    head keeps one per slot, so a run does not wait for a worker process to start."""

    def __init__(self, settings_data: dict[str, Any]) -> None:
        self.settings = Settings.model_validate(settings_data)
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._stats: ProcessStats | None = None
        self._lines = 0
        self._dropped = 0
        bus = EventBus()
        bus.add_sink(self._sink)
        self.executor = Executor(self.settings, bus, None)
        self._run: tuple[int | None, str] | None = None

    # -- events (called from the executor's threads and loop) ----------------------------
    def _sink(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, ProcessStats):
                self._stats = event
                return
            if isinstance(event, RunOutput):
                self._lines += len(event.lines)
                while self._lines > MAX_BUFFERED_LINES:
                    victim = next((e for e in self._events if isinstance(e, RunOutput)), None)
                    if victim is None:
                        break
                    self._events.remove(victim)
                    self._lines -= len(victim.lines)
                    self._dropped += len(victim.lines)
            elif len(self._events) >= MAX_BUFFERED_EVENTS:
                return  # only a flood of controls/stalls gets here; the log has them
            self._events.append(event)

    async def poll(self) -> list[Event]:
        """Events since the last poll (output batches bounded by MAX_BUFFERED_LINES)."""
        with self._lock:
            out, self._events, self._lines = self._events, [], 0
            if self._dropped and self._run is not None:
                out.insert(0, RunOutput(idea_id=self._run[0], run=self._run[1], lines=(
                    f"[aisci] {self._dropped} output lines not streamed (kept in the log)",)))
                self._dropped = 0
            if self._stats is not None:
                out.append(self._stats)
                self._stats = None
        return out

    async def busy(self) -> bool:
        return self._run is not None

    async def ready(self) -> dict[str, Any]:
        ray = ray_cluster.ray_module()
        return {"pid": os.getpid(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "node_id": ray.get_runtime_context().get_node_id()}

    # -- controls ---------------------------------------------------------------------------
    async def control(self, action: str, seconds: float = 0.0) -> float | bool:
        if self._run is None:
            return False
        idea_id, run = self._run
        ex = self.executor
        if action == "kill":
            return ex.kill(idea_id, run)
        if action == "extend":
            with contextlib.suppress(KeyError):
                return ex.extend(idea_id, run, seconds)
            return False
        if action == "pause":
            return ex.pause(idea_id, run)
        if action == "resume":
            return ex.resume(idea_id, run)
        if action == "interrupt":
            for live in ex._live.values():
                if live.stop_request is None:
                    live.stop_request = ("interrupted", "the engine stopped the run")
            return True
        raise ValueError(f"unknown control {action!r}")

    # -- the run ----------------------------------------------------------------------------
    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run ``job`` (see RayExecutor._job); returns status and the changed files."""
        spec: RunSpec = job["spec"]
        marker: str = job["marker"]
        head_cwd = str(spec.cwd)
        bundle: ray_cluster.Bundle | None = job["bundle"]
        with self._lock:
            self._events, self._stats, self._lines, self._dropped = [], None, 0, 0
        base = Path(tempfile.mkdtemp(prefix="aisci-ray-"))
        guard = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()),
             f"{ray_cluster.RUN_MARKER}={marker}"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        try:
            if bundle is not None:
                work = base / "work"
                work.mkdir()
                refused = ray_cluster.unpack(work, bundle)
                shipped = bundle.digests()
                log = base / "log" / "run.log"
                log.parent.mkdir()
            else:  # shared filesystem: the same path on every node
                work, refused, shipped, log = Path(head_cwd), [], {}, Path(spec.log_path)

            def moved(text: str) -> str:
                return text.replace(head_cwd, str(work)) if bundle is not None else text

            env = {k: moved(v) for k, v in spec.env.items()}
            env[ray_cluster.RUN_MARKER] = marker
            gpu = spec.gpu
            if gpu and not gpu.startswith("GPU-"):  # not pinned by UUID (the node's
                # NVML chose them): the GPUs Ray gave this actor on this node
                ids = ray_cluster.ray_module().get_gpu_ids()
                gpu = ",".join(str(i) for i in ids) if ids else gpu
            local = dataclasses.replace(
                spec, argv=[moved(str(a)) for a in spec.argv], cwd=work, log_path=log,
                env=env, gpu=gpu,
                writable=[Path(moved(str(w))) if Path(w).is_absolute() else w
                          for w in spec.writable])
            self._run = (spec.idea_id, spec.run)
            res = await self.executor.run(local)
            out: dict[str, Any] = {
                "status": res.status, "exit_code": res.exit_code,
                "duration_s": res.duration_s, "reason": res.reason,
                "stderr_tail": res.stderr_tail, "isolation": res.isolation, "pid": res.pid,
                "refused_in": refused, "files": None, "deleted": [], "log": b""}
            with contextlib.suppress(OSError):
                out["log"] = safe_files.read_bytes(
                    log.parent, log.name, self.settings.sandbox.max_log_mb * 2**20 + 65536,
                    truncate=True)
            if bundle is not None:
                limit = job["max_ship_bytes"]
                try:
                    changed = ray_cluster.pack(work, limit_bytes=limit, only_changed=shipped,
                                               what="the outputs of the run in")
                    out["files"] = changed
                    out["deleted"] = sorted(p for p in shipped
                                            if safe_files.kind(work, p) is None)
                except (ray_cluster.ShipRefused, OSError) as exc:
                    out["ship_error"] = str(exc)
            return out
        finally:
            self._run = None
            shutil.rmtree(base, ignore_errors=True)
            if guard.poll() is None:
                guard.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                guard.wait(timeout=2.0)


# -- orphans ---------------------------------------------------------------------------

def _marked_prefix(pid: int, prefix: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return any(v.startswith(prefix) for v in f.read(1 << 20).split(b"\0"))
    except OSError:
        return False


def sweep_orphans(marker_prefix: str) -> int:
    """SIGKILL every process on this node whose environment carries a run marker that
    starts with ``marker_prefix`` (bounded rounds); returns how many were killed."""
    prefix = f"{ray_cluster.RUN_MARKER}={marker_prefix}".encode()
    me = os.getpid()
    killed: set[int] = set()
    for _ in range(_SWEEP_ROUNDS):
        found = [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != me
                 and _marked_prefix(int(d), prefix)]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.05)
    return len(killed)
