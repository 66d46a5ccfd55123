"""The Ray backend over 1, 2 and 4 nodes: a batch of simulated ideas (model latency
simulated with a sleep outside the slot, each run a real contained process of fixed
length on a worker node) through RayScheduler + RayExecutor on a local Ray cluster
(Ray's own test utilities, one fake GPU per worker node, CPU only).

Prints per node count: makespan, GPU-slot busy fraction (slot held / slots x wall),
process fraction (the remote processes' own run time / slots x wall: what Ray's actor
start and the folder round trip cost), speed-up per node against one node, and the
seconds per run a slot is held while its process is not running (that fixed cost per run
is what keeps short runs from scaling: on a 2-core machine running 4 raylets it grows
from about 0.1 s at one node to 0.7-1.5 s at four, so 30 s runs reach 0.97 per node
where 3 s runs reach 0.82; real runs are minutes to hours). The default (30 s runs, 1/2/4
nodes) takes about 15 minutes; ``--run-s 3`` stresses the per-run cost.

    python benchmarks/bench_ray_scheduler.py [--ideas 8] [--runs 2] [--run-s 30]
        [--llm-s 1] [--nodes 1,2,4] [--repeat 1]

Needs the extra: pip install "aisci[ray]".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import ray
from aisci.engine.config import Settings
from aisci.engine.run.executor import RunSpec
from aisci.engine.run.ray_executor import RayExecutor
from ray.cluster_utils import Cluster

STORE = 78_643_200
RUN = "import sys, time\nprint('start', flush=True)\ntime.sleep(float(sys.argv[1]))\n" \
      "print('end', flush=True)\n"


async def batch(ex: RayExecutor, root: Path, ideas: int, runs: int, run_s: float,
                llm_s: float) -> tuple[float, float]:
    """Returns (makespan, summed remote process time)."""
    proc_time = 0.0

    async def idea(i: int) -> None:
        nonlocal proc_time
        folder = root / f"idea{i}"
        folder.mkdir()
        (folder / "experiment.py").write_text(RUN)
        for r in range(1, runs + 1):
            await asyncio.sleep(llm_s)  # the model thinks; no slot held
            async with ex.scheduler.slot(idea_id=i) as slot:
                res = await ex.run(RunSpec(
                    argv=[sys.executable, "experiment.py", str(run_s)], cwd=folder,
                    log_path=folder / "logs" / f"run_{r}.log", limit_s=run_s + 60,
                    kind="experiment", run=f"run_{r}", idea_id=i, writable=[folder],
                    gpu=slot.cuda_visible_devices))
            if not res.ok:
                raise SystemExit(f"idea {i} run {r}: {res.status} {res.reason}")
            proc_time += res.duration_s

    t0 = time.monotonic()
    await asyncio.gather(*(idea(i) for i in range(ideas)))
    return time.monotonic() - t0, proc_time


def one(nodes: int, args: argparse.Namespace) -> dict[str, float]:
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "object_store_memory": STORE,
        "include_dashboard": False})
    try:
        for _ in range(nodes):
            c.add_node(num_cpus=1, num_gpus=1, object_store_memory=STORE)
        c.wait_for_nodes()
        s = Settings()
        s.sandbox.grace_period_s = 0.5
        s.scheduler.backend = "ray"
        s.scheduler.ray_address = c.address
        ex = RayExecutor(s)
        assert len(ex.scheduler.slots) == nodes, ex.scheduler.note
        with tempfile.TemporaryDirectory() as tmp:
            wall, proc = asyncio.run(batch(ex, Path(tmp), args.ideas, args.runs, args.run_s,
                                           args.llm_s))
        busy = sum(float(row["busy_s"]) for row in ex.scheduler.stats()["slots"])
        runs = args.ideas * args.runs
        return {"wall": wall, "busy": busy / (nodes * wall), "proc": proc / (nodes * wall),
                "overhead": (busy - proc) / runs}
    finally:
        ray.shutdown()
        c.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ideas", type=int, default=8)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--run-s", type=float, default=30.0)
    ap.add_argument("--llm-s", type=float, default=1.0)
    ap.add_argument("--nodes", default="1,2,4")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    print(f"batch: {args.ideas} ideas x {args.runs} runs of {args.run_s:g} s, model latency "
          f"{args.llm_s:g} s per run; one fake GPU per worker node")
    print(f"{'nodes':>5} {'rep':>3} {'wall s':>8} {'slot busy':>9} {'process':>8} "
          f"{'speed-up':>8} {'per node':>8} {'s/run held, not running':>24}")
    base: float | None = None
    for rep in range(args.repeat):
        for n in counts:
            r = one(n, args)
            if n == counts[0]:
                base = r["wall"] * counts[0]
            speed = (base / r["wall"]) if base else float("nan")
            print(f"{n:>5} {rep + 1:>3} {r['wall']:>8.1f} {r['busy']:>9.3f} {r['proc']:>8.3f} "
                  f"{speed:>8.2f} {speed / n:>8.2f} {r['overhead']:>24.2f}", flush=True)


if __name__ == "__main__":
    main()
