"""The scheduler's fair share: among waiters of the same priority, the idea that has had
the least slot time goes first (ideas that started late catch up, so a batch's last runs
are spread over several ideas); equal shares keep arrival order; priority comes first."""

from __future__ import annotations

import asyncio

from aisci.engine.config import Settings
from aisci.engine.run.scheduler import Scheduler
from support.labs import NoGPU


def one_slot() -> Scheduler:
    s = Settings()
    s.scheduler.parallel = 1
    return Scheduler(s, gpu_probe=NoGPU())


async def test_least_served_idea_goes_first_then_arrival_then_priority_rules():
    sched = one_slot()
    async with sched.slot(idea_id=1):  # idea 1 has had a run already
        await asyncio.sleep(0.02)
    order: list[str] = []
    gate = asyncio.Event()

    async def job(name: str, idea_id: int, priority: int = 0) -> None:
        async with sched.slot(idea_id=idea_id, priority=priority):
            order.append(name)
            if name == "holder":
                await gate.wait()

    holder = asyncio.create_task(job("holder", 9))
    await asyncio.sleep(0.01)
    waiters = []
    for name, idea, prio in [("idea1", 1, 0), ("idea2", 2, 0), ("idea3", 3, 0),
                             ("idea1-urgent", 1, -1)]:
        waiters.append(asyncio.create_task(job(name, idea, prio)))
        await asyncio.sleep(0.005)  # arrival order
    gate.set()
    await asyncio.gather(holder, *waiters)
    # Priority first; then ideas 2 and 3 (no slot time yet, in arrival order) before
    # idea 1, which arrived first but has had a run.
    assert order == ["holder", "idea1-urgent", "idea2", "idea3", "idea1"]


async def test_fair_share_counts_slot_seconds_not_grants():
    sched = one_slot()
    async with sched.slot(idea_id=1):  # one long run
        await asyncio.sleep(0.05)
    for _ in range(2):  # two short runs
        async with sched.slot(idea_id=2):
            await asyncio.sleep(0.005)
    order: list[int] = []
    gate = asyncio.Event()

    async def job(idea_id: int) -> None:
        async with sched.slot(idea_id=idea_id):
            order.append(idea_id)
            if idea_id == 9:
                await gate.wait()

    holder = asyncio.create_task(job(9))
    await asyncio.sleep(0.01)
    first, second = asyncio.create_task(job(1)), None
    await asyncio.sleep(0.005)
    second = asyncio.create_task(job(2))
    await asyncio.sleep(0.005)
    gate.set()
    await asyncio.gather(holder, first, second)
    assert order == [9, 2, 1]
