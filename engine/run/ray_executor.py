"""The executor of ``scheduler.backend = "ray"``: experiment, baseline and plot runs (and
an experiment's checker) go to a node of the Ray cluster; everything else (LaTeX, chktex,
data preparation, the integrity check) and the engine, the store and the idea
repositories stay on this machine.

A remote run: the idea folder is read without following symlinks and sent (bounded by
``scheduler.ray_max_ship_mb``; not at all with ``scheduler.ray_shared_fs``) to a
:class:`~aisci.engine.run.ray_agent.RunAgent` actor pinned to the node of the slot the
idea holds (:class:`~aisci.engine.run.ray_scheduler.RayScheduler`), which runs it in the
same contained Executor as a local run. While it runs the head polls the agent for
output batches (written to the run's log here and published), process stats (with the
node's name), controls and stalls; kill / extend / pause / resume are forwarded at once.
When it ends, the files the run changed come back under the run's writable folders
(temporary file + rename, never through a symlink) and the node's complete log replaces
the streamed one, before the stage commits the run.

A node that leaves mid-run ends the attempt as failed with reason "node lost ..." (the
stage's attempt budget retries it on another node). A new engine first kills, on every
node, the processes a dead engine of the same lab left (their environment marker).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.events import (
    EventBus,
    ProcessStats,
    RunControl,
    RunFinished,
    RunOutput,
    RunStarted,
)
from aisci.engine.lab import safe_files
from aisci.engine.lab.store import LabStore
from aisci.engine.run import gpu as gpu_mod
from aisci.engine.run import ray_cluster
from aisci.engine.run.executor import NODE_LOST, Executor, RunResult, RunSpec, Status
from aisci.engine.run.output_pump import open_log_file
from aisci.engine.run.ray_agent import RunAgent, sweep_orphans
from aisci.engine.run.ray_scheduler import RayScheduler, RaySlot

#: Kinds of run that go to the cluster; a "check" goes there when its idea holds a slot
#: (the template's checker of an experiment); the others (LaTeX, chktex, data
#: preparation, the integrity check) run on this machine.
REMOTE_KINDS = frozenset({"experiment", "baseline", "plot"})
_POLL_S = 0.2
_POLL_TIMEOUT_S = 5.0
_MAX_SILENT_S = 120.0  # no answer from a node that Ray still lists as alive: give up


@dataclass
class _Remote:
    spec: RunSpec
    agent: Any
    """The RunAgent actor handle (None until placed)."""
    node_id: str
    node: str
    limit_s: float
    started: float = field(default_factory=time.monotonic)
    stats: ProcessStats | None = None
    paused: bool = False
    stopping: bool = False
    controls: list[dict[str, object]] = field(default_factory=list)
    row: int | None = None


class RayExecutor(Executor):
    """See the module docstring. ``scheduler`` is the matching RayScheduler."""

    def __init__(self, settings: Settings, bus: EventBus | None = None,
                 store: LabStore | None = None, *, gpu_probe: gpu_mod.GPUProbe | None = None,
                 ) -> None:
        super().__init__(settings, bus, store, gpu_probe=gpu_probe)
        self.ray = ray_cluster.connect(settings)
        self.lab_key = ray_cluster.lab_key(store.lab_dir if store is not None else None)
        self.scheduler = RayScheduler(settings, self.ray)
        self._remote: dict[tuple[int | None, str], _Remote] = {}
        self._pool: dict[str, Any] = {}
        """Slot name -> its RunAgent, kept between runs."""
        self.swept = self.sweep()

    # -- cluster housekeeping -----------------------------------------------------------------
    def sweep(self) -> int:
        """Kill, on every live node, processes left by a dead engine of this lab (bounded
        by ``scheduler.ray_connect_timeout_s``); returns how many."""
        ray = self.ray
        task = ray.remote(sweep_orphans)
        refs = [task.options(num_cpus=0, scheduling_strategy=ray_cluster.node_affinity(
            n.node_id)).remote(self.lab_key + ":") for n in ray_cluster.nodes(ray)]
        ready, _ = ray.wait(refs, num_returns=len(refs),
                            timeout=self.settings.scheduler.ray_connect_timeout_s)
        total = 0
        for ref in ready:
            with contextlib.suppress(Exception):
                total += int(ray.get(ref))
        return total

    def describe(self) -> str:
        sch = self.settings.scheduler
        how = ("shared filesystem (runs work in place)" if sch.ray_shared_fs else
               f"idea folders are sent to the node (up to {sch.ray_max_ship_mb} MB)")
        return f"Ray cluster at {sch.ray_address}: {self.scheduler.note}; {how}"

    # -- public API ---------------------------------------------------------------------------
    async def run(self, spec: RunSpec) -> RunResult:
        held = self.scheduler.placement(spec.idea_id)
        if spec.kind not in REMOTE_KINDS and not (spec.kind == "check" and held is not None):
            return await super().run(spec)
        key = (spec.idea_id, spec.run)
        if key in self._remote or key in self._live:
            raise RuntimeError(f"run {spec.run} of idea {spec.idea_id} is already running")
        if held is not None:  # the stage holds a slot for this idea: run there
            return await self._run_on(spec, held)
        # A run without a slot of its own (a plot, a check) takes one for its duration:
        # it runs on a node with a free slot, never beside the slot's own runs.
        async with self.scheduler.slot(idea_id=spec.idea_id) as got:
            assert isinstance(got, RaySlot)
            return await self._run_on(spec, got)

    async def _run_on(self, spec: RunSpec, slot: RaySlot) -> RunResult:
        key = (spec.idea_id, spec.run)
        log_path = Path(spec.log_path)
        cwd = Path(spec.cwd)
        log_file = open_log_file(log_path, [cwd, *(cwd / w for w in spec.writable)])
        wall_start = time.time()
        row = self._record_start(spec, None, None, "ray", log_path, wall_start)
        try:
            job = await asyncio.to_thread(self._job, spec)
        except (ray_cluster.ShipRefused, OSError) as exc:
            log_file.write(f"[aisci] not started: {exc}\n")
            log_file.close()
            return self._end(spec, row, "failed", None, str(exc), 0.0, "", "ray", -1, [])
        sch = self.settings.scheduler
        node = slot.node
        live = _Remote(spec, None, slot.node_id, node, float(spec.limit_s), row=row)
        self._remote[key] = live
        pooled = True
        out: dict[str, Any] | None = None
        try:
            try:
                live.agent = await self._agent(slot)
            except (TimeoutError, self.ray.exceptions.RayError) as exc:
                lost = self._node_gone(live)
                reason = (f"{NODE_LOST}: node {node} left the cluster" if lost else
                          f"could not start the run on {node} within "
                          f"{sch.ray_connect_timeout_s:g} s ({_why(exc)})")
                log_file.write(f"[aisci] {reason}\n")
                return self._end(spec, row, "failed", None, reason, 0.0, "", "ray", -1, [])
            job["marker"] = f"{self.lab_key}:{uuid.uuid4().hex}"
            try:
                out = await self._follow(live, live.agent.run.remote(job), log_file, row)
            except asyncio.CancelledError:
                pooled = await self._interrupt(live) and pooled
                self._end(spec, row, "interrupted", None, "the engine stopped the run",
                          time.monotonic() - live.started, "", "ray", -1, live.controls)
                raise
        finally:
            self._remote.pop(key, None)
            with contextlib.suppress(Exception):
                log_file.close()
            if live.agent is not None and not (pooled and out is not None
                                               and not out.get("lost")):
                self._pool.pop(slot.name, None)
                with contextlib.suppress(Exception):
                    self.ray.kill(live.agent)
        return await self._finish_remote(live, out, row)

    async def _agent(self, slot: RaySlot) -> Any:
        """The slot's agent (kept between runs: no worker start per run), or a new one
        pinned to the slot's node; checked alive."""
        sch = self.settings.scheduler
        if slot.name in self._pool:
            agent = self._pool[slot.name]
            try:
                await asyncio.wait_for(_aw(agent.ready.remote()), 5.0)
                return agent
            except (TimeoutError, self.ray.exceptions.RayError):
                self._pool.pop(slot.name, None)
                with contextlib.suppress(Exception):
                    self.ray.kill(agent)
        opts: dict[str, Any] = {"num_cpus": sch.run_cpus, "max_restarts": 0,
                                "scheduling_strategy": ray_cluster.node_affinity(slot.node_id)}
        if slot.is_gpu:
            opts["num_gpus"] = sch.run_gpus
        if sch.run_memory_mb is not None:
            opts["memory"] = sch.run_memory_mb * 2**20
        agent = self.ray.remote(RunAgent).options(**opts).remote(self._agent_settings())
        try:
            await asyncio.wait_for(_aw(agent.ready.remote()), sch.ray_connect_timeout_s)
        except BaseException:
            with contextlib.suppress(Exception):
                self.ray.kill(agent)
            raise
        self._pool[slot.name] = agent
        return agent

    def drop_agents(self) -> None:
        """Stop the agents kept for slots (the engine stops, or their nodes left)."""
        for name in list(self._pool):
            with contextlib.suppress(Exception):
                self.ray.kill(self._pool.pop(name))

    def running(self) -> list[ProcessStats]:
        now = time.monotonic()
        out = super().running()
        for r in list(self._remote.values()):
            st = r.stats or ProcessStats(
                idea_id=r.spec.idea_id, run=r.spec.run, kind=r.spec.kind,
                elapsed_s=now - r.started, limit_s=r.limit_s, cpu_percent=0.0, rss_bytes=0,
                gpu_mem_bytes=None, last_output_age_s=0.0, paused=r.paused,
                attempt=r.spec.attempt)
            out.append(dataclasses.replace(st, node=r.node))
        return out

    def kill(self, idea_id: int | None, run: str) -> bool:
        r = self._remote.get((idea_id, run))
        if r is None:
            return super().kill(idea_id, run)
        if r.stopping:
            return False
        r.stopping = True
        r.agent.control.remote("kill")
        return True

    def extend(self, idea_id: int | None, run: str, seconds: float) -> float:
        r = self._remote.get((idea_id, run))
        if r is None:
            return super().extend(idea_id, run, seconds)
        elapsed = r.stats.elapsed_s if r.stats else time.monotonic() - r.started
        r.limit_s = max(elapsed + 1.0, r.limit_s + float(seconds))
        r.agent.control.remote("extend", float(seconds))
        if self.store is not None and r.row is not None:
            self.store.update_run(r.row, limit_s=r.limit_s)
        return r.limit_s

    def pause(self, idea_id: int | None, run: str) -> bool:
        r = self._remote.get((idea_id, run))
        if r is None:
            return super().pause(idea_id, run)
        if r.paused or r.stopping:
            return False
        r.paused = True
        r.agent.control.remote("pause")
        return True

    def resume(self, idea_id: int | None, run: str) -> bool:
        r = self._remote.get((idea_id, run))
        if r is None:
            return super().resume(idea_id, run)
        if not r.paused:
            return False
        r.paused = False
        r.agent.control.remote("resume")
        return True

    async def shutdown(self) -> None:
        for r in list(self._remote.values()):
            if not r.stopping:
                r.stopping = True
                r.agent.control.remote("interrupt")
        await super().shutdown()
        for _ in range(int((self.settings.sandbox.grace_period_s + 10) / 0.1)):
            if not self._remote:
                break
            await asyncio.sleep(0.1)
        self.drop_agents()

    # -- internals ------------------------------------------------------------------------------
    def _agent_settings(self) -> dict[str, Any]:
        s = self.settings
        sandbox = s.sandbox.model_dump()
        if s.scheduler.run_memory_mb is not None:
            sandbox["max_rss_mb"] = s.scheduler.run_memory_mb
        return {"sandbox": sandbox, "experiment": s.experiment.model_dump(),
                "scheduler": s.scheduler.model_dump()}

    def _job(self, spec: RunSpec) -> dict[str, Any]:
        sch = self.settings.scheduler
        limit = sch.ray_max_ship_mb * 2**20
        bundle = None
        if not sch.ray_shared_fs:
            cwd = Path(spec.cwd)
            exclude = set()
            with contextlib.suppress(ValueError):
                exclude.add(Path(spec.log_path).relative_to(cwd).as_posix())
            bundle = ray_cluster.pack(cwd, limit_bytes=limit, exclude=exclude, links_ok=True)
        return {"spec": spec, "bundle": bundle, "max_ship_bytes": limit}

    def _node_gone(self, live: _Remote) -> bool:
        if not live.node_id:
            return False
        try:
            gone = live.node_id not in ray_cluster.alive_node_ids(self.ray)
        except Exception:
            return False
        if gone:
            self.scheduler.drop_node(live.node_id)
        return gone

    async def _follow(self, live: _Remote, ref: Any, log_file: Any,
                      row: int | None) -> dict[str, Any]:
        """Relay the agent's events until the run ends; its result, or a synthetic one
        when the node or the agent is lost."""
        silent_since: float | None = None
        task = asyncio.ensure_future(_aw(ref))
        try:
            while True:
                done = task.done()
                try:
                    events = await asyncio.wait_for(_aw(live.agent.poll.remote()),
                                                    _POLL_TIMEOUT_S)
                    silent_since = None
                except (TimeoutError, self.ray.exceptions.RayError) as exc:
                    events = []
                    if self._node_gone(live):
                        return _lost(f"{NODE_LOST}: node {live.node} left the cluster "
                                     f"({_why(exc)})")
                    if task.done() and task.exception() is not None:
                        break
                    silent_since = silent_since or time.monotonic()
                    if time.monotonic() - silent_since > _MAX_SILENT_S:
                        return _lost(f"{NODE_LOST}: no answer from node {live.node} for "
                                     f"{_MAX_SILENT_S:g} s")
                for e in events:
                    self._relay(live, e, log_file, row)
                if done:
                    break
                await asyncio.wait({task}, timeout=_POLL_S)
            try:
                result: dict[str, Any] = task.result()
                return result
            except self.ray.exceptions.RayTaskError as exc:  # raised by the agent's code
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                out = _lost(f"could not run on {live.node}: {_why(cause)}")
                out["lost"] = False  # the agent itself is fine
                return out
            except self.ray.exceptions.RayError as exc:
                if self._node_gone(live):
                    return _lost(f"{NODE_LOST}: node {live.node} left the cluster")
                return _lost(f"the Ray worker of the run on {live.node} died ({_why(exc)})")
        finally:
            if not task.done():
                task.cancel()

    def _relay(self, live: _Remote, e: Any, log_file: Any, row: int | None) -> None:
        if isinstance(e, RunOutput):
            with contextlib.suppress(OSError, ValueError):
                for line in e.lines:
                    log_file.write(line + "\n")
                log_file.flush()
            self._publish(e)
        elif isinstance(e, ProcessStats):
            # The head's limit and pause state are current (a control may be on its way).
            live.stats = dataclasses.replace(e, node=live.node, limit_s=live.limit_s,
                                             paused=live.paused)
            self._publish(live.stats)
        elif isinstance(e, RunStarted):
            self._publish(dataclasses.replace(e, log_path=str(live.spec.log_path),
                                              isolation=f"{e.isolation} on {live.node}"))
            if self.store is not None and row is not None:
                self.store.update_run(row, isolation=f"{e.isolation} on {live.node}")
        elif isinstance(e, RunControl):
            live.controls.append({"ts": time.time(), "action": e.action, "detail": e.detail})
            if self.store is not None and row is not None:
                self.store.update_run(row, controls=live.controls)
            self._publish(e)
        elif not isinstance(e, RunFinished):  # the head publishes its own, after outputs
            self._publish(e)

    async def _interrupt(self, live: _Remote) -> bool:
        """Stop the run on its node; True when the agent ended it (and may be reused)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_aw(live.agent.control.remote("interrupt")), 2.0)
        deadline = time.monotonic() + self.settings.sandbox.grace_period_s + 3.0
        while time.monotonic() < deadline:
            try:
                if not await asyncio.wait_for(_aw(live.agent.busy.remote()), 1.0):
                    return True
            except Exception:
                return False
            await asyncio.sleep(0.1)
        return False

    async def _finish_remote(self, live: _Remote, out: dict[str, Any], row: int | None
                             ) -> RunResult:
        spec = live.spec
        status: Status = out["status"]
        reason: str = out["reason"]
        # file work off the event loop (outputs may be large); events and rows on it
        refused = await asyncio.to_thread(_bring_back, spec, out)
        if out.get("ship_error") and status == "ok":
            status, reason = "failed", f"outputs not brought back: {out['ship_error']}"
        if refused:
            reason = (reason + "; " if reason else "") + (
                f"{len(refused)} output file(s) not brought back: outside the writable "
                f"folders or behind a symlink ({', '.join(refused[:3])})")
        isolation = f"{out.get('isolation', 'ray')} on {live.node}".strip()
        return self._end(spec, row, status, out.get("exit_code"), reason,
                         float(out.get("duration_s", 0.0)), str(out.get("stderr_tail", "")),
                         isolation, int(out.get("pid", -1)), live.controls)

    def _end(self, spec: RunSpec, row: int | None, status: Status, exit_code: int | None,
             reason: str, duration: float, tail: str, isolation: str, pid: int,
             controls: list[dict[str, object]]) -> RunResult:
        self._record_end(row, status, exit_code, reason, duration, controls)
        self._publish(RunFinished(idea_id=spec.idea_id, run=spec.run, attempt=spec.attempt,
                                  status=status, exit_code=exit_code, reason=reason,
                                  duration_s=duration))
        return RunResult(status, exit_code, duration, reason, tail, isolation,
                         Path(spec.log_path), row, pid)


def _bring_back(spec: RunSpec, out: dict[str, Any]) -> list[str]:
    """Write a remote run's changed files and its log into the head's folder (no symlink
    followed, only under the run's writable folders); the paths refused."""
    cwd = Path(spec.cwd)
    refused: list[str] = []
    files: ray_cluster.Bundle | None = out.get("files")
    if files is not None:
        allowed = []
        for w in spec.writable:
            wp = Path(w)
            with contextlib.suppress(ValueError):
                allowed.append((wp.relative_to(cwd) if wp.is_absolute() else wp).as_posix())
        refused = ray_cluster.unpack(cwd, files, allowed=allowed)
        for rel in out.get("deleted", []):
            if any(a in (".", "") or rel == a or rel.startswith(a.rstrip("/") + "/")
                   for a in allowed):
                with contextlib.suppress(OSError):
                    safe_files.remove(cwd, rel)
    log: bytes = out.get("log") or b""
    if log:
        with contextlib.suppress(OSError):
            rel = Path(spec.log_path).relative_to(cwd).as_posix() \
                if Path(spec.log_path).is_relative_to(cwd) else None
            if rel is not None:
                safe_files.write_bytes(cwd, rel, log, make_dirs=True)
            else:
                f = open_log_file(Path(spec.log_path), [Path(spec.log_path).parent])
                with f:
                    f.write(log.decode("utf-8", "replace"))
    return refused


def _lost(reason: str) -> dict[str, Any]:
    return {"lost": True, "status": "failed", "exit_code": None, "duration_s": 0.0, "reason": reason,
            "stderr_tail": "", "isolation": "ray", "pid": -1, "files": None, "log": b""}


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


async def _aw(ref: Any) -> Any:
    """Await a Ray ObjectRef from asyncio."""
    return await ref
