"""The event bus: typed events, bounded subscriber queues, publishing from any thread,
and a slow subscriber never blocking the publisher."""

from __future__ import annotations

import asyncio
import threading
import time

from aisci.engine import events as ev
from aisci.engine.events import EventBus


async def test_fan_out_and_kind_filter():
    bus = EventBus()
    everything = bus.subscribe()
    only_runs = bus.subscribe(kinds=(ev.RunStarted, ev.RunFinished))
    bus.publish(ev.IdeaAdded(idea_id=1, name="a", title="A"))
    bus.publish(ev.RunFinished(idea_id=1, run="run_1", attempt=1, status="ok", exit_code=0))
    assert [e.kind for e in everything.drain()] == ["IdeaAdded", "RunFinished"]
    [run] = only_runs.drain()
    assert isinstance(run, ev.RunFinished) and run.status == "ok"
    assert run.to_dict()["run"] == "run_1" and run.ts > 0


async def test_slow_subscriber_is_bounded_and_never_blocks():
    bus = EventBus()
    slow = bus.subscribe(maxsize=100)
    t0 = time.monotonic()
    for i in range(50_000):
        bus.publish(ev.RunOutput(idea_id=1, run="run_1", lines=(f"line {i}",)))
    assert time.monotonic() - t0 < 5
    got = slow.drain()
    # The newest events are kept; the rest were dropped for this subscriber only.
    assert len(got) == 100 and slow.dropped == 50_000 - 100
    assert got[-1].lines == ("line 49999",)


async def test_async_iteration_and_close():
    bus = EventBus()
    sub = bus.subscribe()
    received: list[str] = []

    async def consume():
        async for e in sub:
            received.append(e.kind)

    task = asyncio.create_task(consume())
    bus.publish(ev.Notice(level="info", message="hello"))
    await asyncio.sleep(0.01)
    sub.close()
    await asyncio.wait_for(task, 1)
    assert received == ["Notice"]
    bus.publish(ev.Notice(level="info", message="after close"))
    assert sub.drain() == []


async def test_publish_from_threads_reaches_the_loop():
    bus = EventBus()
    bus.bind_loop()
    sub = bus.subscribe()

    def worker(n: int) -> None:
        for i in range(200):
            bus.publish(ev.StageProgress(idea_id=n, stage="experiment", message=str(i)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = []
    while len(got) < 800:
        got.append(await asyncio.wait_for(sub.get(), 2))
    assert sorted({e.idea_id for e in got}) == [0, 1, 2, 3]


def test_sinks_and_persistence_flags():
    bus = EventBus()
    seen = []
    bus.add_sink(lambda e: seen.append(e.kind) if e.persistent else None)
    bus.publish(ev.LLMStreamed(call_id="c", stage="ideate", idea_id=None, text="tok"))
    bus.publish(ev.BudgetReached(scope="lab", idea_id=None, spent_usd=1.0, budget_usd=1.0))
    assert seen == ["BudgetReached"]
