"""Slots from (fake) NVML or CPU, CUDA_VISIBLE_DEVICES per slot, priority + FIFO queue."""

from __future__ import annotations

import asyncio

import pytest
from aisci.engine.config import Settings
from aisci.engine.run.gpu import GPUInfo, GPUProcess
from aisci.engine.run.scheduler import Scheduler

G = 1 << 30


class FakeProbe:
    """Stands in for NVML."""

    def __init__(self, gpus: list[GPUInfo]) -> None:
        self._gpus = gpus

    def gpus(self) -> list[GPUInfo]:
        return list(self._gpus)

    def memory_by_pid(self) -> dict[int, int]:
        return {p.pid: p.used_bytes or 0 for g in self._gpus for p in g.processes}

    def driver_version(self) -> str | None:
        return None


def fake() -> FakeProbe:
    return FakeProbe([
        GPUInfo(0, "A100", "GPU-0", 80 * G, 20 * G),
        GPUInfo(1, "A100", "GPU-1", 80 * G, 60 * G, (GPUProcess(4242, 50 * G),)),  # foreign
        GPUInfo(2, "H100", "GPU-2", 80 * G, 75 * G),
    ])


def settings(**sch: object) -> Settings:
    s = Settings()
    for k, v in sch.items():
        setattr(s.scheduler, k, v)
    return s


def test_gpus_by_free_memory_skipping_foreign_processes():
    sched = Scheduler(settings(), gpu_probe=fake())
    assert [s.name for s in sched.slots] == ["gpu2", "gpu0"]
    assert [s.cuda_visible_devices for s in sched.slots] == ["GPU-2", "GPU-0"]
    assert "skipped" in sched.note


def test_explicit_gpus_and_unknown_gpu():
    sched = Scheduler(settings(gpus=[1]), gpu_probe=fake())
    assert [s.name for s in sched.slots] == ["gpu1"]
    with pytest.raises(ValueError, match="GPU 7 does not exist"):
        Scheduler(settings(gpus=[7]), gpu_probe=fake())


def test_cpu_slots_without_gpus():
    sched = Scheduler(settings(parallel=3), gpu_probe=FakeProbe([]))
    assert [s.name for s in sched.slots] == ["cpu0", "cpu1", "cpu2"]
    assert all(s.cuda_visible_devices == "" for s in sched.slots)


async def test_priority_then_fifo_and_stats():
    sched = Scheduler(settings(parallel=1), gpu_probe=FakeProbe([]))
    order: list[str] = []
    gate = asyncio.Event()

    async def job(name: str, priority: int) -> None:
        async with sched.slot(idea_id=len(order), priority=priority) as slot:
            assert slot.name == "cpu0"
            order.append(name)
            if name == "first":
                await gate.wait()
            await asyncio.sleep(0.01)

    first = asyncio.create_task(job("first", 0))
    await asyncio.sleep(0.01)
    waiters = [asyncio.create_task(job(n, p)) for n, p in
               [("low-a", 5), ("high", 0), ("low-b", 5), ("urgent", -1)]]
    await asyncio.sleep(0.01)
    assert sched.stats()["queued"] == 4
    gate.set()
    await asyncio.gather(first, *waiters)
    assert order == ["first", "urgent", "high", "low-a", "low-b"]
    st = sched.stats()
    assert st["granted"] == 5 and st["queued"] == 0 and st["wait_max_s"] > 0
    assert st["slots"][0]["runs"] == 5 and st["slots"][0]["busy_s"] > 0.04


async def test_cancelled_waiter_does_not_leak_a_slot():
    sched = Scheduler(settings(parallel=1), gpu_probe=FakeProbe([]))
    async with sched.slot() as _:
        t = asyncio.create_task(sched._acquire(None, 0))
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
    async with sched.slot() as s2:
        assert s2.name == "cpu0"
    assert sched.stats()["queued"] == 0
