"""The one place where engine events become Textual messages.

The engine publishes frozen dataclass events on its :class:`EventBus` from any thread.
:class:`EngineBridge` drains one bounded subscription every ``flush_s`` (80 ms) and
posts at most one message of each kind per flush: output lines are merged per run,
process stats keep only the newest sample per run, LLM stream deltas are joined per
call. A run printing 100k lines/s therefore costs ~12 small messages per second, never
one message per line. Run starts, ends and controls (rare) are one message each, in
order. Events are classified here only: the screen and the App route by message type.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from aisci.engine import events as ev
from textual.message import Message
from textual.message_pump import MessagePump
from textual.notifications import SeverityLevel

#: Lines of one run kept per flush; older ones are already in the log file.
MAX_LINES_PER_FLUSH = 200
#: (idea, stage) failures remembered to toast each occurrence once.
MAX_REMEMBERED_FAILURES = 10_000


@dataclass
class IdeasChanged(Message):
    """Ideas were added or changed status/stage; reload these rows."""

    idea_ids: frozenset[int]


@dataclass(frozen=True)
class StageLine:
    """One stage event as the activity pane shows it."""

    idea_id: int | None
    stage: str
    state: str
    """started | done | failed | paused | progress"""
    text: str = ""
    """The summary, reason or progress message."""


@dataclass
class StageActivity(Message):
    """Stage lifecycle/progress of one flush, in order."""

    lines: tuple[StageLine, ...]


@dataclass
class OutputsChanged(Message):
    """A stage that writes figures, the paper or the review finished for these ideas."""

    idea_ids: frozenset[int]


@dataclass
class RunStarted(Message):
    event: ev.RunStarted


@dataclass
class RunEnded(Message):
    event: ev.RunFinished


@dataclass
class RunControlled(Message):
    """A run was killed, extended, paused or resumed."""

    event: ev.RunControl


@dataclass
class RunsChanged(Message):
    """Runs of these ideas started, finished or were controlled; reload their run lists."""

    idea_ids: frozenset[int | None]


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
class Alert(Message):
    """Something the user should see now (a notification): a stage failed or paused, a
    paper is ready, a run stalled, an engine notice, a literature source went down."""

    text: str
    title: str = ""
    severity: SeverityLevel = "information"
    timeout: float | None = None
    """Seconds; None for Textual's default."""


@dataclass
class EngineLifecycle(Message):
    """The engine was asked to stop, or (attached) the engine connection is gone."""

    event: ev.EngineStopRequested | ev.EngineGone


@dataclass
class BridgeStats:
    flushes: int = 0
    events: int = 0
    messages: int = 0
    dropped: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


#: Stage event -> (state shown, the field holding its text).
_STAGE_LINES: dict[type[ev.Event], tuple[str, str | None]] = {
    ev.StageStarted: ("started", None), ev.StageFinished: ("done", "summary"),
    ev.StageFailed: ("failed", "reason"), ev.StagePaused: ("paused", "reason"),
    ev.StageProgress: ("progress", "message")}
#: Stages whose end changes what the plots, review and detail panes show.
OUTPUT_STAGES = frozenset({"plot", "write", "improve", "review", "integrity"})
#: Stages whose end is a (new) paper.
PAPER_STAGES = frozenset({"write", "improve"})
_NOTICE_SEVERITY: dict[str, SeverityLevel] = {"error": "error", "warning": "warning"}


def _stage_alert(e: ev.Event) -> Alert | None:
    if isinstance(e, ev.StageFailed):
        return Alert(f"idea {e.idea_id}: {e.stage} failed: {e.reason}", "Stage failed",
                     "error", 10)
    if isinstance(e, ev.StageFinished) and e.stage in PAPER_STAGES:
        return Alert(f"idea {e.idea_id}: paper ready {e.summary}".strip(), "Paper finished",
                     timeout=8)
    if isinstance(e, ev.StagePaused) and e.stage != "approval":
        return Alert(f"idea {e.idea_id}: {e.stage} paused: {e.reason}", severity="warning",
                     timeout=8)
    return None


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
        self._failed: set[tuple[int | None, str]] = set()
        """(idea, stage) whose failure was already shown (or on record at launch) and
        that has not started again since: its failure is not toasted a second time."""

    def known_failures(self, failed: set[tuple[int | None, str]]) -> None:
        """Stages already failed when the TUI attached: their failure is in the activity
        pane; it is toasted again only after the stage starts again and fails."""
        self._failed |= failed

    def _failure_is_new(self, e: ev.Event) -> bool:
        """One toast per occurrence of a stage failure (bounded bookkeeping)."""
        if not isinstance(e, ev.StageStarted | ev.StageFailed):
            return True
        key = (e.idea_id, e.stage)
        if isinstance(e, ev.StageStarted):
            self._failed.discard(key)
            return True
        if key in self._failed:
            return False
        if len(self._failed) >= MAX_REMEMBERED_FAILURES:
            self._failed.clear()
        self._failed.add(key)
        return True

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
        stage: list[StageLine] = []
        outputs: set[int] = set()
        runs: list[Message] = []
        run_ideas: set[int | None] = set()
        output: dict[tuple[int | None, str], deque[str]] = {}
        total_lines = 0
        stats: dict[tuple[int | None, str], ev.ProcessStats] = {}
        stalled: list[ev.RunStalled] = []
        streams: dict[str, tuple[ev.LLMStreamed, list[str]]] = {}
        calls: list[ev.Event] = []
        cost: ev.CostUpdated | None = None
        budget: ev.BudgetReached | None = None
        alerts: list[Alert] = []
        lifecycle: list[Message] = []
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
            elif isinstance(e, ev.StageStarted | ev.StageFinished | ev.StageFailed
                            | ev.StagePaused | ev.StageProgress):
                state, text_field = _STAGE_LINES[type(e)]
                stage.append(StageLine(e.idea_id, e.stage, state,
                                       getattr(e, text_field) if text_field else ""))
                if e.idea_id is not None:
                    idea_ids.add(e.idea_id)
                    if isinstance(e, ev.StageFinished) and e.stage in OUTPUT_STAGES:
                        outputs.add(e.idea_id)
                alert = _stage_alert(e) if self._failure_is_new(e) else None
                if alert is not None:
                    alerts.append(alert)
            elif isinstance(e, ev.RunStarted):
                runs.append(RunStarted(e))
                run_ideas.add(e.idea_id)
            elif isinstance(e, ev.RunFinished):
                runs.append(RunEnded(e))
                run_ideas.add(e.idea_id)
            elif isinstance(e, ev.RunControl):
                runs.append(RunControlled(e))
                run_ideas.add(e.idea_id)
            elif isinstance(e, ev.RunStalled):
                stalled.append(e)
                alerts.append(Alert(f"idea {e.idea_id} {e.run}: no output for "
                                    f"{e.silent_for_s:.0f}s", "Run stalled", "warning"))
            elif isinstance(e, ev.LLMCallStarted | ev.LLMCallFinished | ev.LLMRetry):
                calls.append(e)
            elif isinstance(e, ev.CostUpdated):
                cost = e
            elif isinstance(e, ev.BudgetReached):
                budget = e
            elif isinstance(e, ev.EngineStopRequested | ev.EngineGone):
                lifecycle.append(EngineLifecycle(e))
            elif isinstance(e, ev.ViewerChanged) and e.action != "dropped":
                alerts.append(Alert(f"a viewer (pid {e.pid}) {e.action}; viewers now: "
                                    f"{e.viewers}", timeout=4))
            elif isinstance(e, ev.Notice):
                alerts.append(Alert(e.message, severity=_NOTICE_SEVERITY.get(e.level,
                                                                             "information")))
            elif isinstance(e, ev.LiteratureStatus) and e.breaker == "open":
                alerts.append(Alert(f"literature source {e.source} unavailable ({e.detail})",
                                    severity="warning"))
        out: list[Message] = []
        if idea_ids:
            out.append(IdeasChanged(frozenset(idea_ids)))
        if stage:
            out.append(StageActivity(tuple(stage)))
        if outputs:
            out.append(OutputsChanged(frozenset(outputs)))
        if runs:
            out += runs
            out.append(RunsChanged(frozenset(run_ideas)))
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
        out += alerts
        out += lifecycle
        return out
