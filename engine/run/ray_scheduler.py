"""Slots of a Ray cluster: one per ``scheduler.run_gpus`` GPUs of every live node (or,
on a cluster without GPUs, one per ``scheduler.run_cpus`` CPUs), with the same queue as
the local :class:`~aisci.engine.run.scheduler.Scheduler` (priority, then arrival order),
so while one idea's model thinks another idea's run takes any free GPU of the cluster.

Each node reports its GPUs through its own NVML (a zero-CPU task pinned to it): GPUs
that other processes use are left out, as on one machine, the freest cards are granted
first, and a run is pinned to its slot's cards by UUID. A node without NVML is counted
from Ray's GPU resources and Ray picks its devices.

Nodes that join are offered on the next grant or refresh; a node that leaves (or is lost
mid-run) takes its slots away, a held one included once it is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from aisci.engine.config import Settings
from aisci.engine.run import gpu as gpu_mod
from aisci.engine.run import ray_cluster
from aisci.engine.run.scheduler import Scheduler, Slot

_REFRESH_S = 2.0  # how often the node table is read while runs wait for a slot
_MAX_SLOTS = 4096


@dataclass
class RaySlot(Slot):
    node_id: str = ""
    node: str = ""
    """The node's label (host-<id prefix>), shown with the run."""
    memory_free: int = 0
    """Free memory of the slot's emptiest GPU when the node reported it (bytes)."""


class RayScheduler(Scheduler):
    def __init__(self, settings: Settings, ray: Any) -> None:
        self._ray = ray
        self._refreshed = 0.0
        self._skipped_gpus = 0
        self._refresher: asyncio.Task[None] | None = None
        super().__init__(settings, gpu_probe=None)

    # -- slots ------------------------------------------------------------------------------
    def _node_slots(self, n: ray_cluster.NodeInfo, cpu_only: bool,
                    gpus: list[gpu_mod.GPUInfo] | None) -> list[RaySlot]:
        """The node's slots. With the node's own NVML report (``gpus``) a slot is
        ``run_gpus`` of its idle GPUs (no other process on them), most free memory
        first, named by UUID (the run is pinned to them); without one, Ray's GPU count
        (Ray picks the devices)."""
        sch = self.settings.scheduler
        if cpu_only:
            count = int(n.cpus // sch.run_cpus) if sch.run_cpus > 0 else int(n.cpus)
            return [RaySlot(f"{n.name}/cpu{k}", "", node_id=n.node_id, node=n.name)
                    for k in range(max(0, count))]
        if gpus is None:
            return [RaySlot(f"{n.name}/gpu{k}", str(k), k, "", node_id=n.node_id,
                            node=n.name) for k in range(n.gpus // sch.run_gpus)]
        idle = sorted((g for g in gpus if not g.processes), key=lambda g: -g.memory_free)
        self._skipped_gpus += len(gpus) - len(idle)
        idle = idle[:n.gpus]  # never more than Ray grants the node
        out = []
        for k in range(len(idle) // sch.run_gpus):
            group = idle[k * sch.run_gpus:(k + 1) * sch.run_gpus]
            out.append(RaySlot(
                f"{n.name}/gpu{','.join(str(g.index) for g in group)}",
                ",".join(g.uuid or str(g.index) for g in group), group[0].index,
                group[0].name, node_id=n.node_id, node=n.name,
                memory_free=min(g.memory_free for g in group)))
        return out

    def _slots_of(self, found: list[ray_cluster.NodeInfo], cpu_only: bool) -> list[RaySlot]:
        reports = ({} if cpu_only else
                   ray_cluster.node_gpus(self._ray, [n.node_id for n in found if n.gpus]))
        slots = [s for n in found
                 for s in self._node_slots(n, cpu_only, reports.get(n.node_id))]
        # the freest GPUs first (the first grant goes to the emptiest card of the cluster)
        return sorted(slots, key=lambda s: -s.memory_free)

    def _choose_slots(self) -> list[Slot]:
        found = ray_cluster.nodes(self._ray)
        self._refreshed = time.monotonic()
        cpu_only = not any(n.gpus >= self.settings.scheduler.run_gpus for n in found)
        self._skipped_gpus = 0
        slots: list[Slot] = list(self._slots_of(found, cpu_only)[:_MAX_SLOTS])
        kind = "CPU" if cpu_only else "GPU"
        self.note = (f"Ray cluster: {len(found)} node(s), {len(slots)} {kind} slot(s)"
                     + (f"; {self._skipped_gpus} GPU(s) skipped (used by other processes)"
                        if self._skipped_gpus else "")
                     + ("; scheduler.gpus is ignored" if self.settings.scheduler.gpus else ""))
        self._cpu_only = cpu_only
        return slots

    def placement(self, idea_id: int | None) -> RaySlot | None:
        """The slot ``idea_id`` holds now (the latest granted), or None."""
        held = [s for s in self.slots if isinstance(s, RaySlot) and s.since is not None
                and s.idea_id == idea_id]
        return max(held, key=lambda s: s.since or 0.0) if held else None

    def node_names(self) -> dict[str, str]:
        return {s.node_id: s.node for s in self.slots if isinstance(s, RaySlot)}

    def drop_node(self, node_id: str) -> None:
        """Forget a node's slots (it left the cluster)."""
        self.slots = [s for s in self.slots if getattr(s, "node_id", "") != node_id]
        self._free = [s for s in self._free if getattr(s, "node_id", "") != node_id]

    def refresh(self) -> None:
        """Read the node table: slots of new nodes are offered, those of gone ones dropped."""
        self._refreshed = time.monotonic()
        try:
            found = ray_cluster.nodes(self._ray)
        except Exception:  # a GCS hiccup: keep the table we have, retry at the next tick
            return
        alive = {n.node_id for n in found}
        for nid in {getattr(s, "node_id", "") for s in self.slots} - alive:
            self.drop_node(nid)
        known = {getattr(s, "node_id", "") for s in self.slots}
        joined = [n for n in found if n.node_id not in known]
        try:
            new_slots = self._slots_of(joined, self._cpu_only) if joined else []
        except Exception:  # the GPU report failed: retry at the next tick
            return
        for s in new_slots:
            if len(self.slots) >= _MAX_SLOTS:
                break
            self.slots.append(s)
            self._release(s)  # to a waiter, or into the free list

    # -- queue ------------------------------------------------------------------------------
    async def _acquire(self, idea_id: int | None, priority: int) -> Slot:
        if time.monotonic() - self._refreshed > _REFRESH_S:
            await asyncio.to_thread(self.refresh)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        return await super()._acquire(idea_id, priority)

    async def _refresh_loop(self) -> None:
        """While runs wait for a slot, look for nodes that joined (bounded: it ends as
        soon as nobody waits)."""
        while self._queue:
            await asyncio.sleep(_REFRESH_S)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.refresh)

    def _release(self, s: Slot) -> None:
        if s not in self.slots:  # its node is gone: the slot goes with it
            if s.since is not None:
                s.busy_s += time.monotonic() - s.since
            s.idea_id, s.since = None, None
            return
        super()._release(s)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        nodes = {getattr(s, "name", ""): getattr(s, "node", "") for s in self.slots}
        for row in out["slots"]:
            row["node"] = nodes.get(row["name"], "")
        return out
