"""An attempt whose machine went away (a cluster node lost mid-run) is not the code's
fault: the next attempt runs the same commit again, without asking the model for a new
edit, within the attempt budget."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from aisci.engine.lab.workspace import IdeaWorkspace
from aisci.engine.run.executor import NODE_LOST, Executor, RunResult, RunSpec
from aisci.engine.stages.experiment import run_experiments
from support.labs import FlakyProvider, add_idea, make_ctx

ONE_RUN = {"responses": [
    {"match": "experiment/faster_lr/plan/turn-1", "text": "Run 1: learning rate 0.05"},
    {"match": "experiment/faster_lr/run-1/attempt-1/turn-1", "text": "Editing.",
     "tool_calls": [{"name": "replace_text", "arguments": {
         "path": "experiment.py", "old_text": "LEARNING_RATE = 0.01",
         "new_text": "LEARNING_RATE = 0.05"}}]},
    {"match": "experiment/faster_lr/run-1/attempt-1/turn-2", "text": "Ready."},
    # no answer for attempt 2: asking the model again would fail this test
]}


class LosesTheFirstNode(Executor):
    """The first experiment attempt 'runs' on a node that leaves the cluster."""

    lost = 0

    async def run(self, spec: RunSpec, **kwargs: Any) -> RunResult:
        if spec.kind == "experiment" and not self.lost:
            self.lost += 1
            real = await super().run(dataclasses.replace(spec, argv=["true"]), **kwargs)
            return dataclasses.replace(real, status="failed", exit_code=None,
                                       reason=f"{NODE_LOST}: node worker-2 left the cluster")
        return await super().run(spec, **kwargs)


async def test_a_lost_node_reruns_the_same_code(lab: Path, tmp_path: Path) -> None:
    cassette = tmp_path / "one_run.json"
    cassette.write_text(json.dumps(ONE_RUN))
    ctx = make_ctx(lab, FlakyProvider(cassette), **{"experiment.max_runs": 1})
    ctx.executor = LosesTheFirstNode(ctx.settings, ctx.bus, ctx.store)
    idea_id = add_idea(ctx)
    out = await run_experiments(ctx, idea_id)
    assert out.ok and out.runs == [1], out
    ws = IdeaWorkspace.open(ctx.idea_dir(idea_id))
    subjects = [s for _, s in ws.log()][::-1]
    assert any(s.startswith("run_1 attempt 1 (failed: node lost") for s in subjects)
    assert "+LEARNING_RATE = 0.05" in ws.run_diff(1)  # the edit of attempt 1, run again
    rows = [r for r in ctx.store.runs(idea_id) if r.kind == "experiment"]
    assert [r.attempt for r in rows] == [1, 2] and rows[-1].status == "ok"
    ctx.store.close()
