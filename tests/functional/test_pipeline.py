"""The stage machine with injected stage functions: order, persistence, resume after a
stop, budget pauses, literature decisions, human commands, LLM concurrency bound."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.engine import Engine
from aisci.engine.literature import LiteratureUnavailable
from aisci.engine.llm.client import BudgetExceeded
from aisci.engine.pipeline import PipelineOptions
from aisci.engine.stages.contract import StageOutcome
from aisci.engine.stages.registry import STAGE_NAMES

IDEA = {"Name": "x", "Title": "A title", "Experiment": "Do something useful.",
        "Interestingness": 5, "Feasibility": 5, "Novelty": 5}


class Recorder:
    """Stage functions that record their calls; behaviour per (stage, call#) injectable."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.behaviour: dict[str, object] = {}
        self.active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}

    def stages(self, names=("novelty", "experiment", "plot", "write", "integrity", "review",
                            "improve")):
        def make(name):
            async def fn(ctx, idea_id):
                self.calls.append((name, idea_id))
                self.active[name] = self.active.get(name, 0) + 1
                self.max_active[name] = max(self.max_active.get(name, 0), self.active[name])
                try:
                    b = self.behaviour.get(name)
                    if callable(b):
                        return await b(ctx, idea_id) or StageOutcome()
                    await asyncio.sleep(0.01)
                    return StageOutcome()
                finally:
                    self.active[name] -= 1
            return fn
        return {n: make(n) for n in names}


def add_idea(store, name, status="approved", origin="generated"):
    return store.add_idea(name, "grokking", {**IDEA, "Name": name}, status=status,
                          origin=origin)


def make_engine(lab: Path, rec: Recorder, *, headless=True, settings=None, **opts) -> Engine:
    settings = settings or Settings()
    return Engine(lab, settings, headless=headless, stages=rec.stages(),
                  options=PipelineOptions(template="grokking", skip_idea_generation=True,
                                          **opts),
                  executor=None, scheduler=None, literature=None)


async def test_every_stage_runs_in_order_and_is_persisted(tmp_path):
    rec = Recorder()
    eng = make_engine(tmp_path, rec)
    a = add_idea(eng.store, "idea_a")
    await eng.start()
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert [s for s, _ in rec.calls] == ["novelty", "experiment", "plot", "write",
                                         "integrity", "review"]
    states = {k: v["state"] for k, v in eng.store.stages(a).items()}
    assert states == {"ideate": "done", "novelty": "done", "approval": "done",
                      "experiment": "done", "plot": "done", "write": "done",
                      "integrity": "done", "review": "done", "improve": "skipped"}
    assert eng.outcomes[a].state == "done"
    kinds = [e["kind"] for e in eng.store.events()]
    assert kinds.count("StageStarted") == 6 and kinds.count("StageFinished") >= 6
    snap = eng.snapshot()
    assert snap.idea(a).finished and snap.idea(a).stages["review"].state == "done"
    await eng.stop()


async def test_stop_mid_stage_then_restart_resumes_at_that_stage(tmp_path):
    rec = Recorder()
    gate = asyncio.Event()

    async def slow_write(ctx, idea_id):
        await gate.wait()

    rec.behaviour["write"] = slow_write
    eng = make_engine(tmp_path, rec)
    a = add_idea(eng.store, "idea_a")
    await eng.start()
    for _ in range(200):
        if eng.store.stages(a).get("write", {}).get("state") == "running":
            break
        await asyncio.sleep(0.01)
    await eng.stop()
    assert Engine  # the lab lock is released by stop()
    rec2 = Recorder()
    eng2 = make_engine(tmp_path, rec2)
    st = eng2.store.stages(a)
    assert st["write"]["state"] == "paused" and "interrupted" in st["write"]["detail"]["reason"]
    assert st["plot"]["state"] == "done"
    await eng2.start()
    await asyncio.wait_for(eng2.wait_idle(), 10)
    # Finished stages are not re-run; the interrupted one is.
    assert [s for s, _ in rec2.calls] == ["write", "integrity", "review"]
    assert eng2.store.stages(a)["write"]["attempts"] == 2
    await eng2.stop()


async def test_failed_stage_stops_idea_and_is_retried_on_command(tmp_path):
    rec = Recorder()
    fails = {"n": 0}

    async def flaky(ctx, idea_id):
        fails["n"] += 1
        if fails["n"] == 1:
            raise RuntimeError("plot.py crashed\nTraceback ...")

    rec.behaviour["plot"] = flaky
    eng = make_engine(tmp_path, rec, headless=False)
    a = add_idea(eng.store, "idea_a")
    b = add_idea(eng.store, "idea_b")
    await eng.start()
    await asyncio.wait_for(eng.wait_idle(), 10)
    failed = [i for i in (a, b) if eng.outcomes[i].state == "failed"]
    assert len(failed) == 1
    bad = failed[0]
    st = eng.store.stages(bad)["plot"]
    assert st["state"] == "failed" and st["detail"]["reason"] == "RuntimeError: plot.py crashed"
    assert "write" not in eng.store.stages(bad)
    eng.retry_stage(bad, "plot")
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert eng.outcomes[bad].state == "done"
    assert eng.store.stages(bad)["plot"]["state"] == "done"
    await eng.stop()


async def test_budget_pauses_stage_headless_stops_interactive_waits_for_raise(tmp_path):
    settings = Settings()
    settings.budget.lab_usd = 1.0
    rec = Recorder()
    calls = {"n": 0}

    async def costly(ctx, idea_id):
        calls["n"] += 1
        if ctx.settings.budget.lab_usd < 5:
            raise BudgetExceeded("lab", None, 1.0, ctx.settings.budget.lab_usd)

    rec.behaviour["write"] = costly
    eng = make_engine(tmp_path, rec, headless=True, settings=settings)
    a = add_idea(eng.store, "idea_a")
    sub = eng.bus.subscribe(kinds=(ev.StagePaused,))
    await eng.start()
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert eng.budget_stopped and eng.outcomes[a].state == "budget"
    st = eng.store.stages(a)["write"]
    assert st["state"] == "paused" and st["detail"]["budget"] == "lab"
    assert any(isinstance(e, ev.StagePaused) and e.stage == "write" for e in sub.drain())
    await eng.stop()

    # Interactive: the stage waits; raising the budget continues it.
    rec2 = Recorder()
    rec2.behaviour["write"] = costly
    eng2 = make_engine(tmp_path, rec2, headless=False, settings=settings)
    await eng2.start()
    for _ in range(200):
        if eng2.outcomes.get(a) and eng2.outcomes[a].state == "budget":
            break
        await asyncio.sleep(0.01)
    assert eng2.outcomes[a].state == "budget"
    eng2.raise_budget("lab", 10.0)
    await asyncio.wait_for(eng2.wait_idle(), 10)
    assert eng2.outcomes[a].state == "done"
    assert eng2.store.kv_get("pipeline.budget_override") == {"lab": 10.0}
    await eng2.stop()


async def test_literature_unavailable_pauses_novelty_until_decision(tmp_path):
    rec = Recorder()

    async def down(ctx, idea_id):
        raise LiteratureUnavailable("semantic_scholar and openalex unreachable")

    rec.behaviour["novelty"] = down
    eng = make_engine(tmp_path, rec, headless=False)
    a = add_idea(eng.store, "idea_a")
    await eng.start()
    for _ in range(300):
        if eng.store.stages(a).get("novelty", {}).get("state") == "paused":
            break
        await asyncio.sleep(0.01)
    st = eng.store.stages(a)["novelty"]
    assert st["state"] == "paused" and st["detail"]["reason"] == "literature unavailable"
    eng.literature_decision(a, "skip")
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert eng.store.stages(a)["novelty"]["state"] == "skipped"
    assert eng.outcomes[a].state == "done"
    await eng.stop()

    # Headless: the idea stops cleanly with a message.
    lab2 = tmp_path / "lab2"
    eng2 = make_engine(lab2, rec, headless=True)
    b = add_idea(eng2.store, "idea_b")
    sub = eng2.bus.subscribe(kinds=(ev.Notice,))
    await eng2.start()
    await asyncio.wait_for(eng2.wait_idle(), 10)
    assert eng2.outcomes[b].state == "literature"
    assert any("literature unavailable" in n.message for n in sub.drain())
    await eng2.stop()


async def test_llm_stages_bounded_by_max_llm_tasks(tmp_path):
    settings = Settings()
    settings.scheduler.max_llm_tasks = 2
    rec = Recorder()

    async def think(ctx, idea_id):
        await asyncio.sleep(0.05)

    rec.behaviour["review"] = think
    eng = make_engine(tmp_path, rec, settings=settings, skip_novelty=True)
    for i in range(5):
        add_idea(eng.store, f"idea_{i}")
    await eng.start()
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert all(o.state == "done" for o in eng.outcomes.values()) and len(eng.outcomes) == 5
    assert rec.max_active["review"] == 2
    assert not [c for c in rec.calls if c[0] == "novelty"]
    await eng.stop()


async def test_skip_a_running_stage_and_pause_an_idea(tmp_path):
    rec = Recorder()
    gate = asyncio.Event()

    async def forever(ctx, idea_id):
        await gate.wait()

    rec.behaviour["experiment"] = forever
    eng = make_engine(tmp_path, rec, headless=False)
    a = add_idea(eng.store, "idea_a")
    await eng.start()
    for _ in range(300):
        if eng.store.stages(a).get("experiment", {}).get("state") == "running":
            break
        await asyncio.sleep(0.01)
    eng.pause_idea(a)
    eng.skip_stage(a, "experiment")
    for _ in range(300):
        if eng.outcomes.get(a) and eng.outcomes[a].state == "paused":
            break
        await asyncio.sleep(0.01)
    assert eng.store.stages(a)["experiment"]["state"] == "skipped"
    assert eng.outcomes[a].state == "paused" and eng.outcomes[a].stage == "plot"
    assert "plot" not in {s for s, _ in rec.calls}
    eng.resume_idea(a)
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert eng.outcomes[a].state == "done"
    await eng.stop()


async def test_ideation_batch_is_persisted_and_new_ideas_start_at_once(tmp_path):
    rec = Recorder()
    stages = rec.stages()
    made: list[int] = []

    async def ideate(ctx, template, n):
        ids = []
        for _ in range(n):
            k = len([i for i in ctx.store.list_ideas() if i.origin == "generated"]) + 1
            idea_id = ctx.store.add_idea(f"gen_{k}", template, {**IDEA, "Name": f"gen_{k}"},
                                         status="approved")
            ctx.bus.publish(ev.IdeaAdded(idea_id=idea_id, name=f"gen_{k}", title="t"))
            ids.append(idea_id)
            made.append(idea_id)
            await asyncio.sleep(0.05)
        return ids

    stages["ideate"] = ideate
    eng = Engine(tmp_path, Settings(), headless=True, stages=stages,
                 options=PipelineOptions(template="grokking"), executor=None,
                 scheduler=None, literature=None)
    eng.generate_ideas(3)
    await eng.start()
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert len(made) == 3
    assert eng.store.kv_get("pipeline.ideation_target.grokking") == 3
    assert all(eng.outcomes[i].state == "done" for i in made)
    # The first idea started its stages before ideation finished.
    first_novelty = next(i for i, c in enumerate(rec.calls) if c == ("novelty", made[0]))
    assert first_novelty < len(rec.calls) - 1
    await eng.stop()
    # A restart does not generate more: the batch is complete.
    eng2 = Engine(tmp_path, Settings(), headless=True, stages=stages,
                  options=PipelineOptions(template="grokking"), executor=None,
                  scheduler=None, literature=None)
    await eng2.start()
    await asyncio.wait_for(eng2.wait_idle(), 10)
    assert len(made) == 3
    await eng2.stop()


def test_stage_names_match_contract():
    assert STAGE_NAMES == ("ideate", "novelty", "approval", "experiment", "plot", "write",
                      "integrity", "review", "improve")


@pytest.mark.parametrize("bad", ["nope"])
async def test_unknown_stage_is_a_clear_error(tmp_path, bad):
    rec = Recorder()
    eng = make_engine(tmp_path, rec)
    a = add_idea(eng.store, "idea_a")
    await eng.start()
    from aisci.engine.engine import EngineError
    with pytest.raises(EngineError, match="unknown stage 'nope'"):
        eng.retry_stage(a, bad)
    with pytest.raises(EngineError, match="no idea with id 999"):
        eng.pause_idea(999)
    await eng.stop()


async def test_interactive_approval_waits_and_wait_idle_returns(tmp_path):
    rec = Recorder()
    eng = make_engine(tmp_path, rec, headless=False, skip_novelty=True)
    a = add_idea(eng.store, "idea_a", status="checked")
    b = add_idea(eng.store, "idea_b", status="checked")
    await eng.start()
    # Both ideas wait for a human: the engine is idle, not stuck.
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert eng.outcomes[a].state == "waiting"
    assert eng.store.stages(a)["approval"]["state"] == "waiting"
    eng.approve(a)
    eng.veto(b, "too close to Omnigrok")
    await asyncio.wait_for(eng.wait_idle(), 10)
    assert eng.outcomes[a].state == "done" and eng.outcomes[b].state == "vetoed"
    assert [s for s, i in rec.calls if i == b] == []
    hist = eng.store.idea_history(b)
    assert hist[-1]["source"] == "human" and "Omnigrok" in json.dumps(hist[-1]["detail"])
    await eng.stop()


async def test_stage_results_are_read_through_the_outcome_contract(tmp_path):
    rec = Recorder()
    eng = make_engine(tmp_path, rec)
    a = add_idea(eng.store, "idea_a")
    b = add_idea(eng.store, "idea_b")

    async def plot(ctx, idea_id):
        if idea_id == a:
            return StageOutcome(ok=False, reason="plot.py wrote no figure")
        return ["figure.png"]  # not a StageOutcome: a failed stage, not a silent success

    async def experiment(ctx, idea_id):
        return StageOutcome(summary="2 run(s) finished")

    rec.behaviour.update(plot=plot, experiment=experiment)
    await eng.start()
    await asyncio.wait_for(eng.wait_idle(), 10)
    st = eng.store.stages(a)
    assert st["experiment"]["state"] == "done"
    assert st["experiment"]["detail"]["summary"] == "2 run(s) finished"
    assert st["plot"]["state"] == "failed"
    assert st["plot"]["detail"]["reason"] == "plot.py wrote no figure"
    assert eng.store.stages(b)["plot"]["detail"]["reason"] == (
        "the plot stage returned list, not a StageOutcome")
    assert eng.outcomes[a].state == eng.outcomes[b].state == "failed"
    await eng.stop()
