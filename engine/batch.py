"""Headless batch runs: drive an Engine until every idea is finished, failed or waiting
for a human, then turn the outcome into an exit code and a summary.

Used by ``aisci run`` / ``aisci resume`` and the offline demo. SIGINT / SIGTERM stop the
engine cleanly (state saved; running attempts become ``interrupted``) with exit 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.engine import Engine
from aisci.engine.errors import EXIT_BUDGET, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from aisci.engine.llm.client import ProviderFactory
from aisci.engine.pipeline import IdeaOutcome, PipelineOptions
from aisci.engine.snapshot import LabSnapshot
from aisci.engine.stages import ideate

Display = Callable[[Engine], Any]
"""Called once the engine started; returns an object with async ``run()`` (until
cancelled) and ``close()``, or None."""


class NothingToRun(UsageError):
    """Idea generation is skipped, and neither the lab nor the template has an idea."""


@dataclass
class BatchResult:
    exit_code: int
    outcomes: dict[int, IdeaOutcome]
    snapshot: LabSnapshot
    budget_stopped: bool = False
    interrupted: bool = False
    ideation_error: str | None = None
    notes: list[str] = field(default_factory=list)


def exit_code_for(outcomes: dict[int, IdeaOutcome], *, budget: bool, interrupted: bool,
                  ideation_error: str | None) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if budget or any(o.state == "budget" for o in outcomes.values()):
        return EXIT_BUDGET
    if ideation_error or any(o.state in ("failed", "literature") for o in outcomes.values()):
        return EXIT_FAILED
    return EXIT_OK


async def run_batch(lab: Path, settings: Settings, options: PipelineOptions, *,
                    num_ideas: int = 0, provider_factory: ProviderFactory | None = None,
                    display: Display | None = None,
                    stages: dict[str, Any] | None = None) -> BatchResult:
    """Run the lab headless. ``num_ideas`` is the number of generated ideas the lab should
    have for the template (a total, so re-running the same command never adds more)."""
    engine = Engine(lab, settings, headless=True, provider_factory=provider_factory,
                    options=options, stages=stages)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, engine.request_stop, f"signal {sig.name}")
            installed.append(sig)
    view = None
    view_task: asyncio.Task[Any] | None = None
    interrupted = False
    try:
        if num_ideas > 0 and not options.skip_idea_generation:
            engine.ensure_ideas(num_ideas)
        if display is not None:
            # Subscribed before start(), so what start() reports (e.g. what it recovered
            # from an interrupted run) is shown too.
            view = display(engine)
        await engine.start()
        if options.skip_idea_generation:
            add_seed_ideas(engine, options.template)
        if view is not None:
            view_task = asyncio.create_task(view.run(), name="progress")
        idle = asyncio.create_task(engine.wait_idle(), name="wait-idle")
        # a signal, or `aisci stop` from another shell (through the control socket)
        stopper = asyncio.create_task(engine.stop_requested.wait(), name="stop-request")
        done, _ = await asyncio.wait({idle, stopper}, return_when=asyncio.FIRST_COMPLETED)
        interrupted = stopper in done and not idle.done()
        for t in (idle, stopper):
            t.cancel()
        snapshot = engine.snapshot()
        outcomes = engine.outcomes
        pipeline = engine.pipeline
        ideation_error = pipeline.ideation_error if pipeline else None
        budget = engine.budget_stopped
    finally:
        if view_task is not None:
            view_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await view_task
        if view is not None:
            view.close()
        for sig in installed:
            loop.remove_signal_handler(sig)
        await engine.stop()
    code = exit_code_for(outcomes, budget=budget, interrupted=interrupted,
                         ideation_error=ideation_error)
    return BatchResult(exit_code=code, outcomes=outcomes, snapshot=snapshot,
                       budget_stopped=budget, interrupted=interrupted,
                       ideation_error=ideation_error)


def add_seed_ideas(engine: Engine, template: str) -> list[int]:
    """A batch that skips idea generation runs the lab's ideas; a lab without any gets
    the template's seed ideas (added as the generating path adds them) and runs those.
    Raises NothingToRun when the template has none either."""
    if engine.ctx is None or engine.pipeline is None or engine.store.list_ideas():
        return []  # a viewer adds nothing; a lab with ideas runs those
    src = ideate.load_template_sources(template, engine.lab)
    added = ideate.ensure_seed_ideas(engine.ctx, src)
    if not added:
        raise NothingToRun(
            f"nothing to run in {engine.lab}: --skip-idea-generation on a lab with no "
            f"ideas, and template {src.name!r} has no (valid) seed ideas; generate ideas "
            "(drop --skip-idea-generation) or add some with `aisci ideas import`")
    engine.pipeline.spawn_eligible()  # now, so that the batch does not look idle
    return added


def summary_lines(result: BatchResult) -> list[str]:
    """A short human summary of a finished batch."""
    snap = result.snapshot
    lines = []
    for idea in snap.ideas:
        outcome = result.outcomes.get(idea.id)
        if outcome is None:
            continue
        ok_runs = sorted({r.run for r in idea.runs if r.kind == "experiment" and r.status == "ok"})
        where = f" at {outcome.stage}" if outcome.stage and outcome.state != "done" else ""
        why = f": {outcome.reason}" if outcome.reason else ""
        lines.append(f"  idea {idea.id} {idea.name}: {outcome.state}{where}{why}"
                     f" ({len(ok_runs)} run(s), ${idea.cost_usd:.4f})")
    lines.append(f"  cost: ${snap.cost_usd:.4f}"
                 + (f" of ${snap.budget_lab_usd:.2f} lab budget" if snap.budget_lab_usd else "")
                 + (f" (+{snap.unknown_cost_calls} call(s) of unknown price)"
                    if snap.unknown_cost_calls else ""))
    if result.ideation_error:
        lines.append(f"  ideation: {result.ideation_error}")
    waiting = [i for i, o in result.outcomes.items() if o.state == "waiting"]
    if waiting:
        lines.append(f"  waiting for approval: ideas {', '.join(map(str, waiting))} "
                     "(`aisci approve ID`, then `aisci resume`)")
    if result.budget_stopped:
        lines.append("  stopped: budget reached (raise it with --budget or [budget] in "
                     "aisci.toml, then `aisci resume`)")
    if result.interrupted:
        lines.append("  interrupted: state is saved; `aisci resume` continues")
    return lines
