"""Ideation is a stream, not a barrier. With the real ideation and novelty stages (the
demo's scripted model, the bundled offline literature fixture), the real Scheduler and
ONE LLM permit, the first approved idea's experiment holds a scheduler slot while later
ideas are still being drafted; the ideas keep the order and the scripted keys of a
one-call batch, and a restarted engine generates nothing more."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aisci.engine.config import Settings
from aisci.engine.demo import prepare_demo_lab
from aisci.engine.engine import Engine
from aisci.engine.llm.scripted import ScriptedProvider
from aisci.engine.pipeline import PipelineOptions
from aisci.engine.run.scheduler import Scheduler
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.contract import StageOutcome
from support.labs import NoGPU

# The demo cassette's three ideas, in the order its ideation keys idea-1..3 give them.
DEMO_IDEAS = ["weight_decay_grokking_speed", "label_smoothing_grokking",
              "weight_norm_grokking"]




def _engine(lab: Path, settings: Settings, stages: dict,
            providers: list[ScriptedProvider]) -> Engine:
    # Each scripted answer streams in 8 chunks 10 ms apart (~0.1 s a call, like a fast
    # model), so drafting an idea (2 rounds) takes measurable time.
    def factory(spec: str) -> ScriptedProvider:
        providers.append(ScriptedProvider("demo", chunk_delay_s=0.01))
        return providers[-1]

    return Engine(lab, settings, headless=True, provider_factory=factory,
                  options=PipelineOptions(template="grokking", auto_approve=True),
                  stages=stages, scheduler=Scheduler(settings, gpu_probe=NoGPU()),
                  executor=None, literature=None)


async def test_first_idea_runs_while_later_ideas_are_drafted(tmp_path):
    lab = tmp_path / "lab"
    settings = prepare_demo_lab(lab).settings
    settings.scheduler.max_llm_tasks = 1  # ideation must not hold it for the whole batch
    runs: list[tuple[int, int]] = []
    """(idea id, generated ideas stored when its run got a slot)."""

    def generated(ctx: StageContext) -> list[str]:
        return [i.name for i in ctx.store.list_ideas() if i.origin == "generated"]

    async def experiment(ctx: StageContext, idea_id: int) -> StageOutcome:
        async with ctx.scheduler.slot(idea_id=idea_id):
            runs.append((idea_id, len(generated(ctx))))
            await asyncio.sleep(0.01)
        return StageOutcome()

    async def after(ctx: StageContext, idea_id: int) -> StageOutcome:
        return StageOutcome()

    stages = {"experiment": experiment, "plot": after, "write": after, "integrity": after,
              "review": after}
    providers: list[ScriptedProvider] = []
    eng = _engine(lab, settings, stages, providers)
    eng.ensure_ideas(3)
    await eng.start()
    await asyncio.wait_for(eng.wait_idle(), 60)
    ideas = {i.name: i for i in eng.store.list_ideas() if i.origin == "generated"}
    assert list(ideas) == DEMO_IDEAS, "the order of a one-call batch"
    first = ideas[DEMO_IDEAS[0]].id
    # The first idea was drafted, checked (real novelty, literature fixture), approved
    # and holding a slot before the last idea of the batch was stored.
    assert runs[0][0] == first
    assert runs[0][1] < len(DEMO_IDEAS), runs
    assert ideas[DEMO_IDEAS[0]].novelty and ideas[DEMO_IDEAS[0]].novelty.get("decided")
    # The cassette's novelty check finds the third idea not novel: auto-vetoed, never run.
    states = {name: eng.outcomes[i.id].state for name, i in ideas.items()}
    assert states == dict(zip(DEMO_IDEAS, ["done", "done", "vetoed"], strict=True)), states
    assert [r[0] for r in runs] == [ideas[n].id for n in DEMO_IDEAS[:2]]
    # Every ideation key was asked once, in order: the stream did not re-ask or skip.
    asked = [key for p in providers for key, _ in p.requests if key.startswith("ideate/")]
    assert asked == [f"ideate/idea-{k}/round-{r}" for k in (1, 2, 3) for r in (1, 2)], asked
    await eng.stop()

    # The batch is complete: a restarted engine drafts nothing more.
    providers.clear()
    eng2 = _engine(lab, settings, stages, providers)
    eng2.ensure_ideas(3)
    await eng2.start()
    await asyncio.wait_for(eng2.wait_idle(), 30)
    assert [i.name for i in eng2.store.list_ideas() if i.origin == "generated"] == DEMO_IDEAS
    assert not [key for p in providers for key, _ in p.requests if key.startswith("ideate/")]
    await eng2.stop()


async def test_llm_permits_go_first_to_work_that_feeds_the_gpus(tmp_path):
    """One LLM permit, held by a paper being written; an idea waiting to be reviewed
    asked first, an idea waiting for its novelty check second: the novelty check (it
    brings an idea to the GPUs) gets the permit first."""
    settings = Settings()
    settings.scheduler.max_llm_tasks = 1
    calls: list[tuple[str, int]] = []
    gate = asyncio.Event()

    def stage(name: str):
        async def fn(ctx: StageContext, idea_id: int) -> StageOutcome:
            calls.append((name, idea_id))
            if name == "write":
                await gate.wait()
            return StageOutcome()
        return fn

    stages = {n: stage(n) for n in ("novelty", "experiment", "plot", "write", "integrity",
                                    "review")}
    eng = Engine(tmp_path, settings, headless=True, stages=stages,
                 options=PipelineOptions(template="grokking", skip_idea_generation=True),
                 scheduler=Scheduler(settings, gpu_probe=NoGPU()), executor=None,
                 literature=None)
    idea = {"Title": "t", "Experiment": "e", "Interestingness": 5, "Feasibility": 5,
            "Novelty": 5}

    def add(name: str, done: tuple[str, ...]) -> int:
        iid = eng.store.add_idea(name, "grokking", {**idea, "Name": name}, status="approved")
        for s in done:
            eng.store.set_stage(iid, s, "done")
        return iid

    writer = add("writer", ("ideate", "novelty", "approval", "experiment", "plot"))
    reviewed = add("reviewed", ("ideate", "novelty", "approval", "experiment", "plot",
                                "write", "integrity"))
    fresh = add("fresh", ("ideate",))
    await eng.start()
    for _ in range(200):
        if calls and eng.pipeline and len(eng.pipeline._llm_permits._queue) == 2:
            break
        await asyncio.sleep(0.01)
    assert calls == [("write", writer)]
    gate.set()
    await asyncio.wait_for(eng.wait_idle(), 10)
    llm = [c for c in calls if c[0] in ("novelty", "write", "integrity", "review")]
    assert llm[:3] == [("write", writer), ("novelty", fresh), ("review", reviewed)], llm
    assert all(o.state == "done" for o in eng.outcomes.values()) and len(eng.outcomes) == 3
    await eng.stop()


async def test_ideation_that_adds_nothing_ends_the_batch(tmp_path):
    """A model that only repeats itself: the batch ends after a bounded number of calls
    that add no idea, short of its target, and the engine goes idle."""
    calls: list[int] = []

    async def ideate(ctx: StageContext, template: str, n: int) -> list[int]:
        calls.append(n)
        return []

    eng = Engine(tmp_path, Settings(), headless=True, stages={"ideate": ideate},
                 options=PipelineOptions(template="grokking"), executor=None,
                 scheduler=Scheduler(Settings(), gpu_probe=NoGPU()), literature=None)
    eng.ensure_ideas(5)
    await eng.start()
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert calls == [1, 1], "one idea per call; two empty calls in a row end the batch"
    assert eng.store.kv_get("pipeline.ideation_target.grokking") == 5
    await eng.stop()


async def test_an_idea_done_with_its_runs_plots_before_a_new_idea_starts_its_runs(tmp_path):
    """Experiment and plot stages share a bound (here 5: one CPU slot, one LLM permit).
    When a place frees up, the idea waiting to plot gets it before the idea waiting to
    start its runs, so papers do not wait for the runs of ideas that came later."""
    settings = Settings()
    settings.scheduler.max_llm_tasks = 1
    calls: list[tuple[str, str]] = []
    gates = {"a": asyncio.Event(), "bc": asyncio.Event()}
    names: dict[int, str] = {}

    def stage(name: str):
        async def fn(ctx: StageContext, idea_id: int) -> StageOutcome:
            who = names[idea_id]
            calls.append((name, who))
            if name == "experiment" and who == "a":
                await gates["a"].wait()
            elif name == "experiment" and who in ("b", "c", "f", "g"):
                await gates["bc"].wait()
            return StageOutcome()
        return fn

    stages = {n: stage(n) for n in ("experiment", "plot", "write", "integrity", "review")}
    eng = Engine(tmp_path, settings, headless=True, stages=stages,
                 options=PipelineOptions(template="grokking", skip_idea_generation=True,
                                         skip_novelty=True),
                 scheduler=Scheduler(settings, gpu_probe=NoGPU()), executor=None,
                 literature=None)
    idea = {"Title": "t", "Experiment": "e", "Interestingness": 5, "Feasibility": 5,
            "Novelty": 5}
    for name in ("a", "b", "c", "f", "g", "d", "e"):
        iid = eng.store.add_idea(name, "grokking", {**idea, "Name": name}, status="approved")
        names[iid] = name
        done = ("ideate", "novelty", "approval", "experiment") if name == "e" else ("ideate",)
        for s in done:
            eng.store.set_stage(iid, s, "done")
    await eng.start()
    for _ in range(200):
        if eng.pipeline and len(eng.pipeline._slot_stage_permits._queue) == 2:
            break
        await asyncio.sleep(0.01)
    assert sorted(calls) == [("experiment", w) for w in ("a", "b", "c", "f", "g")]
    gates["a"].set()
    for _ in range(200):
        if ("experiment", "d") in calls:
            break
        await asyncio.sleep(0.01)
    slot_calls = [c for c in calls if c[0] in ("experiment", "plot")]
    # The place a's runs freed goes to e's plot, though d asked for it first.
    assert slot_calls[5] == ("plot", "e"), slot_calls
    assert slot_calls.index(("plot", "e")) < slot_calls.index(("experiment", "d")), slot_calls
    gates["bc"].set()
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert all(o.state == "done" for o in eng.outcomes.values()) and len(eng.outcomes) == 7
    await eng.stop()
