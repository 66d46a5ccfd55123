"""How busy the pipeline keeps the GPUs: a batch of ideas with simulated LLM latency and
simulated GPU jobs on K fake GPUs, through the REAL stage machine (Engine + Pipeline) and
the REAL Scheduler (with a fake NVML probe reporting K idle GPUs). Only the stage bodies
are simulated: each LLM step is a sleep, each experiment run holds a scheduler slot for a
sleep, like the real experiment stage does around ``python experiment.py``.

One run measures two cases: "normal" (each code edit takes half a run) and "slower edit"
(a code edit takes as long as a run: an idea alone then keeps a GPU busy only half the
time). For each it prints the GPU busy fraction over the GPU window (first run start ->
last run end) and over the whole wall time, total wall time, and GPU idle time by cause:
  startup  - before the first experiment could start (ideation, novelty, planning)
  thinking - ideas still have runs to do but none is ready (all are in LLM steps)
  drain    - no idea has runs left to start, the last runs still run on other GPUs
  tail     - every run is over (plots, papers, reviews: outside the GPU window)

and the best possible busy fraction over the wall for the batch: the first idea cannot
run before it is drafted, checked, planned and edited, the runs take at least their
total time divided by the GPUs, and the idea whose run ends last still plots, writes,
checks and reviews its paper afterwards. (Over the window the limit is set by ideation:
ideas are drafted one after another, so at the start of the window fewer ideas are
ready than there are GPUs to feed.) The default batch is the product's (50 ideas, about
a minute); fewer ideas per GPU amortise startup and tail less (8 ideas on 2 GPUs cannot
pass 0.75 over the wall with these latencies, whatever the scheduling):

    python benchmarks/bench_scheduler.py
    python benchmarks/bench_scheduler.py --ideas 8 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.engine import Engine
from aisci.engine.pipeline import PipelineOptions
from aisci.engine.run.gpu import GPUInfo
from aisci.engine.run.scheduler import Scheduler
from aisci.engine.stages.contract import StageOutcome

IDEA = {"Title": "A simulated idea", "Experiment": "Simulated experiment for the benchmark.",
        "Interestingness": 5, "Feasibility": 5, "Novelty": 5}


class FakeProbe:
    """K idle GPUs, as NVML would report them."""

    def __init__(self, k: int) -> None:
        self.k = k

    def gpus(self) -> list[GPUInfo]:
        return [GPUInfo(index=i, name="FakeGPU", uuid=f"GPU-fake-{i}",
                        memory_total=80 << 30, memory_free=80 << 30)
                for i in range(self.k)]

    def memory_by_pid(self) -> dict[int, int]:
        return {}

    def driver_version(self) -> str | None:
        return "fake"


@dataclass
class Trace:
    gpus: int
    intervals: list[tuple[float, float]] = field(default_factory=list)
    runs_left: dict[int, int] = field(default_factory=dict)
    samples: dict[str, float] = field(default_factory=lambda: {
        "startup": 0.0, "thinking": 0.0, "drain": 0.0, "tail": 0.0})
    busy_now: int = 0
    first_start: float | None = None
    last_end: float | None = None


def make_stages(trace: Trace, *, llm_s: float, edit_s: float, run_s: float, runs: int,
                n_ideas: int) -> dict:
    async def ideate(ctx, template, n):
        ids = []
        for _ in range(n):
            await asyncio.sleep(llm_s)  # draft + reflections of one idea
            k = len(ctx.store.list_ideas()) + 1
            iid = ctx.store.add_idea(f"sim_idea_{k}", template, {**IDEA, "Name": f"sim_{k}"},
                                     status="approved")
            trace.runs_left[iid] = runs
            ctx.bus.publish(ev.IdeaAdded(idea_id=iid, name=f"sim_idea_{k}", title="sim"))
            ids.append(iid)
        return ids

    async def llm_stage(ctx, idea_id):
        await asyncio.sleep(llm_s)
        return StageOutcome()

    async def experiment(ctx, idea_id):
        await asyncio.sleep(edit_s)  # the plan
        for _ in range(runs):
            await asyncio.sleep(edit_s)  # the code edit for this run
            async with ctx.scheduler.slot(idea_id=idea_id):
                start = time.monotonic()
                trace.busy_now += 1
                trace.first_start = trace.first_start or start
                await asyncio.sleep(run_s)
                trace.busy_now -= 1
                end = time.monotonic()
                trace.intervals.append((start, end))
                trace.last_end = end
            trace.runs_left[idea_id] -= 1
        return StageOutcome()

    return {"ideate": ideate, "novelty": llm_stage, "experiment": experiment,
            "plot": llm_stage, "write": llm_stage, "integrity": llm_stage,
            "review": llm_stage}


async def sample(trace: Trace, n_ideas: int, period: float = 0.002) -> None:
    last = time.monotonic()
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        dt, last = now - last, now
        idle = trace.gpus - trace.busy_now
        if idle <= 0:
            continue
        if trace.first_start is None:
            cause = "startup"
        elif len(trace.runs_left) < n_ideas or any(v > 0 for v in trace.runs_left.values()):
            cause = "thinking"
        elif trace.busy_now:
            cause = "drain"
        else:
            cause = "tail"
        trace.samples[cause] += idle * dt


async def bench(n_ideas: int, gpus: int, llm_s: float, edit_s: float, run_s: float,
                runs: int, max_llm_tasks: int) -> dict:
    settings = Settings()
    settings.scheduler.max_llm_tasks = max_llm_tasks
    trace = Trace(gpus=gpus)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Path(tmp), settings, headless=True,
                        options=PipelineOptions(template="grokking", skip_novelty=False,
                                                auto_approve=True),
                        stages=make_stages(trace, llm_s=llm_s, edit_s=edit_s, run_s=run_s,
                                           runs=runs, n_ideas=n_ideas),
                        scheduler=Scheduler(settings, gpu_probe=FakeProbe(gpus)),
                        executor=None, literature=None)
        engine.ensure_ideas(n_ideas)
        t0 = time.monotonic()
        await engine.start()
        sampler = asyncio.create_task(sample(trace, n_ideas))
        await engine.wait_idle()
        wall = time.monotonic() - t0
        sampler.cancel()
        outcomes = engine.outcomes
        await engine.stop()
    busy = sum(e - s for s, e in trace.intervals)
    window = (trace.last_end or 0) - (trace.first_start or 0)
    return {"ideas": n_ideas, "gpus": gpus, "runs": len(trace.intervals), "wall_s": wall,
            "gpu_window_s": window, "busy_s": busy,
            "busy_fraction_window": busy / (gpus * window) if window else 0.0,
            "busy_fraction_wall": busy / (gpus * wall) if wall else 0.0,
            "idle_by_cause_gpu_s": trace.samples,
            "ideal_gpu_time_s": n_ideas * runs * run_s / gpus,
            "done": sum(1 for o in outcomes.values() if o.state == "done")}


def wall_bound(n_ideas: int, gpus: int, llm_s: float, edit_s: float, run_s: float,
               runs: int) -> float:
    """Best possible busy fraction over the wall time (see the module docstring)."""
    busy = n_ideas * runs * run_s
    first_run = llm_s + llm_s + edit_s + edit_s  # ideate, novelty, plan, first edit
    after_runs = 4 * llm_s  # plot, write, integrity, review of the last idea
    return busy / (gpus * (first_run + busy / gpus + after_runs))


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    v = sorted(values)
    return f"{v[len(v) // 2]:.3f} (min {v[0]:.3f}, max {v[-1]:.3f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ideas", type=int, default=Settings().ideation.num_ideas,
                   help="ideas in the batch (default: the product's default batch)")
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--llm-s", type=float, default=0.2, help="each LLM stage (ideate, novelty, "
                   "plot, write, integrity, review)")
    p.add_argument("--edit-s", type=float, default=None,
                   help="each LLM step inside the experiment stage (plan, code edit): only "
                        "this case; default: both cases, half of --run-s (normal) and "
                        "equal to --run-s (slower edit, the worst case)")
    p.add_argument("--run-s", type=float, default=0.2, help="each experiment run on a GPU")
    p.add_argument("--runs", type=int, default=5, help="runs per idea (reference: 5)")
    p.add_argument("--max-llm-tasks", type=int, default=8)
    p.add_argument("--repeat", type=int, default=1,
                   help="measure each case this many times; print the median and spread")
    a = p.parse_args()
    cases = ([("given edit", a.edit_s)] if a.edit_s is not None else
             [("normal", a.run_s / 2), ("slower edit", a.run_s)])
    for title, edit in cases:
        rs = [asyncio.run(bench(a.ideas, a.gpus, a.llm_s, edit, a.run_s, a.runs,
                                a.max_llm_tasks)) for _ in range(max(1, a.repeat))]
        r = sorted(rs, key=lambda x: x["busy_fraction_window"])[len(rs) // 2]
        print(f"== {title}: ideas={r['ideas']} gpus={r['gpus']} runs={r['runs']} "
              f"llm_stage_s={a.llm_s} edit_s={edit} run_s={a.run_s} "
              f"max_llm_tasks={a.max_llm_tasks} (ideas done: {r['done']}"
              + (f"; median of {len(rs)}" if len(rs) > 1 else "") + ")")
        print(f"wall time             {r['wall_s']:.2f} s")
        print(f"GPU window            {r['gpu_window_s']:.2f} s "
              f"(ideal {r['ideal_gpu_time_s']:.2f} s of runs per GPU)")
        print(f"GPU busy over window  {_spread([x['busy_fraction_window'] for x in rs])}")
        print(f"GPU busy over wall    {_spread([x['busy_fraction_wall'] for x in rs])} "
              f"(best possible for this batch "
              f"{wall_bound(a.ideas, a.gpus, a.llm_s, edit, a.run_s, a.runs):.3f})")
        idle = r["idle_by_cause_gpu_s"]
        print("GPU idle by cause     " + ", ".join(f"{k} {v:.2f} GPU-s" for k, v in idle.items()))


if __name__ == "__main__":
    main()
