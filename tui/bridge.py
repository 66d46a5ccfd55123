"""The one place where engine events become Textual messages.

The engine publishes frozen dataclass events on its :class:`EventBus` from any thread.
:class:`EngineBridge` drains one bounded subscription every ``flush_s`` (80 ms) and
posts at most one message of each kind per flush: output lines are merged per run,
process stats keep only the newest sample per run, LLM stream deltas are joined per
call. A run printing 100k lines/s therefore costs ~12 small messages per second, never
one message per line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from aisci.engine import events as ev
from textual.message import Message
from textual.message_pump import MessagePump

#: Lines of one run kept per flush; older ones are already in the log file.
MAX_LINES_PER_FLUSH = 200


@dataclass
class IdeasChanged(Message):
    """Ideas were added or changed status/stage; reload these rows."""

    idea_ids: frozenset[int]


@dataclass
class StageActivity(Message):
    """Stage lifecycle/progress events of one flush, in order."""

    events: tuple[ev.Event, ...]


@dataclass
class RunsChanged(Message):
    """Runs started/finished or were controlled (kill, extend, pause) for these ideas."""

    idea_ids: frozenset[int | None]
    events: tuple[ev.Event, ...]


@dataclass
class RunOutputBatch(Message):
    """New output per (idea_id, run), at most MAX_LINES_PER_FLUSH newest lines each."""

    lines: dict[tuple[int | None, str], tuple[str, ...]]
    total_lines: int


@dataclass
class ProcessStatsBatch(Message):
    """Newest stats per (idea_id, run), plus runs that went silent."""

    stats: tuple[ev.ProcessStats, ...]
    stalled: tuple[ev.RunStalled, ...] = ()


@dataclass
class LLMText(Message):
    """Streamed LLM text per call (joined deltas) and calls that started or finished."""

    chunks: tuple[tuple[ev.LLMStreamed, str], ...]
    calls: tuple[ev.Event, ...] = ()


@dataclass
class CostChanged(Message):
    event: ev.CostUpdated


@dataclass
class BudgetHit(Message):
    event: ev.BudgetReached


@dataclass
class EngineNotice(Message):
    """Notices and literature status changes, for notifications."""

    events: tuple[ev.Event, ...]


@dataclass
class BridgeStats:
    flushes: int = 0
    events: int = 0
    messages: int = 0
    dropped: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


_STAGE_EVENTS = (ev.StageStarted, ev.StageFinished, ev.StageFailed, ev.StagePaused,
                 ev.StageProgress)
_RUN_EVENTS = (ev.RunStarted, ev.RunFinished, ev.RunControl)


class EngineBridge:
    """Subscribe to ``bus`` and post batched messages to ``target`` until stopped."""

    def __init__(self, bus: ev.EventBus, target: MessagePump, *, flush_s: float = 0.08,
                 queue_size: int = 50_000) -> None:
        self.bus = bus
        self.target = target
        self.flush_s = flush_s
        self.sub = bus.subscribe(maxsize=queue_size)
        self.stats = BridgeStats()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.bus.bind_loop()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="engine-bridge")

    async def stop(self) -> None:
        self.sub.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while not self.sub.closed:
            await asyncio.sleep(self.flush_s)
            self.flush()

    def flush(self) -> int:
        """Drain the queue and post this batch's messages; returns messages posted."""
        batch = self.sub.drain()
        self.stats.dropped = self.sub.dropped
        if not batch:
            return 0
        self.stats.flushes += 1
        self.stats.events += len(batch)
        messages = self.translate(batch)
        for msg in messages:
            self.target.post_message(msg)
        self.stats.messages += len(messages)
        return len(messages)

    def translate(self, batch: list[ev.Event]) -> list[Message]:
        """Coalesce one batch of events into messages (pure; used by tests too)."""
        idea_ids: set[int] = set()
        stage: list[ev.Event] = []
        runs: list[ev.Event] = []
        run_ideas: set[int | None] = set()
        output: dict[tuple[int | None, str], deque[str]] = {}
        total_lines = 0
        stats: dict[tuple[int | None, str], ev.ProcessStats] = {}
        stalled: list[ev.RunStalled] = []
        streams: dict[str, tuple[ev.LLMStreamed, list[str]]] = {}
        calls: list[ev.Event] = []
        cost: ev.CostUpdated | None = None
        budget: ev.BudgetReached | None = None
        notices: list[ev.Event] = []
        for e in batch:
            self.stats.kinds[e.kind] = self.stats.kinds.get(e.kind, 0) + 1
            if isinstance(e, ev.RunOutput):
                buf = output.setdefault((e.idea_id, e.run), deque(maxlen=MAX_LINES_PER_FLUSH))
                buf.extend(e.lines)
                total_lines += len(e.lines)
            elif isinstance(e, ev.ProcessStats):
                stats[(e.idea_id, e.run)] = e
            elif isinstance(e, ev.LLMStreamed):
                first, parts = streams.setdefault(e.call_id, (e, []))
                parts.append(e.text)
            elif isinstance(e, ev.IdeaAdded | ev.IdeaChanged):
                idea_ids.add(e.idea_id)
            elif isinstance(e, _STAGE_EVENTS):
                stage.append(e)
                if e.idea_id is not None:
                    idea_ids.add(e.idea_id)
            elif isinstance(e, _RUN_EVENTS):
                runs.append(e)
                run_ideas.add(e.idea_id)
            elif isinstance(e, ev.RunStalled):
                stalled.append(e)
            elif isinstance(e, ev.LLMCallStarted | ev.LLMCallFinished | ev.LLMRetry):
                calls.append(e)
            elif isinstance(e, ev.CostUpdated):
                cost = e
            elif isinstance(e, ev.BudgetReached):
                budget = e
            elif isinstance(e, ev.Notice | ev.LiteratureStatus):
                notices.append(e)
        out: list[Message] = []
        if idea_ids:
            out.append(IdeasChanged(frozenset(idea_ids)))
        if stage:
            out.append(StageActivity(tuple(stage)))
        if runs:
            out.append(RunsChanged(frozenset(run_ideas), tuple(runs)))
        if output:
            out.append(RunOutputBatch({k: tuple(v) for k, v in output.items()}, total_lines))
        if stats or stalled:
            out.append(ProcessStatsBatch(tuple(stats.values()), tuple(stalled)))
        if streams or calls:
            out.append(LLMText(tuple((first, "".join(parts))
                                     for first, parts in streams.values()), tuple(calls)))
        if cost is not None:
            out.append(CostChanged(cost))
        if budget is not None:
            out.append(BudgetHit(budget))
        if notices:
            out.append(EngineNotice(tuple(notices)))
        return out
