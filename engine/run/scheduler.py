"""Hands out execution slots: one per chosen GPU, or N CPU slots.

GPUs are ``scheduler.gpus`` when set, otherwise every GPU NVML reports without foreign
processes, most free memory first. A run holds one slot for its duration and gets its
GPU through CUDA_VISIBLE_DEVICES (the GPU's UUID when NVML knows it, so CUDA's own device
ordering cannot pick a different card). Waiters queue by priority (lower value first),
then by the slot time their idea has had so far (least first: a fair share per idea),
then arrival order, so while one idea's LLM thinks, another idea's experiment takes the
GPU. An idea waits behind later arrivals only while they have had less GPU time than it,
so in a batch (a bounded set of ideas) nobody waits forever.

The fair share keeps the GPUs busy to the end of a batch: an idea alternates LLM edits
with runs, so it alone cannot keep a GPU busy; serving first the ideas that have had the
least GPU time lets ideas that started late catch up, and the batch's last runs are then
spread over several ideas instead of queued behind one idea's edits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.run import gpu as gpu_mod

_WAIT_SAMPLES = 1000  # bound on remembered wait times


@dataclass
class Slot:
    name: str
    """gpu0, gpu1, ... or cpu0, cpu1, ..."""
    cuda_visible_devices: str
    """Value for CUDA_VISIBLE_DEVICES; "" on a CPU slot (hides every GPU)."""
    gpu_index: int | None = None
    gpu_name: str = ""
    busy_s: float = 0.0
    runs: int = 0
    idea_id: int | None = None
    since: float | None = None

    @property
    def is_gpu(self) -> bool:
        return self.gpu_index is not None


@dataclass(order=True)
class _Waiter:
    priority: int
    service_s: float
    """Slot time the waiter's idea has had so far (fair share: least first)."""
    seq: int
    idea_id: int | None = field(compare=False)
    future: asyncio.Future[Slot] = field(compare=False)
    queued_at: float = field(compare=False, default_factory=time.monotonic)


class Scheduler:
    def __init__(self, settings: Settings, gpu_probe: gpu_mod.GPUProbe | None = None) -> None:
        self.settings = settings
        self._probe = gpu_probe if gpu_probe is not None else gpu_mod.default_probe()
        self.note = ""
        self.slots: list[Slot] = self._choose_slots()
        self._free: list[Slot] = list(self.slots)
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()
        self._waits: list[float] = []
        self._granted = 0
        self._service: dict[int | None, float] = {}
        """Slot seconds per idea (None: lab-level runs such as the baseline)."""

    def _choose_slots(self) -> list[Slot]:
        sch = self.settings.scheduler
        gpus = gpu_mod.list_gpus(self._probe) if self._probe is not None else []
        by_index = {g.index: g for g in gpus}
        if sch.gpus is not None:
            chosen = []
            for i in sch.gpus:
                g = by_index.get(i)
                if self._probe is not None and g is None:
                    raise ValueError(f"scheduler.gpus: GPU {i} does not exist "
                                     f"(NVML sees {sorted(by_index) or 'none'})")
                chosen.append(Slot(f"gpu{i}", (g.uuid if g and g.uuid else str(i)), i,
                                   g.name if g else ""))
            if chosen:
                self.note = "GPUs from scheduler.gpus"
                return chosen
        elif gpus:
            idle = sorted((g for g in gpus if not g.processes), key=lambda g: -g.memory_free)
            if idle:
                busy = len(gpus) - len(idle)
                self.note = f"{len(idle)} idle GPU(s)" + (
                    f"; {busy} skipped (used by other processes)" if busy else "")
                return [Slot(f"gpu{g.index}", g.uuid or str(g.index), g.index, g.name)
                        for g in idle]
            self.note = (f"all {len(gpus)} GPU(s) are used by other processes; running on "
                         "CPU slots (set scheduler.gpus to use them anyway)")
        else:
            self.note = "no GPU (NVML unavailable or no device); CPU slots"
        return [Slot(f"cpu{i}", "") for i in range(sch.parallel)]

    @asynccontextmanager
    async def slot(self, *, idea_id: int | None = None, priority: int = 0
                   ) -> AsyncIterator[Slot]:
        """Hold one slot for the body; waits (by priority, then FIFO) when all are busy."""
        s = await self._acquire(idea_id, priority)
        try:
            yield s
        finally:
            self._release(s)

    async def _acquire(self, idea_id: int | None, priority: int) -> Slot:
        if self._free and not self._queue:
            return self._grant(self._free.pop(0), idea_id, 0.0)
        waiter = _Waiter(priority, self._service.get(idea_id, 0.0), next(self._seq), idea_id,
                         asyncio.get_running_loop().create_future())
        heapq.heappush(self._queue, waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(waiter.future.result())  # granted just as we were cancelled
            else:
                self._queue.remove(waiter)
                heapq.heapify(self._queue)
            raise

    def _grant(self, s: Slot, idea_id: int | None, waited: float) -> Slot:
        s.idea_id, s.since = idea_id, time.monotonic()
        s.runs += 1
        self._granted += 1
        self._waits.append(waited)
        if len(self._waits) > _WAIT_SAMPLES:
            del self._waits[: len(self._waits) - _WAIT_SAMPLES]
        return s

    def _release(self, s: Slot) -> None:
        if s.since is not None:
            held = time.monotonic() - s.since
            s.busy_s += held
            self._service[s.idea_id] = self._service.get(s.idea_id, 0.0) + held
        s.idea_id, s.since = None, None
        while self._queue:
            w = heapq.heappop(self._queue)
            if not w.future.done():
                w.future.set_result(self._grant(s, w.idea_id, time.monotonic() - w.queued_at))
                return
        # Keep the preferred order (most free GPU memory first) for the next grant.
        self._free.append(s)
        self._free.sort(key=self.slots.index)

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        waits = sorted(self._waits)
        return {
            "note": self.note,
            "slots": [{"name": s.name, "cuda_visible_devices": s.cuda_visible_devices,
                       "gpu": s.gpu_name, "busy": s.since is not None, "idea_id": s.idea_id,
                       "runs": s.runs,
                       "busy_s": s.busy_s + (now - s.since if s.since is not None else 0.0)}
                      for s in self.slots],
            "queued": len(self._queue),
            "granted": self._granted,
            "wait_mean_s": sum(waits) / len(waits) if waits else 0.0,
            "wait_max_s": waits[-1] if waits else 0.0,
        }
