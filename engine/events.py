"""Typed events published by the engine, and the bus that carries them.

The engine publishes; the TUI, the headless progress display and the store's event log
subscribe. Every subscriber has a bounded queue: when it is full the oldest events are
dropped for that subscriber only (and counted), so a slow subscriber never blocks the
engine. ``publish`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Event:
    ts: float = field(default_factory=time.time)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    #: Events a persistent log keeps; high-rate ones (output, stream deltas) set False.
    persistent = True


# -- ideas and stages ---------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class IdeaAdded(Event):
    idea_id: int
    name: str
    title: str


@dataclass(frozen=True, kw_only=True)
class IdeaChanged(Event):
    idea_id: int
    status: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class StageStarted(Event):
    idea_id: int | None
    stage: str


@dataclass(frozen=True, kw_only=True)
class StageFinished(Event):
    idea_id: int | None
    stage: str
    summary: str = ""


@dataclass(frozen=True, kw_only=True)
class StageFailed(Event):
    idea_id: int | None
    stage: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class StagePaused(Event):
    idea_id: int | None
    stage: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class StageProgress(Event):
    """Free-text progress inside a stage (e.g. "citation round 3/20")."""

    idea_id: int | None
    stage: str
    message: str
    persistent = False


# -- experiment processes --------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    idea_id: int | None
    run: str
    """Run label, e.g. ``run_2``, ``plot``, ``latex``, ``baseline``."""
    attempt: int
    pid: int
    limit_s: float
    isolation: str
    log_path: str


@dataclass(frozen=True, kw_only=True)
class RunOutput(Event):
    """A batch of output lines (never one event per line)."""

    idea_id: int | None
    run: str
    lines: tuple[str, ...]
    persistent = False


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    idea_id: int | None
    run: str
    attempt: int
    status: str
    """ok | failed | timeout | killed | interrupted"""
    exit_code: int | None
    reason: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RunControl(Event):
    """A human action on a running process: kill, extend, pause, resume."""

    idea_id: int | None
    run: str
    action: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class RunStalled(Event):
    idea_id: int | None
    run: str
    silent_for_s: float


@dataclass(frozen=True, kw_only=True)
class ProcessStats(Event):
    """A running process (experiment, plot, compile, check) and its usage: published
    every second while it runs, and what ``Executor.running()`` returns."""

    idea_id: int | None
    run: str
    elapsed_s: float
    limit_s: float
    cpu_percent: float
    rss_bytes: int
    gpu_mem_bytes: int | None
    last_output_age_s: float
    paused: bool
    kind: str = "experiment"
    pid: int = 0
    isolation: str = ""
    stalled: bool = False
    attempt: int = 1
    processes: int = 1
    node: str = ""
    """The cluster node the process runs on ("" on this machine)."""
    persistent = False


# -- LLM and cost ------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class LLMCallStarted(Event):
    call_id: str
    stage: str
    idea_id: int | None
    model: str


@dataclass(frozen=True, kw_only=True)
class LLMStreamed(Event):
    call_id: str
    stage: str
    idea_id: int | None
    text: str
    persistent = False


@dataclass(frozen=True, kw_only=True)
class LLMCallFinished(Event):
    call_id: str
    stage: str
    idea_id: int | None
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class LLMRetry(Event):
    """A failed attempt of a call that will be tried again after ``wait_s``."""

    call_id: str
    stage: str
    idea_id: int | None
    attempt: int
    """Attempts made so far (the next one is ``attempt + 1``)."""
    wait_s: float
    reason: str
    model: str = ""
    """``provider:model``."""
    what: str = "failed"
    """Short kind of failure: ``rate-limited``, ``overloaded``, ``stream broke`` ..."""
    max_tries: int = 0
    """Attempts allowed for this kind of failure (0: unknown)."""

    @property
    def summary(self) -> str:
        """One line for people: ``anthropic:M rate-limited, try 2/6, next in 120 s``."""
        where = "lab" if self.idea_id is None else f"idea {self.idea_id}"
        of = f"/{self.max_tries}" if self.max_tries else ""
        return (f"{self.model or 'model'} {self.what}, try {self.attempt + 1}{of}, next in "
                f"{self.wait_s:.0f} s ({where}, {self.stage}): {self.reason[:240]}")


@dataclass(frozen=True, kw_only=True)
class CostUpdated(Event):
    lab_usd: float
    idea_id: int | None = None
    idea_usd: float | None = None
    unknown_cost_calls: int = 0


@dataclass(frozen=True, kw_only=True)
class BudgetReached(Event):
    scope: str
    """"lab" or "idea"."""
    idea_id: int | None
    spent_usd: float
    budget_usd: float
    stage: str = ""


# -- literature --------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class LiteratureStatus(Event):
    source: str
    breaker: str
    """closed | open | half-open"""
    cache_hits: int = 0
    requests: int = 0
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Notice(Event):
    level: str
    """info | warning | error"""
    message: str
    idea_id: int | None = None


# -- the engine itself ----------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class EngineStopRequested(Event):
    """Someone asked the running engine to stop cleanly (``aisci stop``, a viewer)."""

    source: str


@dataclass(frozen=True, kw_only=True)
class ViewerChanged(Event):
    """A viewer attached to, left or was dropped by the running engine."""

    action: str
    """attached | left | dropped"""
    pid: int
    viewers: int
    reason: str = ""
    persistent = False


@dataclass(frozen=True, kw_only=True)
class EngineGone(Event):
    """Published by an attached viewer on its own bus: the engine it drove is gone
    (stopped, crashed, killed) or dropped this viewer."""

    reason: str
    alive: bool = False
    """True when the engine still runs (this viewer was dropped and may reconnect)."""
    persistent = False


class Subscription:
    """One subscriber's bounded queue. Iterate with ``async for``."""

    def __init__(self, bus: EventBus, maxsize: int, kinds: tuple[type[Event], ...] | None) -> None:
        self._bus = bus
        self._buf: collections.deque[Event] = collections.deque(maxlen=maxsize)
        self._kinds = kinds
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def _offer(self, event: Event) -> None:
        if self._kinds is not None and not isinstance(event, self._kinds):
            return
        if len(self._buf) == self._buf.maxlen:
            self.dropped += 1
        self._buf.append(event)
        self._ready.set()

    def drain(self) -> list[Event]:
        """Everything queued now, without waiting."""
        out = list(self._buf)
        self._buf.clear()
        self._ready.clear()
        return out

    async def get(self) -> Event:
        while not self._buf:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._buf.popleft()

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self._bus._subs.discard(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.get()


class EventBus:
    """Fan-out of engine events to bounded subscriber queues; publish never blocks."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._sinks: list[Any] = []

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def subscribe(self, maxsize: int = 10_000,
                  kinds: tuple[type[Event], ...] | None = None) -> Subscription:
        sub = Subscription(self, maxsize, kinds)
        self._subs.add(sub)
        return sub

    def add_sink(self, sink: Any) -> None:
        """A synchronous callable run for every event in the publishing thread (e.g. the
        store's event log). Sinks must be fast and must not raise."""
        self._sinks.append(sink)

    def publish(self, event: Event) -> None:
        for sink in self._sinks:
            sink(event)
        if (self._loop is not None and self._loop_thread != threading.get_ident()
                and not self._loop.is_closed()):
            self._loop.call_soon_threadsafe(self._fan_out, event)
        else:
            self._fan_out(event)

    def _fan_out(self, event: Event) -> None:
        for sub in list(self._subs):
            sub._offer(event)
