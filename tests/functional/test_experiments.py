"""The experiment run loop and the plot stage, driven by scripted conversations with real
processes (executor), real git repositories and a real store."""

from __future__ import annotations

import asyncio
import json

import pytest
import support
from aisci.engine.lab.workspace import IdeaWorkspace
from aisci.engine.llm.base import ScriptMissing
from aisci.engine.stages.experiment import DONE_TAG, run_experiments
from aisci.engine.stages.plot import run_plots
from support.labs import IDEA, FlakyProvider, add_idea, make_ctx

DATA = support.DATA
TINY_CASSETTE = DATA / "cassettes" / "tiny_two_runs.json"

def subjects(ws: IdeaWorkspace) -> list[str]:
    return [s for _, s in ws.log()][::-1]


async def test_two_runs_a_failed_attempt_fixed_completion_and_plot(lab):
    provider = FlakyProvider(TINY_CASSETTE)
    ctx = make_ctx(lab, provider)
    sub = ctx.bus.subscribe()
    idea_id = add_idea(ctx)
    out = await run_experiments(ctx, idea_id)
    assert out.ok and out.completed and out.runs == [1, 2], out

    ws = IdeaWorkspace.open(ctx.idea_dir(idea_id))
    hist = subjects(ws)
    assert hist[0].startswith("base: template tiny")
    assert hist[1] == "plan: 2 run(s)"
    assert hist[2:] == ["run_1: learning rate 0.05",
                        "run_2 attempt 1 (failed: exit code 1)",
                        "run_2: learning rate 0.05 with 400 steps",
                        "experiments complete after 2 run(s) (ALL_COMPLETED)"]
    assert ws.finished_runs() == [1, 2] and DONE_TAG in ws.tags()
    assert "+LEARNING_RATE = 0.05" in ws.run_diff(1)
    d2 = ws.run_diff(2)
    assert "-STEPS = 200" in d2 and "+STEPS = 400" in d2 and "four hundred" not in d2
    before, after = ws.run_files(2)["experiment.py"]
    assert "STEPS = 200" in before and "STEPS = 400" in after
    # the failed attempt's edit is kept in history
    failed = ws.repo.commit("run_2~1")
    assert "four hundred" in (failed.tree / "experiment.py").data_stream.read().decode()

    # results, logs and the engine-side environment record are in the run commits
    for i in (0, 1, 2):
        env = json.loads((ws.path / f"run_{i}" / "run_env.json").read_text()) if i else None
        if env:
            assert env["python"] and env["seeds"] == [0, 1] and env["gpus"] == []
    tracked = set(ws.repo.git.ls_files().split())
    assert {"run_1/final_info.json", "run_1/run_env.json", "logs/run_1.log",
            "run_2/final_info.json", "logs/run_2.log", "run_0/final_info.json"} <= tracked
    loss = {i: json.loads((ws.path / f"run_{i}/final_info.json").read_text())
            ["toy"]["means"]["final_loss"] for i in (0, 1, 2)}
    assert loss[2] < loss[1] < loss[0]

    # store: one row per attempt with its reason, metrics and commit
    rows = [r for r in ctx.store.runs(idea_id) if r.kind == "experiment"]
    assert [(r.run, r.attempt, r.status) for r in rows] == [
        ("run_1", 1, "ok"), ("run_2", 1, "failed"), ("run_2", 2, "ok")]
    assert rows[1].reason == "exit code 1"
    assert rows[2].metrics == {"toy": {"final_loss": loss[2]}}
    assert rows[2].commit_sha == ws.repo.commit("run_2").hexsha
    assert rows[0].plan == "learning rate 0.05"

    # the failure was fed back with the stderr tail
    keys = provider.keys
    retry = next(r for k, r in provider.inner.requests if k.endswith("run-2/attempt-2/turn-1"))
    assert "exit code 1" in retry.messages[0].text and "ValueError" in retry.messages[0].text
    run3 = next(r for k, r in provider.inner.requests if k.endswith("run-3/attempt-1/turn-1"))
    assert "final_loss=" in run3.messages[0].text and "better" in run3.messages[0].text
    assert "experiment/faster_lr/plan/turn-1" in keys

    plot = await run_plots(ctx, idea_id)
    assert plot.ok and plot.figures == ["final_loss.png"]
    assert (ws.path / "final_loss.png").stat().st_size > 1000
    assert "final_loss.png" in ws.repo.git.ls_files().split()
    assert {"plot", "plot_notes"} <= ws.tags()
    notes = (ws.path / "notes.txt").read_text()
    assert "## Plan\nRun 1: learning rate 0.05" in notes
    assert "final_loss.png: bar chart" in notes and "## Run 2" in notes
    assert '"run_2": "Learning rate 0.05, 400 steps"' in (ws.path / "plot.py").read_text()
    assert not ws.dirty()

    kinds = {e.kind for e in sub.drain()}
    assert {"StageProgress", "RunStarted", "RunFinished"} <= kinds

    # a second call does nothing new: every step is tagged
    n_calls = len(provider.keys)
    assert (await run_experiments(ctx, idea_id)).runs == [1, 2]
    assert (await run_plots(ctx, idea_id)).ok
    assert len(provider.keys) == n_calls
    ctx.store.close()


async def test_resume_skips_finished_runs_and_restarts_the_interrupted_one(lab):
    provider = FlakyProvider(TINY_CASSETTE, fail_on="run-2/attempt-2")
    ctx = make_ctx(lab, provider)
    idea_id = add_idea(ctx)
    with pytest.raises(ScriptMissing, match="simulated crash"):
        await run_experiments(ctx, idea_id)
    ws = IdeaWorkspace.open(ctx.idea_dir(idea_id))
    assert ws.finished_runs() == [1]
    # as if the engine died mid-edit and mid-run: a dirty tree and a "running" row
    (ws.path / "experiment.py").write_text("half-written edit")
    stale = ctx.store.add_run(idea_id, "run_2", 2, "experiment", status="running", pid=999999)
    ctx.store.close()

    provider2 = FlakyProvider(TINY_CASSETTE)
    ctx2 = make_ctx(lab, provider2)
    out = await run_experiments(ctx2, idea_id)
    assert out.ok and out.runs == [1, 2]
    assert not any("run-1" in k for k in provider2.keys)  # run 1 not redone
    assert any(k.endswith("run-2/attempt-1/turn-1") for k in provider2.keys)  # from the start
    assert ctx2.store.runs(idea_id)[[r.id for r in ctx2.store.runs(idea_id)].index(stale)] \
        .status == "interrupted"
    run1_rows = [r for r in ctx2.store.runs(idea_id) if r.run == "run_1" and r.kind == "experiment"]
    assert len(run1_rows) == 1
    hist = subjects(ws)
    assert "run_2 (interrupted; kept for the record)" in hist
    assert "run_2: restart from run_1" in hist
    assert "+STEPS = 400" in ws.run_diff(2) and "half-written" not in ws.run_diff(2)
    ctx2.store.close()


NO_RESULTS = {"responses": [
    {"match": "experiment/faster_lr/plan/turn-1", "text": "Run 1: print instead of saving"},
    {"match": "experiment/faster_lr/run-1/attempt-*/turn-1", "text": "Editing.",
     "tool_calls": [{"name": "replace_text", "arguments": {
         "path": "experiment.py",
         "old_text": "    with open(os.path.join(args.out_dir, \"final_info.json\"), \"w\") as fh:\n"
                     "        json.dump(info, fh)\n",
         "new_text": "    print(info)\n"}}]},
    {"match": "experiment/faster_lr/run-1/attempt-*/turn-2", "text": "Ready."},
]}


async def test_exit_zero_without_final_info_is_a_failed_attempt(lab, tmp_path):
    cassette = tmp_path / "no_results.json"
    cassette.write_text(json.dumps(NO_RESULTS))
    provider = FlakyProvider(cassette)
    ctx = make_ctx(lab, provider, **{"experiment.max_attempts": 2})
    idea_id = add_idea(ctx)
    out = await run_experiments(ctx, idea_id)
    assert not out.ok and out.runs == []
    assert "run_1 failed after 2 attempt(s)" in out.reason
    assert "exit code 0 but run_1/final_info.json was not written" in out.reason
    rows = [r for r in ctx.store.runs(idea_id) if r.kind == "experiment"]
    assert [(r.attempt, r.status, r.exit_code) for r in rows] == [(1, "failed", 0), (2, "failed", 0)]
    assert all("final_info.json was not written" in (r.reason or "") for r in rows)
    ws = IdeaWorkspace.open(ctx.idea_dir(idea_id))
    assert subjects(ws)[-1].startswith("run_1 attempt 2 (failed: exit code 0 but")
    # the second attempt's prompt told the model why
    second = next(r for k, r in provider.inner.requests if k.endswith("attempt-2/turn-1"))
    assert "final_info.json was not written" in second.messages[0].text
    ctx.store.close()


GROKKING_CASSETTE = DATA / "cassettes" / "grokking_two_runs.json"
GROKKING_IDEA = {"Name": "stronger_weight_decay", "Title": "Stronger weight decay speeds up grokking",
                 "Experiment": "Train with weight decay 1.0 and 2.0 instead of 0.5 and compare "
                               "the step at which validation accuracy exceeds 99%.",
                 "Interestingness": 6, "Feasibility": 9, "Novelty": 4}


@pytest.mark.slow
async def test_grokking_scripted_two_smoke_runs_and_plot(tmp_path, monkeypatch):
    """Acceptance: a scripted conversation edits grokking's experiment.py through tool
    calls, the engine produces the baseline and runs 2 smoke runs and the plot."""
    # A smaller work size than the smoke setting (2 updates, 1 validation batch per
    # dataset; the template's own smoke size runs in tests/unit/test_templates.py): the
    # engine reads it from its environment and passes it to the baseline and every run.
    monkeypatch.setenv("AISCI_WORK_STEPS", "2")
    monkeypatch.setenv("AISCI_WORK_EVAL", "1")
    lab = tmp_path / "lab"
    lab.mkdir()
    provider = FlakyProvider(GROKKING_CASSETTE)
    ctx = make_ctx(lab, provider, **{"experiment.max_runs": 2,
                                     "experiment.run_timeout_s": 900, "plot.timeout_s": 300})
    idea_id = ctx.store.add_idea(GROKKING_IDEA["Name"], "grokking", GROKKING_IDEA,
                                 status="approved")
    out = await run_experiments(ctx, idea_id)
    assert out.ok and out.runs == [1, 2], out
    ws = IdeaWorkspace.open(ctx.idea_dir(idea_id))
    assert subjects(ws)[1:] == ["plan: 2 run(s)", "run_1: weight decay 1.0 on x_plus_y",
                                "run_2: weight decay 2.0 on x_plus_y",
                                "experiments complete: 2 run(s)"]
    d1, d2 = ws.run_diff(1), ws.run_diff(2)
    assert "-WEIGHT_DECAY = 0.5" in d1 and "+WEIGHT_DECAY = 1.0" in d1
    assert "-WEIGHT_DECAY = 1.0" in d2 and "+WEIGHT_DECAY = 2.0" in d2
    for i in (0, 1, 2):
        info = json.loads((ws.path / f"run_{i}" / "final_info.json").read_text())
        assert "final_val_acc" in info["x_plus_y"]["means"]
        assert info["x_plus_y"]["means"]["step_val_acc_99"] == 2  # ran at the chosen size
        assert (ws.path / f"run_{i}" / "run_env.json").is_file()
    baseline = lab / "baselines" / "grokking-smoke-steps2-eval1" / "run_0"
    assert (baseline / "final_info.json").is_file()
    plot = await run_plots(ctx, idea_id)
    assert plot.ok and "val_acc_x_plus_y.png" in plot.figures
    tracked = set(ws.repo.git.ls_files().split())
    assert set(plot.figures) <= tracked
    notes = (ws.path / "notes.txt").read_text()
    assert "Stronger weight decay" in notes and "## Run 2\nWeight decay 2.0" in notes
    assert "## Figures" in notes and not ws.dirty()
    ctx.store.close()


LEAK_CHECK = '''
import argparse, json, os, sys
p = argparse.ArgumentParser()
p.add_argument("--project", required=True)
src = open(os.path.join(p.parse_args().project, "experiment.py")).read()
leak = "LEAK" in src
print(json.dumps({"causal": not leak, "max_future_effect": 0.7 if leak else 0.0}))
sys.exit(1 if leak else 0)
'''

LEAK_CASSETTE = {"responses": [
    {"match": "experiment/faster_lr/plan/turn-1", "text": "Run 1: learning rate 0.05"},
    {"match": "experiment/faster_lr/run-1/attempt-1/turn-1", "text": "Editing.",
     "tool_calls": [{"name": "replace_text", "arguments": {
         "path": "experiment.py", "old_text": "LEARNING_RATE = 0.01",
         "new_text": "LEARNING_RATE = 0.05  # LEAK"}}]},
    {"match": "experiment/faster_lr/run-1/attempt-2/turn-1", "text": "Removing the leak.",
     "tool_calls": [{"name": "replace_text", "arguments": {
         "path": "experiment.py", "old_text": "  # LEAK", "new_text": ""}}]},
    {"match": "experiment/faster_lr/run-*/attempt-*/turn-2", "text": "Ready."},
    {"match": "experiment/faster_lr/run-2/attempt-1/turn-1", "text": "ALL_COMPLETED"},
]}


async def test_check_command_runs_the_pristine_checker_and_fails_a_leaking_attempt(
        lab, tmp_path, monkeypatch):
    import dataclasses

    from aisci.engine.stages import baseline
    from aisci.engine.stages import runtime as stage_runtime
    (lab / "templates" / "tiny" / "leak_check.py").write_text(LEAK_CHECK)
    real = stage_runtime.template_of
    monkeypatch.setattr(stage_runtime, "template_of", lambda ctx, idea: dataclasses.replace(
        real(ctx, idea), check_command=["python", "leak_check.py"]))
    cassette = tmp_path / "leak.json"
    cassette.write_text(json.dumps(LEAK_CASSETTE))
    provider = FlakyProvider(cassette)
    ctx = make_ctx(lab, provider)
    idea_id = add_idea(ctx)
    ws, _ = await baseline.prepare_workspace(ctx, idea_id)
    # the idea's own copy of the checker is irrelevant: the engine runs the template's
    (ws.path / "leak_check.py").write_text("import sys; sys.exit(0)\n")
    ws.commit("a tampered checker in the idea's copy")
    ws.tag("base", force=True)
    out = await run_experiments(ctx, idea_id)
    assert out.ok and out.runs == [1]
    rows = ctx.store.runs(idea_id)
    assert [(r.kind, r.attempt, r.status) for r in rows if r.kind in ("check", "experiment")] == [
        ("check", 1, "failed"), ("check", 2, "ok"), ("experiment", 2, "ok")]
    assert "causality check failed" in rows[[r.kind for r in rows].index("check")].reason
    assert subjects(ws)[3].startswith("run_1 attempt 1 (failed: the causality check failed")
    retry = next(r for k, r in provider.inner.requests if k.endswith("run-1/attempt-2/turn-1"))
    assert '"max_future_effect": 0.7' in retry.messages[0].text
    assert "LEAK" not in (ws.path / "experiment.py").read_text()
    # the fixed code's verdict is kept in the store, for the integrity stage
    from aisci.engine.stages import causality
    kept = causality.current(ctx.store, idea_id, ws.path)
    assert kept is not None and kept["causal"] is True and kept["source"] == "logs/check_1.log"
    assert (ws.path / "leak_check.py").read_text() == "import sys; sys.exit(0)\n"
    ctx.store.close()


PREP = '''
import os
os.makedirs("data", exist_ok=True)
open("data/vocab.json", "w").write("{}")
open("data/train.bin", "wb").write(bytes(1000))
print("prepared")
'''


async def test_prepare_step_runs_once_in_the_baseline_and_feeds_every_idea(lab, monkeypatch):
    import dataclasses

    from aisci.engine.stages import baseline
    from aisci.engine.stages import runtime as stage_runtime
    (lab / "templates" / "tiny" / "prep.py").write_text(PREP)
    real = stage_runtime.template_of
    monkeypatch.setattr(stage_runtime, "template_of", lambda ctx, idea: dataclasses.replace(
        real(ctx, idea), prepare_command=["python", "prep.py"]))
    ctx = make_ctx(lab, FlakyProvider(TINY_CASSETTE))
    first = add_idea(ctx)
    second = ctx.store.add_idea("other_idea", "tiny", {**IDEA, "Name": "other_idea"})
    # two ideas at once: the baseline (and the data preparation) is produced once
    (ws1, _), (ws2, _) = await asyncio.gather(baseline.prepare_workspace(ctx, first),
                                              baseline.prepare_workspace(ctx, second))
    root = lab / "baselines" / "tiny-smoke"
    assert (root / "data" / "train.bin").is_file()
    assert [r.kind for r in ctx.store.runs()] == ["prepare", "baseline"]  # once for the lab
    for ws in (ws1, ws2):
        assert (ws.path / "data" / "train.bin").is_file()
        tracked = ws.repo.git.ls_files().split()
        assert "data/vocab.json" in tracked and "data/train.bin" not in tracked
        assert ws.repo.commit("base").hexsha == ws.head_sha() and not ws.dirty()
        assert json.loads((ws.path / "run_0" / "run_env.json").read_text())["python"]
    again, _ = await baseline.prepare_workspace(ctx, first)
    assert again.head_sha() == ws1.head_sha()
    ctx.store.close()


HANG = {"responses": [
    {"match": "experiment/faster_lr/plan/turn-1", "text": "Run 1: wait for a long time"},
    {"match": "experiment/faster_lr/run-1/attempt-1/turn-1", "text": "Editing.",
     "tool_calls": [{"name": "replace_text", "arguments": {
         "path": "experiment.py", "old_text": "def main() -> None:\n",
         "new_text": "def main() -> None:\n    import time\n    time.sleep(3600)\n"}}]},
    {"match": "experiment/faster_lr/run-1/attempt-1/turn-2", "text": "Ready."},
]}


async def test_a_run_that_outlives_its_limit_fails_with_timed_out(lab, tmp_path):
    cassette = tmp_path / "hang.json"
    cassette.write_text(json.dumps(HANG))
    ctx = make_ctx(lab, FlakyProvider(cassette), **{
        "experiment.max_attempts": 1, "experiment.run_timeout_s": 2})
    idea_id = add_idea(ctx)
    # the baseline is produced with the same (short) limit: install it beforehand
    run0 = lab / "baselines" / "tiny-smoke" / "run_0"
    run0.mkdir(parents=True)
    (run0 / "final_info.json").write_text(json.dumps({"toy": {"means": {"final_loss": 1.0}}}))
    out = await run_experiments(ctx, idea_id)
    assert not out.ok and out.reason == "run_1 failed after 1 attempt(s): timed out after 2 s"
    row = next(r for r in ctx.store.runs(idea_id) if r.kind == "experiment")
    assert row.status == "timeout" and row.reason == "timed out after 2 s"
    assert 2 <= row.duration_s < 10
    ctx.store.close()


def rt(path: str, old: str, new: str) -> dict:
    return {"name": "replace_text", "arguments": {"path": path, "old_text": old, "new_text": new}}


PLOT_RETRIES = {"responses": [
    {"match": "plot/faster_lr/plot/attempt-1/turn-1", "text": "Editing.",
     "tool_calls": [rt("plot.py", "import json\n", "raise SystemExit('boom: no data')\nimport json\n")]},
    {"match": "plot/faster_lr/plot/attempt-2/turn-1", "text": "Fixing.",
     "tool_calls": [rt("plot.py", "raise SystemExit('boom: no data')\n", "import sys\nsys.exit(0)\n")]},
    {"match": "plot/faster_lr/plot/attempt-3/turn-1", "text": "Fixing again.",
     "tool_calls": [rt("plot.py", "import sys\nsys.exit(0)\n", "")]},
    {"match": "plot/faster_lr/plot/attempt-*/turn-2", "text": "Ready."},
    {"match": "plot/faster_lr/plot-notes/turn-1", "text": "Done, nothing to add."},
]}


async def test_plot_failures_are_fed_back_until_figures_exist(lab, tmp_path):
    ctx = make_ctx(lab, FlakyProvider(TINY_CASSETTE))
    idea_id = add_idea(ctx)
    assert (await run_experiments(ctx, idea_id)).ok
    ctx.store.close()
    cassette = tmp_path / "plot.json"
    cassette.write_text(json.dumps(PLOT_RETRIES))
    provider = FlakyProvider(cassette)
    ctx = make_ctx(lab, provider)
    out = await run_plots(ctx, idea_id)
    assert out.ok and out.attempts == 3 and out.figures == ["final_loss.png"]
    ws = IdeaWorkspace.open(ctx.idea_dir(idea_id))
    assert subjects(ws)[-4:] == ["plot attempt 1 (failed: exit code 1)",
                                 "plot attempt 2 (failed: exit code 0 but plot.py wrote no PNG "
                                 "figure)", "plot: 1 figure(s)", "notes: figure descriptions"]
    rows = [r for r in ctx.store.runs(idea_id) if r.kind == "plot"]
    assert [r.status for r in rows] == ["failed", "failed", "ok"]
    second = next(r for k, r in provider.inner.requests if k.endswith("attempt-2/turn-1"))
    assert "exit code 1" in second.messages[0].text and "boom: no data" in second.messages[0].text
    third = next(r for k, r in provider.inner.requests if k.endswith("attempt-3/turn-1"))
    assert "wrote no PNG figure" in third.messages[0].text
    ctx.store.close()


NO_CHANGE = {"responses": [
    {"match": "experiment/faster_lr/plan/turn-1", "text": "Run 1: learning rate 0.05"},
    # attempt 1: a replace whose old text is not in the file, twice (the extra round too)
    {"match": "experiment/faster_lr/run-1/attempt-1/turn-1", "text": "Editing.",
     "tool_calls": [rt("experiment.py", "LEARNING_RATE = 0.001", "LEARNING_RATE = 0.05")]},
    {"match": "experiment/faster_lr/run-1/attempt-1/turn-2", "text": "Ready."},
    {"match": "experiment/faster_lr/run-1/attempt-1/no-change/turn-1", "text": "Again.",
     "tool_calls": [rt("experiment.py", "LEARNING_RATE = 0.002", "LEARNING_RATE = 0.05")]},
    {"match": "experiment/faster_lr/run-1/attempt-1/no-change/turn-2", "text": "Ready."},
    # attempt 2: a refusal, then the extra round makes the edit
    {"match": "experiment/faster_lr/run-1/attempt-2/turn-1", "text": "I can't help with that."},
    {"match": "experiment/faster_lr/run-1/attempt-2/no-change/turn-1", "text": "Editing.",
     "tool_calls": [rt("experiment.py", "LEARNING_RATE = 0.01", "LEARNING_RATE = 0.05")]},
    {"match": "experiment/faster_lr/run-1/attempt-2/no-change/turn-2", "text": "Ready."},
    # run 2: the model never edits anything: no run of the unchanged code
    {"match": "experiment/faster_lr/run-2/attempt-*", "text": ""},
]}


async def test_an_attempt_that_changed_no_code_is_not_run(lab, tmp_path):
    cassette = tmp_path / "no_change.json"
    cassette.write_text(json.dumps(NO_CHANGE))
    provider = FlakyProvider(cassette)
    ctx = make_ctx(lab, provider, **{"experiment.max_attempts": 2, "experiment.max_runs": 2})
    idea_id = add_idea(ctx)
    out = await run_experiments(ctx, idea_id)
    # run 1 landed on attempt 2; run 2 ran nothing and failed within its attempt budget
    assert out.ok and out.runs == [1], out
    assert "run_2 failed after 2 attempt(s): the model made no change to the code: " \
        "no edit tool was called (the reply was empty)" in out.summary
    ws = IdeaWorkspace.open(ctx.idea_dir(idea_id))
    assert "+LEARNING_RATE = 0.05" in ws.run_diff(1)
    rows = [r for r in ctx.store.runs(idea_id) if r.kind == "experiment"]
    assert [(r.run, r.attempt, r.status) for r in rows] == [("run_1", 2, "ok")]
    # the extra round named the tool error; attempt 2 was told why attempt 1 ran nothing
    extra = next(r for k, r in provider.inner.requests
                 if k.endswith("run-1/attempt-1/no-change/turn-1"))
    asked = [m.text for m in extra.messages if m.text.startswith("No file was changed")]
    assert len(asked) == 1 and "old_text" in asked[0] and "run 1 (learning rate 0.05)" in asked[0]
    second = next(r for k, r in provider.inner.requests if k.endswith("run-1/attempt-2/turn-1"))
    assert "the model made no change to the code: " in second.messages[0].text
    assert "experiment.py" in second.messages[0].text
    assert sum(k.endswith("run-2/attempt-2/no-change/turn-1") for k in provider.keys) == 1
    ctx.store.close()
