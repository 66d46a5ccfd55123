"""The contained executor: runs experiment, plot, LaTeX and check commands for the engine,
which alone owns their time limit, process tree, environment, isolation and output.

Every run: a clean environment (sandbox.child_environment), bubblewrap when available
(sandbox), rlimits and a per-run pids cgroup when writable, a watchdog on the monotonic
clock (time limit, process count, tree RSS, stall detection, stats every second), and an
output pump thread that turns raw pipe bytes into timestamped, stream-tagged log lines
and bounded batches of RunOutput events. Humans (TUI/CLI) may kill, extend, pause and
resume a run; time spent paused does not count against the limit. Each action is
recorded in the run's row (``controls``) and published as a RunControl event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aisci.engine.config import Settings
from aisci.engine.errors import AisciError
from aisci.engine.events import (
    Event,
    EventBus,
    Notice,
    ProcessStats,
    RunControl,
    RunFinished,
    RunStalled,
    RunStarted,
)
from aisci.engine.lab.secret_names import is_secret_name
from aisci.engine.lab.store import LabStore
from aisci.engine.run import confine, process_stats, sandbox
from aisci.engine.run import gpu as gpu_mod
from aisci.engine.run.cgroups import MemoryCgroup, default_memory_limit_mb
from aisci.engine.run.output_pump import OutputPump, open_log_file
from aisci.engine.run.process_stats import ProcessTree

Status = Literal["ok", "failed", "timeout", "killed", "interrupted"]
#: The reason of a run a human killed (other kills name the limit that was hit).
HUMAN_KILL = "killed by a human"
NODE_LOST = "node lost"
"""The start of the reason of a run whose machine went away (a cluster node): its code
was not at fault, so the next attempt runs the same code again."""
_TICK_S = 0.1
_SWEEP_S = 0.25  # process-tree sweep (a /proc scan); the pids cgroup is the hard cap
_STATS_EVERY_S = 1.0
_KILL_ROUNDS = 50  # bound on SIGKILL sweeps (each 50 ms) before giving up on a process
#: What a process prints when an allocation is refused (RLIMIT_DATA, cgroup reclaim).
_OOM_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory",
                "DefaultCPUAllocator: can't allocate memory")


class IsolationUnavailable(AisciError):
    """No isolation layer of ``sandbox.mode`` works here (one line: why, and the fix)."""


@dataclass
class RunSpec:
    argv: list[str]
    cwd: Path
    log_path: Path
    limit_s: float
    kind: str
    """experiment | plot | latex | baseline | check"""
    run: str
    """Label: run_1, plot, latex, baseline, ..."""
    attempt: int = 1
    idea_id: int | None = None
    writable: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    gpu: str | None = None
    """CUDA_VISIBLE_DEVICES value; None leaves it unset, "" hides every GPU."""
    network: bool = False
    ok_exit_codes: tuple[int, ...] = (0,)
    """Exit codes that mean success (chktex exits 2 when it printed warnings)."""


@dataclass
class RunResult:
    status: Status
    exit_code: int | None
    duration_s: float
    reason: str
    stderr_tail: str
    isolation: str
    log_path: Path
    row_id: int | None
    pid: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _LiveRun:
    """Mutable state of one running child, owned by the event loop."""

    def __init__(self, spec: RunSpec, proc: subprocess.Popen[bytes], tree: ProcessTree,
                 isolation: str, pump: OutputPump) -> None:
        self.spec = spec
        self.proc = proc
        self.tree = tree
        self.isolation = isolation
        self.pump = pump
        self.started = time.monotonic()
        self.limit_s = float(spec.limit_s)
        self.paused_since: float | None = None
        self.paused_total = 0.0
        self.stop_request: tuple[Status, str] | None = None
        self.stalled = False
        self.row_id: int | None = None
        self.controls: list[dict[str, object]] = []
        self.cpu = 0.0
        self.rss = 0
        self.nprocs = 1
        self.gpu_mem: int | None = None
        self.resumed_at = 0.0
        self.peak_rss = 0
        self.memory: MemoryCgroup | None = None
        self.memory_mb: int | None = None
        """The tree's memory limit, fixed when the run starts."""

    def elapsed(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        paused = self.paused_total + (now - self.paused_since if self.paused_since else 0.0)
        return max(0.0, now - self.started - paused)

    def silent_for(self, now: float) -> float:
        """Seconds without output, not counting time spent paused."""
        if self.paused_since is not None:
            return 0.0
        return now - max(self.pump.last_output, self.started, self.resumed_at)


class Executor:
    """Runs commands contained; one instance per engine. See the module docstring."""

    def __init__(self, settings: Settings, bus: EventBus | None = None,
                 store: LabStore | None = None, *, gpu_probe: gpu_mod.GPUProbe | None = None,
                 ) -> None:
        self.settings = settings
        self.bus = bus
        self.store = store
        self._gpu_probe = gpu_probe if gpu_probe is not None else gpu_mod.default_probe()
        self._live: dict[tuple[int | None, str], _LiveRun] = {}
        self._escapees = False
        """Whether this process is the subreaper of the runs (process_stats)."""
        # Non-dumpable, secrets out of the initial environment block: the children cannot
        # read the engine's /proc environ or memory, whatever layer isolates them.
        confine.harden_engine(is_secret_name)

    # -- public API ------------------------------------------------------------------------
    def isolation(self) -> tuple[str, str]:
        return sandbox.probe_isolation(self.settings.sandbox)

    def memory_limit_mb(self) -> int | None:
        """The memory limit of one run's tree (None when switched off)."""
        value = self.settings.sandbox.max_rss_mb
        if value == "off":
            return None
        if value == "auto":
            sched = self.settings.scheduler
            return default_memory_limit_mb(max(sched.parallel, len(sched.gpus or [])))
        return int(value)

    async def run(self, spec: RunSpec) -> RunResult:
        sb = self.settings.sandbox
        level, detail = self.isolation()
        if level == sandbox.UNAVAILABLE:
            raise IsolationUnavailable(detail)
        if sb.require_isolation and level == "none":
            raise IsolationUnavailable("sandbox.require_isolation is true but sandbox.mode = "
                                       "none runs experiments without isolation")
        key = (spec.idea_id, spec.run)
        if key in self._live:
            raise RuntimeError(f"run {spec.run} of idea {spec.idea_id} is already running")
        cwd = Path(spec.cwd).resolve()
        log_path = Path(spec.log_path)
        # Opened now, before the child exists, relative to the folder the child can write:
        # whatever an earlier run planted at the log's place is replaced, not followed.
        log_file = open_log_file(log_path, [Path(spec.cwd), cwd, *(
            Path(spec.cwd) / w for w in spec.writable), *(cwd / w for w in spec.writable)])
        cgroup = sandbox.PidsCgroup.create(sb.max_processes) if sb.pids_cgroup else None
        mem_mb = self.memory_limit_mb()
        memory = MemoryCgroup.create(mem_mb) if mem_mb is not None else None
        private_dir = None if level == "bwrap" else Path(tempfile.mkdtemp(prefix="aisci-home-"))
        token = secrets.token_hex(8)
        extra = dict(spec.env)
        if spec.gpu is not None:
            extra["CUDA_VISIBLE_DEVICES"] = spec.gpu
        if level == "bwrap":
            home = tmp = sandbox.sandbox_home()
            tmp = "/tmp"
        else:
            assert private_dir is not None
            (private_dir / "tmp").mkdir()
            home, tmp = str(private_dir), str(private_dir / "tmp")
        env = sandbox.child_environment(sb, home=home, tmpdir=tmp, extra=extra)
        env["AISCI_RUN_TOKEN"] = token  # lets the sweep recognise re-parented orphans
        argv = [str(a) for a in spec.argv]
        layout = sandbox.BwrapLayout(
            cwd=cwd, writable=[cwd / w for w in spec.writable],
            network=spec.network or sb.allow_network, visible=sandbox.existing_paths(argv),
            hidden=[self.store.lab_dir] if self.store is not None else [])
        preexec = sandbox.rlimit_preexec(
            sb, [cgroup.procs_file if cgroup else None, memory.procs_file if memory else None],
            subreaper=level != "bwrap",
            memory_bytes=mem_mb * 2**20 if mem_mb is not None else None)
        pump = OutputPump(log_path, spec.idea_id, spec.run, self.bus,
                          tail_chars=self.settings.experiment.stderr_tail_chars,
                          max_log_bytes=sb.max_log_mb * 1024 * 1024, log_file=log_file)
        pump.header(f"$ {' '.join(spec.argv)}  [cwd {cwd}, isolation {level}, "
                    f"limit {spec.limit_s:g} s, attempt {spec.attempt}]")
        wall_start = time.time()
        plan: confine.Plan | None = None
        seccomp_fd: int | None = None
        try:
            if level == "bwrap":
                seccomp_fd = sandbox.bwrap_seccomp_fd(layout.network)
                argv = sandbox.bwrap_argv(shutil.which("bwrap") or "bwrap", layout, argv,
                                          seccomp_fd=seccomp_fd)
            elif level == "landlock":  # prepared here; the child only applies it
                assert private_dir is not None
                plan = sandbox.landlock_plan(layout, private_dir)
            if level != "bwrap" and cgroup is None:
                self._catch_escapees()  # no pid namespace, no cgroup: see process_stats
            preexec_fn = sandbox.confined_preexec(preexec, plan)
            pass_fds = () if seccomp_fd is None else (seccomp_fd,)

            def start() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                    preexec_fn=preexec_fn, close_fds=True, pass_fds=pass_fds)

            proc = await asyncio.to_thread(process_stats.spawn_main, start)
        except OSError as exc:
            pump.close(f"could not start: {exc}")
            if cgroup:
                cgroup.remove()
            if memory:
                memory.remove()
            _rm_private(private_dir)
            reason = f"could not start {spec.argv[0]}: {exc.strerror or exc}"
            row = self._record_start(spec, None, None, level, log_path, wall_start)
            self._record_end(row, "failed", None, reason, 0.0)
            return RunResult("failed", None, 0.0, reason, "", level, log_path, row, -1)
        finally:
            if plan is not None:
                plan.close()
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        tree = ProcessTree(proc.pid, cgroup.pids if cgroup else None, token=token)
        live = _LiveRun(spec, proc, tree, level, pump)
        live.memory, live.memory_mb = memory, mem_mb
        self._live[key] = live
        pump.start(proc.stdout, proc.stderr)
        live.row_id = self._record_start(spec, proc.pid, tree.root_start_time, level, log_path,
                                         wall_start)
        self._publish(RunStarted(idea_id=spec.idea_id, run=spec.run, attempt=spec.attempt,
                                 pid=proc.pid, limit_s=live.limit_s, isolation=level,
                                 log_path=str(log_path)))
        try:
            status, reason = await self._watch(live, cgroup)
        except asyncio.CancelledError:
            await self._terminate(live)
            self._finish(live, "interrupted", "the engine stopped the run", cgroup, private_dir)
            raise
        return self._finish(live, status, reason, cgroup, private_dir)

    def running(self) -> list[ProcessStats]:
        now = time.monotonic()
        return [self._info(lr, now) for lr in self._live.values()]

    def kill(self, idea_id: int | None, run: str) -> bool:
        live = self._live.get((idea_id, run))
        if live is None or live.stop_request is not None:
            return False
        live.stop_request = ("killed", HUMAN_KILL)
        self._control(live, "kill", "")
        return True

    def extend(self, idea_id: int | None, run: str, seconds: float) -> float:
        live = self._live.get((idea_id, run))
        if live is None:
            raise KeyError(f"no running process for idea {idea_id} run {run}")
        live.limit_s = max(live.elapsed() + 1.0, live.limit_s + float(seconds))
        self._control(live, "extend", f"{seconds:+g} s, limit now {live.limit_s:g} s")
        if self.store is not None and live.row_id is not None:
            self.store.update_run(live.row_id, limit_s=live.limit_s)
        return live.limit_s

    def pause(self, idea_id: int | None, run: str) -> bool:
        live = self._live.get((idea_id, run))
        if live is None or live.paused_since is not None or live.stop_request is not None:
            return False
        live.tree.stop()
        live.paused_since = time.monotonic()
        self._control(live, "pause", f"at {live.elapsed():.1f} s")
        return True

    def resume(self, idea_id: int | None, run: str) -> bool:
        live = self._live.get((idea_id, run))
        if live is None or live.paused_since is None:
            return False
        live.tree.cont()
        now = time.monotonic()
        live.paused_total += now - live.paused_since
        live.paused_since = None
        live.resumed_at = now
        self._control(live, "resume", f"paused {live.paused_total:.1f} s in total")
        return True

    def _catch_escapees(self) -> None:
        """Become the subreaper of the runs' trees (see process_stats): what outlives
        its run is killed as the run ends, and by a sweep every second after that."""
        self._escapees = process_stats.become_subreaper(self.settings.sandbox.max_processes)

    async def _sweep_escapees(self) -> None:
        killed = await asyncio.to_thread(process_stats.sweep_escapees)
        if killed:
            self._publish(Notice(level="warning", message=(
                f"killed {len(killed)} process(es) that outlived their run (they had left "
                f"its process tree): pid {', '.join(map(str, killed[:5]))}"
                + (" ..." if len(killed) > 5 else ""))))

    async def shutdown(self) -> None:
        """Stop every run (status "interrupted") and wait until they are recorded."""
        for live in list(self._live.values()):
            if live.stop_request is None:
                live.stop_request = ("interrupted", "the engine shut down")
        for _ in range(int((self.settings.sandbox.grace_period_s + 10) / _TICK_S)):
            if not self._live:
                break
            await asyncio.sleep(_TICK_S)
        if self._escapees:
            await self._sweep_escapees()

    # -- watchdog --------------------------------------------------------------------------
    async def _watch(self, live: _LiveRun, cgroup: sandbox.PidsCgroup | None
                     ) -> tuple[Status, str]:
        sb = self.settings.sandbox
        stall_after = self.settings.experiment.stall_after_s
        mem_mb = live.memory_mb
        next_stats = next_sweep = time.monotonic()
        while True:
            await asyncio.sleep(_TICK_S)
            rc = live.proc.poll()
            if rc is not None:
                # The main process is gone; nothing of the run may outlive it.
                await self._terminate(live, grace=min(1.0, sb.grace_period_s))
                reason = _exit_reason(rc)
                if rc != 0 and mem_mb is not None and self._memory_exhausted(live):
                    reason = _memory_reason(mem_mb, live)
                if cgroup is not None and cgroup.limit_hit():
                    reason = (f"{reason}; " if reason else "") + (
                        f"a fork was refused at the process limit ({sb.max_processes})")
                if rc != 0 and rc in live.spec.ok_exit_codes:
                    return "ok", f"finished with warnings (exit code {rc})"
                return ("ok" if rc == 0 else "failed"), reason
            now = time.monotonic()
            stop = live.stop_request
            if stop is None and live.elapsed(now) > live.limit_s:
                stop = ("timeout", f"timed out after {live.limit_s:g} s")
            if stop is None and live.paused_since is None and now >= next_sweep:
                next_sweep = now + _SWEEP_S
                # a pass over /proc: on a thread, not on the loop the TUI draws on
                live.cpu, live.rss, live.nprocs = await asyncio.to_thread(live.tree.usage)
                if live.memory is not None:
                    live.rss = max(live.rss, live.memory.usage())
                live.peak_rss = max(live.peak_rss, live.rss)
                if live.nprocs > sb.max_processes or (cgroup is not None and cgroup.limit_hit()):
                    stop = ("killed", f"exceeded the process limit ({sb.max_processes}); "
                            "fork bomb or runaway relaunch?")
                elif mem_mb is not None and live.rss > mem_mb * 2**20:
                    stop = ("killed", _memory_reason(mem_mb, live))
            if stop is not None:
                await self._terminate(live)
                return stop[0], stop[1]
            silent = live.silent_for(now)
            if silent > stall_after and not live.stalled:
                live.stalled = True
                self._publish(RunStalled(idea_id=live.spec.idea_id, run=live.spec.run,
                                         silent_for_s=silent))
            elif silent <= stall_after:
                live.stalled = False
            if now >= next_stats:
                next_stats = now + _STATS_EVERY_S
                live.gpu_mem = None if self._gpu_probe is None else \
                    await asyncio.to_thread(self._gpu_memory, live)
                self._publish(self._info(live, now))

    def _gpu_memory(self, live: _LiveRun) -> int | None:
        """GPU memory of the run's tree (a /proc pass and an NVML query: on a thread)."""
        if self._gpu_probe is None:
            return None
        return gpu_mod.tree_gpu_memory(self._gpu_probe, live.tree.pids())

    async def _terminate(self, live: _LiveRun, grace: float | None = None) -> None:
        """SIGTERM the tree, wait the grace period, then SIGKILL whatever is left."""
        grace = self.settings.sandbox.grace_period_s if grace is None else grace
        tree = live.tree
        # bubblewrap's own processes (the outer monitor and the namespace's init) are not
        # sent SIGTERM: the monitor would SIGKILL the sandbox at once, skipping the grace.
        spare: set[int] = set()
        if live.isolation == "bwrap":
            spare.add(live.proc.pid)
            with contextlib.suppress(Exception):
                spare.update(c.pid for c in tree.refresh() if c.ppid() == live.proc.pid)
        if live.paused_since is not None:
            tree.cont()
        if tree.signal(signal.SIGTERM, exclude=spare) or live.proc.poll() is None:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                others = [p for p in tree.pids() if p not in spare]
                if not others and (live.isolation == "bwrap" or live.proc.poll() is not None):
                    break
                await asyncio.sleep(0.05)
        for round_ in range(_KILL_ROUNDS):
            # Under bubblewrap, kill the inside first: the namespace's init takes every
            # process in it along, and the outer monitor then reaps it and exits by itself
            # (killing both at once would leave the init as a zombie for the host's init).
            exclude = {live.proc.pid} if live.isolation == "bwrap" and round_ < 10 else None
            sent = tree.signal(signal.SIGKILL, exclude=exclude)
            if not sent and live.proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            live.proc.wait(timeout=1.0)
        if self._escapees:  # what left the tree as it ended
            await self._sweep_escapees()

    # -- bookkeeping ----------------------------------------------------------------------
    def _finish(self, live: _LiveRun, status: Status, reason: str,
                cgroup: sandbox.PidsCgroup | None, private_dir: Path | None) -> RunResult:
        spec = live.spec
        duration = live.elapsed()
        live.pump.join(timeout=2.0)
        summary = f"{status}: {reason}" if reason else status
        live.pump.close(f"{summary} (ran {duration:.1f} s)")
        if cgroup is not None:
            cgroup.remove()
        if live.memory is not None:
            live.memory.remove()
        _rm_private(private_dir)
        self._live.pop((spec.idea_id, spec.run), None)
        exit_code = live.proc.returncode
        if exit_code is not None:  # reaped: its pid is no run's any more
            process_stats.main_reaped(live.proc)
        self._record_end(live.row_id, status, exit_code, reason, duration, live.controls)
        self._publish(RunFinished(idea_id=spec.idea_id, run=spec.run, attempt=spec.attempt,
                                  status=status, exit_code=exit_code, reason=reason,
                                  duration_s=duration))
        return RunResult(status, exit_code, duration, reason, live.pump.stderr_tail(),
                         live.isolation, Path(spec.log_path), live.row_id, live.proc.pid)

    def _info(self, live: _LiveRun, now: float) -> ProcessStats:
        return ProcessStats(
            idea_id=live.spec.idea_id, run=live.spec.run, kind=live.spec.kind,
            pid=live.proc.pid, elapsed_s=live.elapsed(now), limit_s=live.limit_s,
            cpu_percent=live.cpu, rss_bytes=live.rss, gpu_mem_bytes=live.gpu_mem,
            last_output_age_s=now - max(live.pump.last_output, live.started),
            paused=live.paused_since is not None, isolation=live.isolation,
            stalled=live.stalled, attempt=live.spec.attempt, processes=live.nprocs)

    def _control(self, live: _LiveRun, action: str, detail: str) -> None:
        live.controls.append({"ts": time.time(), "action": action, "detail": detail})
        live.pump.header(f"[aisci] {action} {detail}".rstrip())
        if self.store is not None and live.row_id is not None:
            self.store.update_run(live.row_id, controls=live.controls)
        self._publish(RunControl(idea_id=live.spec.idea_id, run=live.spec.run, action=action,
                                 detail=detail))

    def _record_start(self, spec: RunSpec, pid: int | None, pid_start: float | None,
                      isolation: str, log_path: Path, wall_start: float) -> int | None:
        if self.store is None:
            return None
        return self.store.add_run(
            spec.idea_id, spec.run, spec.attempt, spec.kind, status="running", pid=pid,
            pid_start_time=pid_start, isolation=isolation, limit_s=float(spec.limit_s),
            log_path=str(log_path), started_at=wall_start)

    def _record_end(self, row_id: int | None, status: str, exit_code: int | None, reason: str,
                    duration: float, controls: list[dict[str, object]] | None = None) -> None:
        if self.store is None or row_id is None:
            return
        fields: dict[str, object] = {"status": status, "exit_code": exit_code, "reason": reason,
                                     "finished_at": time.time(), "duration_s": duration}
        if controls:
            fields["controls"] = controls
        self.store.update_run(row_id, **fields)

    def _publish(self, event: Event) -> None:
        if self.bus is not None:
            self.bus.publish(event)

    def _memory_exhausted(self, live: _LiveRun) -> bool:
        """Whether a failed run died of its memory limit: the kernel killed inside its
        cgroup, or an allocation was refused (RLIMIT_DATA) and the process said so."""
        if live.memory is not None:
            live.peak_rss = max(live.peak_rss, live.memory.peak())
            if live.memory.limit_hit():
                return True
        tail = live.pump.stderr_tail()
        return any(marker in tail for marker in _OOM_MARKERS)


def _memory_reason(limit_mb: int, live: _LiveRun) -> str:
    peak = live.peak_rss / 2**20
    if peak >= limit_mb * 0.95:
        return f"memory limit {limit_mb} MB exceeded (peak {peak:.0f} MB)"
    return (f"memory limit {limit_mb} MB exceeded (an allocation past it was refused; "
            f"peak {peak:.0f} MB)")


def _exit_reason(rc: int) -> str:
    """How a process ended, in words: a death by signal reads as the signal's name, also
    when a wrapper (bubblewrap, a shell) reports it as 128 + the signal number."""
    if rc == 0:
        return ""
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-rc).name}"
        return f"killed by signal {-rc}"
    if 128 < rc <= 128 + 64:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(rc - 128).name} (exit code {rc})"
    return f"exit code {rc}"


def _rm_private(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def python_argv(script: str, *args: str) -> list[str]:
    """``[sys.executable, script, *args]``: the interpreter experiments run under."""
    return [sys.executable, script, *args]
