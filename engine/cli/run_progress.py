"""Headless progress for ``aisci run``: a live table on a terminal, plain lines otherwise.

On a tty the table (per idea: stage, state, runs, cost; plus the lab's spend) is redrawn
with rich at most ``MAX_REDRAWS_PER_S`` times per second, only when events arrived. When
output is not a tty (CI, pipes, log files) every stage transition, run result and notice
is printed as one timestamped line instead. Reads the engine's bus; never blocks it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO, Any

from aisci.engine import events as ev
from aisci.engine.snapshot import LabSnapshot
from rich.console import Console
from rich.live import Live
from rich.table import Table

MAX_REDRAWS_PER_S = 4

_LINE_EVENTS = (ev.IdeaAdded, ev.StageStarted, ev.StageFinished, ev.StageFailed,
                ev.StagePaused, ev.RunStarted, ev.RunFinished, ev.RunControl,
                ev.BudgetReached, ev.Notice, ev.IdeaChanged, ev.LLMRetry)


def _idea_label(snap: LabSnapshot | None, idea_id: int | None) -> str:
    if idea_id is None:
        return "lab"
    idea = snap.idea(idea_id) if snap else None
    return f"idea {idea_id}" + (f" {idea.name}" if idea else "")


def format_event(event: ev.Event, snap: LabSnapshot | None = None) -> str | None:
    """One log line for an event, or None for events not worth a line."""
    who = _idea_label(snap, getattr(event, "idea_id", None))
    if isinstance(event, ev.IdeaAdded):
        return f"idea {event.idea_id} {event.name}: added: {event.title}"
    if isinstance(event, ev.StageStarted):
        return f"{who}: {event.stage} started"
    if isinstance(event, ev.StageFinished):
        return f"{who}: {event.stage} done" + (f" ({event.summary})" if event.summary else "")
    if isinstance(event, ev.StageFailed):
        return f"{who}: {event.stage} FAILED: {event.reason}"
    if isinstance(event, ev.StagePaused):
        return f"{who}: {event.stage} paused: {event.reason}"
    if isinstance(event, ev.RunStarted):
        return (f"{who}: {event.run} attempt {event.attempt} started (pid {event.pid}, "
                f"limit {event.limit_s:.0f} s, isolation {event.isolation})")
    if isinstance(event, ev.RunFinished):
        extra = f": {event.reason}" if event.reason else ""
        return (f"{who}: {event.run} attempt {event.attempt} {event.status} "
                f"in {event.duration_s:.1f} s{extra}")
    if isinstance(event, ev.RunControl):
        return f"{who}: {event.run} {event.action} {event.detail}".rstrip()
    if isinstance(event, ev.BudgetReached):
        return (f"{who}: {event.scope} budget reached: ${event.spent_usd:.4f} of "
                f"${event.budget_usd:.2f}")
    if isinstance(event, ev.Notice):
        return f"{event.level}: {event.message}"
    if isinstance(event, ev.LLMRetry):
        # A wait before the model is asked again: "anthropic:M rate-limited, try 2/6,
        # next in 120 s (idea 3, experiment): ...".
        return event.summary
    if isinstance(event, ev.IdeaChanged):
        return f"{who}: {event.status}" + (f" ({event.detail})" if event.detail else "")
    return None


def render_table(snap: LabSnapshot) -> Table:
    """The live table (a rich renderable)."""
    title = f"aisci {snap.lab.name}: ${snap.cost_usd:.4f}"
    if snap.budget_lab_usd is not None:
        title += f" of ${snap.budget_lab_usd:.2f}"
    if snap.ideation_active:
        title += "  (generating ideas...)"
    table = Table(title=title, expand=False)
    for col in ("id", "idea", "triage", "stage", "state", "runs", "cost", "time"):
        table.add_column(col, no_wrap=col != "idea", min_width=12 if col == "idea" else None)
    for idea in snap.ideas:
        if idea.origin == "seed" and not idea.stages:
            continue
        runs = {r.run for r in idea.runs if r.kind == "experiment"}
        ok = {r.run for r in idea.runs if r.kind == "experiment" and r.status == "ok"}
        running = [r for r in idea.runs if r.status == "running"]
        run_txt = f"{len(ok)}/{len(runs)}" + (f" ({running[0].run})" if running else "")
        table.add_row(str(idea.id), idea.name[:32], idea.status, idea.stage_label,
                      idea.state_text(40), run_txt,
                      f"${idea.cost_usd:.4f}", f"{idea.elapsed_s():.0f}s")
    return table


class ProgressDisplay:
    """Subscribes to the engine's events and shows progress until cancelled."""

    def __init__(self, engine: Any, stream: IO[str] | None = None,
                 tty: bool | None = None) -> None:
        self.engine = engine
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.sub = engine.bus.subscribe(maxsize=5000, kinds=None if self.tty else _LINE_EVENTS)
        self._live: Any = None

    async def run(self) -> None:
        if self.tty:
            await self._run_live()
        else:
            await self._run_lines()

    async def _run_lines(self) -> None:
        snap = self.engine.snapshot()
        async for event in self.sub:
            if isinstance(event, ev.IdeaAdded | ev.StageStarted):
                snap = self.engine.snapshot()  # names of new ideas
            line = format_event(event, snap)
            if line:
                stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
                print(f"{stamp} {line}", file=self.stream, flush=True)

    async def _run_live(self) -> None:
        console = Console(file=self.stream)
        self._live = Live(render_table(self.engine.snapshot()), console=console,
                          refresh_per_second=MAX_REDRAWS_PER_S, transient=False)
        self._live.start()
        period = 1.0 / MAX_REDRAWS_PER_S
        while True:
            await self.sub.get()
            self.sub.drain()  # coalesce bursts: one redraw covers them all
            self._live.update(render_table(self.engine.snapshot()))
            await asyncio.sleep(period)

    def close(self) -> None:
        self.sub.close()
        if self._live is not None:
            try:
                self._live.update(render_table(self.engine.snapshot()))
            except Exception:  # the store may already be closed; the last frame stays
                pass
            self._live.stop()
            self._live = None
