"""The per-idea stage machine: ideate -> novelty -> approval -> experiment -> plot ->
write -> integrity -> review -> (improve), for many ideas at once.

Every idea gets one asyncio task (its *runner*) that walks the stages in order, skipping
those the store says are ``done`` or ``skipped``; each stage's state is written to the
store before and after it runs, so a new engine started after a crash (or ``kill -9``)
continues every idea at its first unfinished stage — the stage functions themselves
skip the work they already finished. LLM-bound stages share ``scheduler.max_llm_tasks``
permits, handed out first to the work that brings ideas to the GPUs (novelty checks,
then ideation), then to the stages after the runs; experiment and plot stages take
GPU/CPU slots from the Scheduler inside the stage, so the accelerators stay busy while
other ideas think, write or review.

Ideation is a stream, not a barrier: ideas are drafted one at a time, and each idea's
runner starts the moment it is stored, so the first approved idea's experiments run
while later ideas are still being drafted and checked.

Human commands (approve, veto, pause, retry, skip, raise budget, literature decision)
only change persisted state and wake the idea's runner; they take effect at the runner's
next safe point (between stages, or at a stage that is waiting for a decision).

Stage functions are injectable (``stages=`` a dict name -> async callable, for tests
and benchmarks); by default they are the registry's (:mod:`aisci.engine.stages.registry`),
which also gives the stage order, how each stage is scheduled and which are optional.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine import events as ev
from aisci.engine.errors import user_message
from aisci.engine.lab.templates import find_template
from aisci.engine.literature import LiteratureUnavailable
from aisci.engine.llm.client import BudgetExceeded
from aisci.engine.stages import approval
from aisci.engine.stages.baseline import ensure_baseline
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.contract import FINISHED, StageKind, StageOutcome, StageState
from aisci.engine.stages.ideate import generate_ideas
from aisci.engine.stages.registry import STAGE_NAMES, STAGES, StageFn, StageSpec, spec

log = logging.getLogger(__name__)

MAX_AUTO_RETRIES = 3
"""A failed stage is retried on a new engine start at most this many attempts in total;
after that only a human ``retry_stage`` runs it again."""

MAX_IDEATION_CALLS = 10_000
"""Upper bound on ideation calls (one idea each) of one ideation task; the persisted
target ends it long before."""
MAX_EMPTY_IDEATION_CALLS = 2
"""Ideation calls in a row that add no idea (each one several attempts: duplicates,
malformed drafts) after which the batch ends short of its target."""

MAX_SLOT_STAGES = 64
"""Upper bound on ideas in their experiment or plot stage at once that the number of
slots alone can ask for (``scheduler.max_llm_tasks`` may set a higher one)."""

IdeateFn = Callable[[StageContext, str, int], Awaitable[list[int]]]
"""The lab-level ideation job: ``(ctx, template, n) -> new idea ids``."""
BaselineFn = Callable[[StageContext, str], Awaitable[object]]
"""The lab-level baseline job: ``(ctx, template)``, the template's run_0 shared by every
idea."""
LAB_JOBS = ("ideate", "baseline")
"""Keys of ``stages=`` that are lab-level jobs, not per-idea stages."""


async def _baseline(ctx: StageContext, template: str) -> Path:
    return await ensure_baseline(ctx, find_template(template, ctx.lab),
                                 ctx.settings.general.smoke)


# -- LLM permits ------------------------------------------------------------------------

FEEDS_GPU, IDEATION, AFTER_GPU = 0, 1, 2
"""LLM permit priorities (lower first): a stage before the first slot stage (novelty)
brings an idea to the GPUs soonest, ideation feeds later ideas, and the stages after
the runs (write, integrity, review, improve) can wait without idling a GPU."""


class _PriorityPermits:
    """At most ``n`` holders; waiters are served by priority, then in arrival order."""

    def __init__(self, n: int) -> None:
        self._free = n
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @contextlib.asynccontextmanager
    async def hold(self, priority: int) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self._free > 0 and not self._queue:
            self._free -= 1
            return
        entry = (priority, next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(self._queue, entry)
        try:
            await entry[2]
        except asyncio.CancelledError:
            if entry[2].done() and not entry[2].cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            else:
                self._queue.remove(entry)
                heapq.heapify(self._queue)
            raise

    def _release(self) -> None:
        while self._queue:
            _, _, future = heapq.heappop(self._queue)
            if not future.done():
                future.set_result(None)  # the permit passes straight to the waiter
                return
        self._free += 1


def _llm_priority(stage: StageSpec) -> int:
    first_slot = next((i for i, s in enumerate(STAGES) if s.kind is StageKind.SLOT),
                      len(STAGES))
    return FEEDS_GPU if STAGES.index(stage) < first_slot else AFTER_GPU


# -- options and outcomes ---------------------------------------------------------------

@dataclass
class PipelineOptions:
    """How a batch runs. Persisted in the store (kv ``pipeline.options``) so ``aisci
    resume`` continues with the same choices."""

    template: str = "grokking"
    skip_idea_generation: bool = False
    skip_novelty: bool = False
    improvement: bool = False
    auto_approve: bool | None = None
    """None: ``general.auto_approve`` from the settings."""
    include_seeds: bool = False
    """Also run the template's seed ideas (default when idea generation is skipped)."""
    prefetch_baseline: bool = False
    """Run the template's baseline (run_0) at batch start, while ideas are still being
    generated and checked, instead of on the first idea's critical path."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class IdeaOutcome:
    """Why an idea's runner stopped: done | failed | vetoed | waiting | paused | budget |
    literature | stopped."""

    state: str
    stage: str = ""
    reason: str = ""


@dataclass
class _IdeaControl:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    literature: str | None = None
    """Pending literature decision: skip | retry."""
    current_stage: str | None = None
    stage_task: asyncio.Task[Any] | None = None
    skip_current: bool = False


class Pipeline:
    """Runs the stage machine for every eligible idea of a lab."""

    def __init__(self, ctx: StageContext, *,
                 stages: Mapping[str, Callable[..., Any]] | None = None,
                 headless: bool = True, options: PipelineOptions | None = None) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.bus = ctx.bus
        override = dict(stages or {})
        runnable = {s.name for s in STAGES if s.run is not None}
        unknown = sorted(set(override) - runnable - set(LAB_JOBS))
        if unknown:
            raise ValueError(f"stages=: no stage function or lab job called "
                             f"{', '.join(unknown)}; expected {', '.join(sorted(runnable))} "
                             f"or {', '.join(LAB_JOBS)}")
        self.ideate: IdeateFn = override.pop("ideate", generate_ideas)
        self.baseline: BaselineFn = override.pop("baseline", _baseline)
        self.stage_fns: dict[str, StageFn] = {
            s.name: s.run for s in STAGES if s.run is not None}
        self.stage_fns.update(override)
        self.headless = headless
        self.options = options or PipelineOptions(template=ctx.settings.general.template)
        n = ctx.settings.scheduler.max_llm_tasks
        self._llm_permits = _PriorityPermits(n)
        # Experiment/plot stages mostly wait for slots; bound them separately so they
        # cannot starve the writing and reviewing of ideas that are further along. An
        # idea in its experiment stage holds a slot only between its LLM edits (half the
        # time when an edit takes as long as a run), and ideas planning or plotting hold
        # a permit without a slot, so it takes about four such ideas per slot (plus one)
        # to keep every slot busy (two per slot left 6% of a 50-idea batch idle). Later
        # stages go first: an idea done with its runs plots at once instead of waiting
        # for the runs of ideas that entered after it (its paper would wait for all of
        # them, and a batch's papers would pile up at its end).
        slots = len(getattr(ctx.scheduler, "slots", None) or ())
        self._slot_stage_permits = _PriorityPermits(
            max(n, 2, min(4 * slots + 1, MAX_SLOT_STAGES)))
        self._runners: dict[int, asyncio.Task[None]] = {}
        self._waiting_human: set[int] = set()
        self._idle_changed = asyncio.Event()
        self._notices_said: set[str] = set()
        """Stage notices already published by this engine (each is said once)."""
        self._controls: dict[int, _IdeaControl] = {}
        self._ideation: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._baseline: asyncio.Task[None] | None = None
        self.outcomes: dict[int, IdeaOutcome] = {}
        self.ideation_error: str | None = None
        self.budget_stopped = False
        self._started = False

    # -- life cycle ---------------------------------------------------------------------
    @property
    def auto_approve(self) -> bool:
        if self.options.auto_approve is not None:
            return self.options.auto_approve
        return self.ctx.settings.general.auto_approve

    async def start(self) -> None:
        """Persist the options, resume ideation if a batch is unfinished, start a runner
        for every eligible idea, and watch for new ones."""
        self._started = True
        self.store.kv_set("pipeline.options", self.options.to_dict())
        sub = self.bus.subscribe(maxsize=1000, kinds=(ev.IdeaAdded,))
        self._watcher = asyncio.create_task(self._watch_new_ideas(sub), name="idea-watcher")
        if not self.options.skip_idea_generation and self._ideation_remaining() > 0:
            self._start_ideation()
        if self.options.prefetch_baseline:
            self._baseline = asyncio.create_task(self._prefetch_baseline(), name="baseline")
        self.spawn_eligible()

    async def _prefetch_baseline(self) -> None:
        # Best effort: a failure here is reported again, with its log, by the first
        # idea's experiment stage, which needs the baseline anyway.
        try:
            await self.baseline(self.ctx, self.options.template)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported as a notice; the experiment stage retries
            self.bus.publish(ev.Notice(level="warning", message=(
                f"baseline of {self.options.template} not ready: {user_message(exc)}")))

    async def stop(self) -> None:
        tasks = [t for t in (self._ideation, self._watcher, self._baseline,
                             *self._runners.values()) if t]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._runners.clear()

    def busy(self) -> bool:
        return (self._ideation is not None and not self._ideation.done()) or any(
            not t.done() for t in self._runners.values())

    async def wait_idle(self) -> None:
        """Until no idea is running and no ideation batch is in progress (ideas waiting
        for a human decision count as idle)."""
        while True:
            self._idle_changed.clear()
            tasks = [t for i, t in self._runners.items()
                     if not t.done() and i not in self._waiting_human]
            if self._ideation is not None and not self._ideation.done():
                tasks.append(self._ideation)
            if not tasks:
                return
            changed = asyncio.create_task(self._idle_changed.wait())
            try:
                await asyncio.wait([*tasks, changed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()

    # -- ideation -------------------------------------------------------------------------
    def _generated_count(self) -> int:
        return sum(1 for i in self.store.list_ideas()
                   if i.origin == "generated" and i.template == self.options.template)

    def _ideation_target(self) -> int:
        """The persisted batch target (a value that is not a whole number, from an older
        engine or a damaged row, counts as none)."""
        value = self.store.kv_get(f"pipeline.ideation_target.{self.options.template}", 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value):
            return 0
        return max(0, int(value))

    def _ideation_remaining(self) -> int:
        return max(0, self._ideation_target() - self._generated_count())

    def request_ideas(self, n: int) -> None:
        """Ask for ``n`` more ideas; the target is persisted so a crash resumes the batch."""
        key = f"pipeline.ideation_target.{self.options.template}"
        base = max(self._ideation_target(), self._generated_count())
        self.store.kv_set(key, base + max(0, n))
        if self._started and (self._ideation is None or self._ideation.done()):
            self._start_ideation()

    def ensure_ideas(self, total: int) -> None:
        """Make the batch target at least ``total`` generated ideas for the template
        (idempotent: running the same batch command again adds nothing)."""
        key = f"pipeline.ideation_target.{self.options.template}"
        if total > self._ideation_target():
            self.store.kv_set(key, total)
        if (self._started and self._ideation_remaining() > 0
                and (self._ideation is None or self._ideation.done())):
            self._start_ideation()

    def _start_ideation(self) -> None:
        self._ideation = asyncio.create_task(self._run_ideation(), name="ideation")

    async def _run_ideation(self) -> None:
        # A stream, not a barrier: one idea per call, each under its own LLM permit, so
        # the first idea is checked and its experiments start while the next ones are
        # drafted, and ideation never holds an LLM slot for the whole batch. Each idea
        # is stored (and its runner spawned) the moment it is final; the persisted
        # attempt counter keeps the order (and the scripted keys) of a one-call batch.
        # Bounded: the ideate job bounds its attempts per idea, and a run of
        # MAX_EMPTY_IDEATION_CALLS calls that add nothing ends the batch.
        if self._ideation_remaining() <= 0:
            return
        self.bus.publish(ev.StageStarted(idea_id=None, stage="ideate"))
        empty = 0
        for _ in range(MAX_IDEATION_CALLS):
            if self._ideation_remaining() <= 0:
                break
            before = self._generated_count()
            try:
                async with self._llm_permits.hold(IDEATION):
                    await self.ideate(self.ctx, self.options.template, 1)
            except asyncio.CancelledError:
                raise
            except BudgetExceeded as exc:
                self.ideation_error = user_message(exc)
                self.budget_stopped = self.headless
                self.bus.publish(ev.StagePaused(idea_id=None, stage="ideate",
                                                reason=f"budget: {exc}"))
                return
            except Exception as exc:  # reported; the batch goes on
                log.debug("ideation failed", exc_info=True)
                self.ideation_error = user_message(exc)
                self.bus.publish(ev.StageFailed(idea_id=None, stage="ideate",
                                                reason=self.ideation_error))
                return
            finally:
                self.spawn_eligible()
            empty = empty + 1 if self._generated_count() == before else 0
            if empty >= MAX_EMPTY_IDEATION_CALLS:
                break  # the model keeps repeating itself (or the job makes nothing)
        self.bus.publish(ev.StageFinished(
            idea_id=None, stage="ideate",
            summary=f"{self._generated_count()} generated idea(s)"))

    async def _watch_new_ideas(self, sub: ev.Subscription) -> None:
        try:
            async for _event in sub:
                self.spawn_eligible()
        finally:
            sub.close()

    # -- runners --------------------------------------------------------------------------
    def eligible(self, idea_id: int) -> bool:
        idea = self.store.get_idea(idea_id)
        if idea is None or idea.status == "vetoed":
            return False
        if idea.origin == "seed" and not (self.options.include_seeds
                                          or self.options.skip_idea_generation
                                          or idea.status == "approved"):
            return False  # a seed runs when the batch includes seeds or a human approved it
        states = self.store.stages(idea_id)
        return not all(states.get(s, {}).get("state") in FINISHED for s in STAGE_NAMES)

    def spawn_eligible(self) -> None:
        for idea in self.store.list_ideas():
            task = self._runners.get(idea.id)
            if (task is None or task.done()) and idea.id not in self.outcomes \
                    and self.eligible(idea.id):
                self._spawn(idea.id)

    def _spawn(self, idea_id: int) -> None:
        self.outcomes.pop(idea_id, None)
        self._controls.setdefault(idea_id, _IdeaControl())
        self._runners[idea_id] = asyncio.create_task(self._run_idea(idea_id),
                                                     name=f"idea-{idea_id}")

    def control(self, idea_id: int) -> _IdeaControl:
        return self._controls.setdefault(idea_id, _IdeaControl())

    def wake(self, idea_id: int) -> None:
        """Nudge an idea's runner (a command changed its state); restart it if stopped."""
        self.control(idea_id).wake.set()
        self._waiting_human.discard(idea_id)  # busy again from now on, for wait_idle
        self._idle_changed.set()
        task = self._runners.get(idea_id)
        if self._started and (task is None or task.done()) and self.eligible(idea_id):
            self._spawn(idea_id)

    def running(self, idea_id: int) -> bool:
        """Whether the idea has a live runner (its stages are being worked through)."""
        task = self._runners.get(idea_id)
        return task is not None and not task.done()

    def current_stage(self, idea_id: int) -> str | None:
        return self.control(idea_id).current_stage

    async def _wait(self, idea_id: int) -> None:
        """Wait for a human command about this idea (interactive mode only); the idea
        counts as idle meanwhile."""
        c = self.control(idea_id)
        self._waiting_human.add(idea_id)
        self._idle_changed.set()
        try:
            await c.wake.wait()
        finally:
            self._waiting_human.discard(idea_id)
            self._idle_changed.set()
        c.wake.clear()

    def paused(self, idea_id: int) -> bool:
        return idea_id in set(self.store.kv_get("pipeline.paused_ideas", []))

    def set_paused(self, idea_id: int, paused: bool) -> None:
        ids = set(self.store.kv_get("pipeline.paused_ideas", []))
        ids = ids | {idea_id} if paused else ids - {idea_id}
        self.store.kv_set("pipeline.paused_ideas", sorted(ids))

    def _next_stage(self, idea_id: int) -> StageSpec | None:
        states = self.store.stages(idea_id)
        for stage in STAGES:
            if states.get(stage.name, {}).get("state") not in FINISHED:
                return stage
        return None

    async def _run_idea(self, idea_id: int) -> None:
        c = self.control(idea_id)
        c.wake.clear()
        try:
            while True:
                stage = self._next_stage(idea_id)
                idea = self.store.get_idea(idea_id)
                if idea is None:
                    return
                if stage is None:
                    self.outcomes[idea_id] = IdeaOutcome("done")
                    return
                if idea.status == "vetoed":
                    self.outcomes[idea_id] = IdeaOutcome("vetoed", stage.name)
                    return
                if self.paused(idea_id):
                    self.outcomes[idea_id] = IdeaOutcome("paused", stage.name,
                                                         "paused by a human")
                    if self.headless:
                        return
                    await self._wait(idea_id)
                    self.outcomes.pop(idea_id, None)
                    continue
                state = self.store.stages(idea_id).get(stage.name, {})
                if state.get("state") == StageState.FAILED \
                        and state.get("attempts", 0) >= MAX_AUTO_RETRIES:
                    self.outcomes[idea_id] = IdeaOutcome(
                        "failed", stage.name, state.get("detail", {}).get("reason", ""))
                    return
                outcome = await self._run_stage(idea_id, stage)
                if outcome is not None:
                    self.outcomes[idea_id] = outcome
                    if self.headless or outcome.state in ("failed", "done", "vetoed"):
                        return
                    # Interactive: wait for a human command, then look again.
                    await self._wait(idea_id)
                    self.outcomes.pop(idea_id, None)
        finally:
            c.current_stage = None

    # -- one stage ------------------------------------------------------------------------
    def _set(self, idea_id: int, stage: str, state: StageState, **detail: Any) -> None:
        # The detail always replaces the previous one: a stage running again must not
        # keep the reason it was paused or failed for.
        self.store.set_stage(idea_id, stage, state, detail)

    def _switched_off(self, stage: StageSpec) -> str | None:
        """Why an optional stage does not run in this batch, or None."""
        if not stage.optional:
            return None
        if stage.name == "novelty" and (self.options.skip_novelty
                                        or not self.ctx.settings.novelty.enabled):
            return "novelty check skipped"
        if stage.name == "improve" and not (self.options.improvement
                                            or self.ctx.settings.review.improve):
            return "improvement not requested"
        return None

    async def _run_stage(self, idea_id: int, stage: StageSpec) -> IdeaOutcome | None:
        """Run (or decide) one stage. None = go on to the next stage; an IdeaOutcome =
        the runner stops here (headless) or waits for a human (interactive)."""
        if stage.kind is StageKind.RECORD:
            idea = self.ctx.idea(idea_id)
            self._set(idea_id, stage.name, StageState.DONE, origin=idea.origin)
            return None
        if stage.kind is StageKind.DECISION:
            return await self._approval(idea_id)
        off = self._switched_off(stage)
        if off is not None:
            self._set(idea_id, stage.name, StageState.SKIPPED, reason=off)
            return None
        return await self._call_stage(idea_id, stage, self.stage_fns[stage.name])

    async def _call_stage(self, idea_id: int, stage: StageSpec, fn: StageFn) -> IdeaOutcome | None:
        name = stage.name
        c = self.control(idea_id)
        permit = (self._llm_permits.hold(_llm_priority(stage)) if stage.kind is StageKind.LLM
                  else self._slot_stage_permits.hold(-STAGES.index(stage)))
        async with permit:
            c.current_stage = name
            c.skip_current = False
            self._set(idea_id, name, StageState.RUNNING)
            self.bus.publish(ev.StageStarted(idea_id=idea_id, stage=name))
            c.stage_task = asyncio.create_task(fn(self.ctx, idea_id),
                                               name=f"idea-{idea_id}-{name}")
            try:
                result = await asyncio.shield(c.stage_task)
            except asyncio.CancelledError:
                if c.skip_current:
                    self._set(idea_id, name, StageState.SKIPPED, reason="skipped by a human")
                    self.bus.publish(ev.StageFinished(idea_id=idea_id, stage=name,
                                                      summary="skipped by a human"))
                    return None
                # The engine is stopping: leave the stage resumable, not failed.
                c.stage_task.cancel()
                with contextlib.suppress(BaseException):
                    await c.stage_task
                self._set(idea_id, name, StageState.PAUSED, reason="interrupted: engine stopped")
                raise
            except BudgetExceeded as exc:
                reason = f"budget: {exc}"
                self._set(idea_id, name, StageState.PAUSED, reason=reason, budget=exc.scope)
                self.bus.publish(ev.StagePaused(idea_id=idea_id, stage=name, reason=reason))
                if self.headless:
                    self.budget_stopped = True
                return IdeaOutcome("budget", name, reason)
            except Exception as exc:  # every failure becomes a stage state
                if name == "novelty" and isinstance(exc, LiteratureUnavailable):
                    return await self._literature_unavailable(idea_id, exc)
                log.debug("idea %s stage %s failed", idea_id, name, exc_info=True)
                return self._failed(idea_id, name, user_message(exc))
            finally:
                c.current_stage = None
                c.stage_task = None
        if not isinstance(result, StageOutcome):
            return self._failed(idea_id, name, f"the {name} stage returned "
                                f"{type(result).__name__}, not a StageOutcome")
        if not result.ok:
            return self._failed(idea_id, name, result.reason or result.summary
                                or f"{type(result).__name__} reports failure")
        summary = result.summary[:200]
        if result.notice:
            self._set(idea_id, name, StageState.DONE, summary=summary, notice=result.notice)
        else:
            self._set(idea_id, name, StageState.DONE, summary=summary)
        self.bus.publish(ev.StageFinished(idea_id=idea_id, stage=name, summary=summary))
        if result.notice and result.notice not in self._notices_said:
            self._notices_said.add(result.notice)
            self.bus.publish(ev.Notice(level="warning", message=result.notice,
                                       idea_id=idea_id))
        return None

    def _failed(self, idea_id: int, stage: str, reason: str) -> IdeaOutcome:
        self._set(idea_id, stage, StageState.FAILED, reason=reason)
        self.bus.publish(ev.StageFailed(idea_id=idea_id, stage=stage, reason=reason))
        return IdeaOutcome("failed", stage, reason)

    def skip_running(self, idea_id: int, stage: str) -> bool:
        """Cancel the stage if it is running now; it is then marked skipped."""
        c = self.control(idea_id)
        if c.current_stage == stage and c.stage_task is not None and not c.stage_task.done():
            c.skip_current = True
            # The runner awaits it through a shield: it sees the cancellation, marks the
            # stage skipped and goes on with the next one.
            c.stage_task.cancel()
            return True
        return False

    async def _literature_unavailable(self, idea_id: int, exc: BaseException) -> IdeaOutcome | None:
        reason = "literature unavailable"
        self._set(idea_id, "novelty", StageState.PAUSED, reason=reason,
                  detail=user_message(exc))
        self.bus.publish(ev.StagePaused(idea_id=idea_id, stage="novelty", reason=reason))
        if self.headless:
            msg = (f"idea {idea_id}: {reason} ({user_message(exc)}); rerun with "
                   "--skip-novelty-check or `aisci resume` when the network is back")
            self.bus.publish(ev.Notice(level="warning", message=msg, idea_id=idea_id))
            return IdeaOutcome("literature", "novelty", reason)
        c = self.control(idea_id)
        while c.literature is None:
            await self._wait(idea_id)
        decision, c.literature = c.literature, None
        if decision == "skip":
            self._set(idea_id, "novelty", StageState.SKIPPED,
                      reason="skipped: literature unavailable")
        return None

    async def _approval(self, idea_id: int) -> IdeaOutcome | None:
        idea = self.ctx.idea(idea_id)
        if idea.status == "approved":
            self._set(idea_id, "approval", StageState.DONE, decision="approved")
            return None
        if idea.status == "vetoed":
            self._set(idea_id, "approval", StageState.DONE, decision="vetoed")
            return IdeaOutcome("vetoed", "approval")
        if self.auto_approve:
            if approval.auto_approve_decision(self.ctx.settings, idea):
                approval.approve(self.store, self.bus, idea_id, source="auto")
                self._set(idea_id, "approval", StageState.DONE, decision="approved",
                          source="auto")
                self.bus.publish(ev.StageFinished(idea_id=idea_id, stage="approval",
                                                  summary="auto-approved"))
                return None
            reason = "auto: the novelty check found it not novel"
            approval.veto(self.store, self.bus, idea_id, reason, source="auto")
            self._set(idea_id, "approval", StageState.DONE, decision="vetoed", source="auto",
                      reason=reason)
            return IdeaOutcome("vetoed", "approval", reason)
        self._set(idea_id, "approval", StageState.WAITING,
                  reason="waiting for a human decision")
        self.bus.publish(ev.StagePaused(idea_id=idea_id, stage="approval",
                                        reason="waiting for a human decision"))
        return IdeaOutcome("waiting", "approval", "waiting for a human decision")

    # -- commands (take effect at the runner's next safe point) ---------------------------
    def retry_stage(self, idea_id: int, stage: str) -> None:
        """Run ``stage`` again (and every later stage after it); decisions stand."""
        later = STAGES[STAGES.index(spec(stage)):]
        states = self.store.stages(idea_id)
        for s in later:
            if s.name in states and s.kind is not StageKind.DECISION:
                self._set(idea_id, s.name, StageState.PENDING, reason="retry requested")
        c = self.control(idea_id)
        if c.current_stage == "novelty" and stage == "novelty":
            c.literature = "retry"
        self.wake(idea_id)

    def skip_stage(self, idea_id: int, stage: str) -> None:
        if spec(stage).kind is StageKind.DECISION:
            raise ValueError(f"the {stage} stage cannot be skipped: approve or veto the idea")
        if self.skip_running(idea_id, stage):
            return
        c = self.control(idea_id)
        if stage == "novelty":
            c.literature = "skip"
        self._set(idea_id, stage, StageState.SKIPPED, reason="skipped by a human")
        self.wake(idea_id)

    def literature_decision(self, idea_id: int, decision: str) -> None:
        if decision not in ("skip", "retry"):
            raise ValueError(f"literature decision {decision!r}: expected skip or retry")
        c = self.control(idea_id)
        c.literature = decision
        if decision == "skip" and self.store.stages(idea_id).get("novelty", {}).get(
                "state") != StageState.RUNNING:
            self._set(idea_id, "novelty", StageState.SKIPPED,
                      reason="skipped: literature unavailable")
        self.wake(idea_id)
