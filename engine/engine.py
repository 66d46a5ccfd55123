"""The engine facade: one object the TUI and the headless CLI drive.

``Engine(lab, settings)`` opens the lab (taking its lock), and on ``start()`` recovers
from a previous crash (orphaned processes, interrupted attempts), builds the services
(LLM client, executor, scheduler, literature) and starts the stage machine for every
unfinished idea. Commands (approve, veto, kill, extend, ...) may be called at any time
from the event loop's thread; they change persisted state and take effect at the
pipeline's next safe point. Everything the engine does is published on ``engine.bus``;
persistent events are also appended to the store's event log and to ``engine.log``.
A started engine serves its commands and events on the lab's control socket
(:mod:`aisci.engine.control`): viewers in other terminals and the CLI of any shell drive
it there, and ``aisci stop`` asks it to stop (:attr:`stop_requested`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.control import protocol as wire
from aisci.engine.control.engine_log import EngineLog
from aisci.engine.control.server import ControlServer
from aisci.engine.errors import AisciError, UsageError
from aisci.engine.events import EventBus, ProcessStats
from aisci.engine.lab.store import LabInUse, LabReadOnly, LabStore
from aisci.engine.literature import Literature
from aisci.engine.llm.client import LLMClient, ProviderFactory
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.llm.scripted import ScriptedProvider
from aisci.engine.pipeline import IdeaOutcome, Pipeline, PipelineOptions
from aisci.engine.resume import RecoveryReport, recover_lab
from aisci.engine.run.executor import Executor
from aisci.engine.run.ray_executor import RayExecutor
from aisci.engine.run.scheduler import Scheduler
from aisci.engine.snapshot import LabSnapshot, build_snapshot
from aisci.engine.stages import approval
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.registry import spec

log = logging.getLogger(__name__)

_BUDGET_KV = "pipeline.budget_override"
MAX_IDEAS_PER_REQUEST = 1000
MAX_EXTEND_S = 30 * 86400.0
"""One extend (or shortening) of a run's limit: at most 30 days."""
MAX_BUDGET_USD = 1e6
LAB_CHECK_S = 5.0
"""How often a running engine checks that its lab folder is still the one it opened."""


def _number_in(value: object, lo: float, hi: float, *, whole: bool = False) -> bool:
    """A command's number (whole when ``whole``) within [lo, hi]: not a bool, not NaN."""
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
        return False
    # math.isfinite would overflow on a huge int; an int is finite anyway
    return (isinstance(value, int) or math.isfinite(value)) and lo <= value <= hi


class EngineError(AisciError):
    """A command that cannot be carried out (unknown idea, no executor, ...)."""


GIT_INSTALL = "apt-get install git, or `aisci setup`"
"""How to get git (named by the engine's start check and by ``aisci doctor``)."""


class GitNotFound(UsageError):
    """No git executable on PATH: every idea is a git repository, so no engine starts."""

    def __init__(self) -> None:
        super().__init__(f"git not found on PATH: every idea is a git repository, so the "
                         f"engine cannot start; install it ({GIT_INSTALL})")


class Engine:
    """The in-process engine for one lab."""

    blocking_commands = False
    """Commands return at once (they run on the caller's event loop)."""

    def __init__(self, lab: Path, settings: Settings, *, headless: bool = True,
                 provider_factory: ProviderFactory | None = None,
                 options: PipelineOptions | None = None,
                 stages: dict[str, Callable[..., Awaitable[Any]]] | None = None,
                 executor: Any = None, scheduler: Any = None, literature: Any = None,
                 store: LabStore | None = None, read_only: str | None = None) -> None:
        """``read_only``: open the lab as a viewer (no lock, nothing written, no stage
        runs; every command raises LabReadOnly) and say why in this text."""
        self.lab = Path(lab).resolve()
        self.settings = settings
        self.headless = headless
        self.bus = EventBus()
        self._read_only = read_only
        if store is None:
            store = LabStore.open_read_only(self.lab) if read_only else LabStore(self.lab)
        self.store = store
        self._apply_budget_override()
        self.options = options or PipelineOptions(template=settings.general.template)
        self.llm = LLMClient(settings, self.store, self.bus, provider_factory=provider_factory)
        self.prompts = PromptLibrary(self.lab)
        self._executor: Executor | None = executor
        self.executor: Executor | None = None
        """The started engine's executor: the injected one or its own."""
        self._scheduler = scheduler
        self._literature = literature
        self._stages = stages
        self.ctx: StageContext | None = None
        self.pipeline: Pipeline | None = None
        self.recovery = RecoveryReport()
        self._sink_installed = False
        self._started = False
        self._pending_ideas = 0
        self._ensure_total = 0
        self.control: ControlServer | None = None
        self.engine_log: EngineLog | None = None
        self.stop_requested = asyncio.Event()
        """Set when a client asks the engine to stop (``aisci stop``); the owner of the
        engine (the batch loop, the TUI, a detached process) then stops it."""
        self._lab_watch: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, lab: Path, settings: Settings, **kwargs: Any) -> Engine:
        """The engine for ``lab``; a lab this process cannot write (a read-only mount, a
        colleague's folder) or that another process runs is opened as a read-only viewer
        (:attr:`read_only` says why) instead of failing."""
        try:
            return cls(lab, settings, **kwargs)
        except (LabReadOnly, LabInUse) as exc:
            return cls(lab, settings, **kwargs, read_only=exc.message)

    @property
    def read_only(self) -> str | None:
        """Why this engine only views the lab (commands are refused), or None."""
        return self._read_only

    @property
    def attached_to(self) -> int | None:
        """None: this is the engine itself, not a viewer of one in another process."""
        return None

    def _writable(self) -> None:
        """Refuse a command on a read-only engine: one line, exit code 2."""
        if self._read_only:
            raise LabReadOnly(self.lab, "opened as a viewer: " + self._read_only)

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        if self._read_only is None and shutil.which("git") is None:
            raise GitNotFound()  # one line now, not a failed stage later
        self._started = True
        self.bus.bind_loop()
        if self._read_only:
            return  # a viewer: no recovery, no services, no stage runs
        if not self._sink_installed:
            self.bus.add_sink(self._persist_event)
            self.engine_log = EngineLog(self.lab)
            self.bus.add_sink(self.engine_log)
            logging.getLogger("aisci").addHandler(self.engine_log.handler)
            self._sink_installed = True
        self.recovery = await asyncio.to_thread(
            recover_lab, self.store, self.settings.sandbox.grace_period_s)
        if self.recovery.anything:
            self.bus.publish(ev.Notice(level="info",
                                       message=f"resumed lab: {self.recovery.summary()}"))
        if self._executor is not None:
            self.executor = self._executor
        elif self.settings.scheduler.backend == "ray":  # connecting may take seconds
            self.executor = await asyncio.to_thread(self._make_executor)
        else:
            self.executor = self._make_executor()
        self.ctx = StageContext(
            lab=self.lab, settings=self.settings, store=self.store, bus=self.bus, llm=self.llm,
            prompts=self.prompts, executor=self.executor,
            scheduler=self._scheduler or self._make_scheduler(),
            literature=self._literature or self._make_literature())
        self.pipeline = Pipeline(self.ctx, stages=self._stages, headless=self.headless,
                                 options=self.options)
        if self._ensure_total:
            self.pipeline.ensure_ideas(self._ensure_total)
        if self._pending_ideas:
            self.pipeline.request_ideas(self._pending_ideas)
            self._pending_ideas = 0
        await self._serve_control()
        self._lab_watch = asyncio.create_task(self._watch_lab(), name="lab-watch")
        await self.pipeline.start()

    async def stop(self) -> None:
        """Stop at once: running stages are left resumable, processes are terminated
        (their attempts marked interrupted), the lab is released."""
        if self._lab_watch is not None:
            self._lab_watch.cancel()
            self._lab_watch = None
        if self.control is not None:
            await self.control.close()
            self.control = None
        if self.pipeline is not None:
            await self.pipeline.stop()
        ex = self._current_executor()
        if ex is not None and hasattr(ex, "shutdown"):
            with contextlib.suppress(Exception):
                await ex.shutdown()
        lit = self.ctx.literature if self.ctx else None
        if lit is not None and hasattr(lit, "aclose"):
            with contextlib.suppress(Exception):
                await lit.aclose()
        with contextlib.suppress(Exception):
            await self.llm.aclose()
        self.store.close()
        if self.engine_log is not None:
            logging.getLogger("aisci").removeHandler(self.engine_log.handler)
            self.engine_log.close()
        self._started = False

    async def wait_idle(self) -> None:
        """Until nothing is running: every idea finished, failed, or waits for a human."""
        if self.pipeline is not None:
            await self.pipeline.wait_idle()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve_control(self) -> None:
        """Serve the control socket; where it cannot be (a file planted at its place, a
        file system without Unix sockets) the engine runs on and says once why no viewer
        or other shell can reach it."""
        server = ControlServer(self.lab, self.bus, calls=self._control_calls(),
                               processes=self.processes, request_stop=self.request_stop,
                               info=self._control_info)
        try:
            await server.start()
        except (wire.ControlError, OSError) as exc:
            why = exc.message if isinstance(exc, wire.ControlError) else \
                f"{wire.socket_path(self.lab)}: {exc.strerror or exc}"
            self.bus.publish(ev.Notice(level="warning", message=(
                f"no control socket ({why}): other terminals cannot attach to this engine "
                "or drive it")))
            return
        self.control = server

    async def _watch_lab(self) -> None:
        """A lab deleted or moved away under a running engine (``rm -rf`` of a lab a
        detached engine still runs) leaves it writing into files nobody can reach, for
        as long as the batch lasts. The engine notices within LAB_CHECK_S and stops: its
        runs end and it leaves no process behind."""
        def identity(path: Path) -> tuple[int, int] | None:
            try:
                st = os.stat(path)
            except OSError:
                return None
            return st.st_dev, st.st_ino

        first = (identity(self.lab), identity(self.store.path))
        while True:
            await asyncio.sleep(LAB_CHECK_S)
            now = (identity(self.lab), identity(self.store.path))
            if now != first:
                which = 0 if now[0] != first[0] else 1
                what = ("the folder", "aisci.db")[which] + (
                    " was removed" if now[which] is None else " was replaced")
                self.bus.publish(ev.Notice(level="error", message=(
                    f"lab {self.lab}: {what} while the engine ran; stopping the engine "
                    "(its runs are ended)")))
                self.request_stop(f"lab {what}")
                return

    def request_stop(self, source: str) -> None:
        """Ask the engine's owner to stop it cleanly (sets :attr:`stop_requested`)."""
        self.bus.publish(ev.EngineStopRequested(source=source))
        self.stop_requested.set()

    def _control_calls(self) -> dict[str, Callable[..., object]]:
        calls: dict[str, Callable[..., object]] = {
            "generate_ideas": self.generate_ideas, "approve": self.approve,
            "veto": self.veto, "edit_idea": self.edit_idea, "pause_idea": self.pause_idea,
            "resume_idea": self.resume_idea, "retry_stage": self.retry_stage,
            "skip_stage": self.skip_stage, "literature_decision": self.literature_decision,
            "kill_run": self.kill_run, "extend_run": self.extend_run,
            "pause_run": self.pause_run, "resume_run": self.resume_run,
            "raise_budget": self.raise_budget}
        assert set(calls) == set(wire.METHODS), "the control methods and the engine differ"
        return calls

    def _control_info(self) -> dict[str, Any]:
        return {"engine_pid": os.getpid(), "lab": str(self.lab), "headless": self.headless,
                "settings": self.settings.model_dump(mode="json"),
                "template": self.options.template}

    # -- services -------------------------------------------------------------------------
    def _make_executor(self) -> Executor:
        if self.settings.scheduler.backend == "ray":  # the nodes of a Ray cluster
            return RayExecutor(self.settings, self.bus, self.store)
        return Executor(self.settings, self.bus, self.store)

    def _make_scheduler(self) -> Scheduler:
        if isinstance(self.executor, RayExecutor):  # its slots are the cluster's
            return self.executor.scheduler
        return Scheduler(self.settings)

    def _make_literature(self) -> Literature:
        return Literature(self.settings, self.store, self.bus)

    def _persist_event(self, event: ev.Event) -> None:
        if not event.persistent or self._read_only:
            return
        try:
            self.store.add_event(event.kind, event.to_dict(), getattr(event, "idea_id", None))
        except (sqlite3.Error, ValueError) as exc:  # never let logging break the engine
            log.debug("event not persisted: %s", exc)

    def _apply_budget_override(self) -> None:
        raised = self.store.kv_get(_BUDGET_KV, {}) or {}
        b = self.settings.budget
        for scope, key in (("lab", "lab_usd"), ("idea", "idea_usd")):
            value = raised.get(scope)
            current = getattr(b, key)
            if value is not None and current is not None and value > current:
                setattr(b, key, float(value))

    # -- helpers --------------------------------------------------------------------------
    def _idea(self, idea_id: int) -> Any:
        if not _number_in(idea_id, 1, 2**63 - 1, whole=True):
            raise UsageError(f"idea id {idea_id!r}: expected a whole number >= 1")
        row = self.store.get_idea(idea_id)
        if row is None:
            raise EngineError(f"no idea with id {idea_id} in {self.lab}")
        return row

    def _need_pipeline(self) -> Pipeline:
        if self.pipeline is None:
            raise EngineError("the engine is not started (call `await engine.start()`)")
        return self.pipeline

    def _current_executor(self) -> Executor | None:
        return self.executor if self.executor is not None else self._executor

    def _executor_or_fail(self) -> Executor:
        ex = self._current_executor()
        if ex is None:
            raise EngineError("no executor: the engine is not started")
        return ex

    # -- commands -------------------------------------------------------------------------
    def generate_ideas(self, n: int) -> None:
        """Generate ``n`` more ideas for the configured template (in the background)."""
        self._writable()
        if not _number_in(n, 1, MAX_IDEAS_PER_REQUEST, whole=True):
            raise UsageError(f"number of ideas {n!r}: expected a whole number from 1 to "
                             f"{MAX_IDEAS_PER_REQUEST}")
        self._check_scripted_ideas(n)
        if self.pipeline is None:
            self._pending_ideas += n
        else:
            self.pipeline.request_ideas(n)

    def _check_scripted_ideas(self, n: int) -> None:
        """A scripted model (the demo) answers only what its cassette holds: asking it for
        more ideas than recorded fails now, in one line, instead of later in ideation."""
        model = self.settings.models.for_stage("ideate")
        kind, _, name = model.partition(":")
        if kind != "scripted":
            return
        try:
            cassette = ScriptedProvider(name)
        except AisciError:
            return  # ideation reports the broken cassette itself
        template = self.options.template
        nxt = self.store.kv_get(f"ideation.{template}.next_attempt")
        if nxt is None:
            nxt = 1 + sum(1 for i in self.store.list_ideas()
                          if i.template == template and i.origin == "generated")
        first = int(nxt) + self._pending_ideas
        left = 0
        while left < n and cassette.answer_for(f"ideate/idea-{first + left}/round-1"):
            left += 1
        if left < n:
            raise EngineError(
                f"the scripted model ({model}) has a fixed set of recorded ideas and "
                + (f"only {left} more" if left else "no more")
                + "; set an API key and use a real model (--model) to generate more")

    def ensure_ideas(self, total: int) -> None:
        """Have ``total`` generated ideas for the template (a batch target; a crash or a
        re-run of the same command never generates more)."""
        if self.pipeline is None:
            self._ensure_total = max(self._ensure_total, total)
        else:
            self.pipeline.ensure_ideas(total)

    def approve(self, idea_id: int) -> None:
        self._writable()
        row = self._idea(idea_id)
        approval.approve(self.store, self.bus, idea_id, source="human")
        if self.pipeline:
            self.pipeline.wake(idea_id)
            started = self.pipeline.running(idea_id)
            self.bus.publish(ev.Notice(level="info", idea_id=idea_id, message=(
                f"idea {idea_id} {row.name} approved: "
                + ("its experiments start now" if started else "nothing left to run"))))

    def veto(self, idea_id: int, reason: str) -> None:
        self._writable()
        self._idea(idea_id)
        approval.veto(self.store, self.bus, idea_id, reason, source="human")
        if self.pipeline:
            self.pipeline.wake(idea_id)

    def edit_idea(self, idea_id: int, fields: dict[str, Any]) -> None:
        self._writable()
        self._idea(idea_id)
        approval.edit(self.store, self.bus, idea_id, fields, source="human")
        if self.pipeline:
            self.pipeline.wake(idea_id)

    def pause_idea(self, idea_id: int) -> None:
        """Stop the idea at its next safe point (between stages) until resumed."""
        self._writable()
        self._idea(idea_id)
        p = self._need_pipeline()
        p.set_paused(idea_id, True)
        self.bus.publish(ev.IdeaChanged(idea_id=idea_id, status=self._idea(idea_id).status,
                                        detail="paused"))

    def resume_idea(self, idea_id: int) -> None:
        self._writable()
        self._idea(idea_id)
        p = self._need_pipeline()
        p.set_paused(idea_id, False)
        self.bus.publish(ev.IdeaChanged(idea_id=idea_id, status=self._idea(idea_id).status,
                                        detail="resumed"))
        p.wake(idea_id)

    def retry_stage(self, idea_id: int, stage: str) -> None:
        self._writable()
        self._idea(idea_id)
        self._check_stage(stage)
        self._need_pipeline().retry_stage(idea_id, stage)

    def skip_stage(self, idea_id: int, stage: str) -> None:
        self._writable()
        self._idea(idea_id)
        self._check_stage(stage)
        try:
            self._need_pipeline().skip_stage(idea_id, stage)
        except ValueError as exc:
            raise EngineError(str(exc)) from None

    @staticmethod
    def _check_stage(stage: str) -> None:
        try:
            spec(stage)
        except UsageError as exc:
            raise EngineError(str(exc)) from None

    def kill_run(self, idea_id: int | None, run: str) -> bool:
        self._writable()
        return bool(self._executor_or_fail().kill(idea_id, run))

    def extend_run(self, idea_id: int | None, run: str, seconds: float) -> float:
        self._writable()
        if not _number_in(seconds, -MAX_EXTEND_S, MAX_EXTEND_S):
            raise UsageError(f"extend by {seconds!r} s: expected a number of seconds within "
                             f"±{MAX_EXTEND_S:g}")
        try:
            return float(self._executor_or_fail().extend(idea_id, run, seconds))
        except KeyError:  # the run ended (e.g. while the extend dialog was open)
            raise EngineError(self._not_running(idea_id, run)) from None

    def _not_running(self, idea_id: int | None, run: str) -> str:
        """Why a run cannot be controlled: it finished (and how), or it never ran."""
        who = f"idea {idea_id} " if idea_id is not None else ""
        rows = [r for r in self.store.runs(idea_id) if r.run == run
                and (idea_id is not None or r.idea_id is None)]
        if rows and rows[-1].status != "running":
            return f"{who}{run} already finished ({rows[-1].status}); nothing to extend"
        return f"{who}{run} is not running; nothing to extend"

    def pause_run(self, idea_id: int | None, run: str) -> bool:
        self._writable()
        return bool(self._executor_or_fail().pause(idea_id, run))

    def resume_run(self, idea_id: int | None, run: str) -> bool:
        self._writable()
        return bool(self._executor_or_fail().resume(idea_id, run))

    def raise_budget(self, scope: str, usd: float) -> None:
        """Set the lab or per-idea budget to ``usd`` and wake the stages it paused."""
        self._writable()
        if scope not in ("lab", "idea"):
            raise EngineError(f"budget scope {scope!r}: expected 'lab' or 'idea'")
        if not _number_in(usd, 0, MAX_BUDGET_USD):
            raise UsageError(f"budget {usd!r}: expected dollars from 0 to {MAX_BUDGET_USD:g}")
        setattr(self.settings.budget, f"{scope}_usd", float(usd))
        raised = dict(self.store.kv_get(_BUDGET_KV, {}) or {})
        raised[scope] = float(usd)
        self.store.kv_set(_BUDGET_KV, raised)
        self.bus.publish(ev.Notice(level="info", message=f"{scope} budget raised to ${usd:.2f}"))
        if self.pipeline:
            self.pipeline.budget_stopped = False
            for idea_id, outcome in list(self.pipeline.outcomes.items()):
                if outcome.state == "budget":
                    self.pipeline.wake(idea_id)
            if self.pipeline.ideation_error and self.pipeline._ideation_remaining() > 0:
                self.pipeline.ideation_error = None
                self.pipeline.request_ideas(0)

    def literature_decision(self, idea_id: int, decision: str) -> None:
        self._writable()
        self._idea(idea_id)
        try:
            self._need_pipeline().literature_decision(idea_id, decision)
        except ValueError as exc:
            raise EngineError(str(exc)) from None

    # -- queries --------------------------------------------------------------------------
    def snapshot(self) -> LabSnapshot:
        ideation = self.pipeline is not None and self.pipeline._ideation is not None \
            and not self.pipeline._ideation.done()
        return build_snapshot(self.store, budget_lab_usd=self.settings.budget.lab_usd,
                              budget_idea_usd=self.settings.budget.idea_usd,
                              ideation_active=ideation)

    def processes(self) -> list[ProcessStats]:
        """ProcessStats of every running experiment / plot / compile / check."""
        ex = self._current_executor()
        return list(ex.running()) if ex is not None else []

    @property
    def outcomes(self) -> dict[int, IdeaOutcome]:
        return dict(self.pipeline.outcomes) if self.pipeline else {}

    @property
    def budget_stopped(self) -> bool:
        return bool(self.pipeline and self.pipeline.budget_stopped)
