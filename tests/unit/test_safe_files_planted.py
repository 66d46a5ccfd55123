"""What a run plants in place of files the engine reads or writes afterwards: JSON nested
past the parser's recursion, a folder or a FIFO where the engine writes run_env.json.
Every reader gets the documented one-line ValueError; the experiment stage writes its own
file anyway or fails the attempt, never the stage (scripted model, real executor, git)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aisci.engine.lab import safe_files as sf
from aisci.engine.lab.workspace import read_final_info
from aisci.engine.paper.integrity_checks import load_findings
from aisci.engine.paper.run_facts import load_run_facts
from aisci.engine.stages.experiment import run_experiments
from aisci.tui import lab_data
from support.labs import FlakyProvider, add_idea, make_ctx

DEEP = sf.MAX_JSON_DEPTH


def _nest(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize("text", [
    _nest(DEEP + 1),
    _nest(100_000),  # far past Python's recursion limit, 200 KB
    '{"a": ' * 50_000 + "1" + "}" * 50_000,
    json.dumps({"toy": {"means": {"x": 1}, "extra": json.loads(_nest(DEEP))}}),
], ids=["one-past", "array-bomb", "object-bomb", "deep-inside-valid-results"])
def test_deeply_nested_json_is_a_one_line_value_error(tmp_path, text):
    (tmp_path / "run_1").mkdir()
    (tmp_path / "run_1" / "final_info.json").write_text(text)
    with pytest.raises(ValueError) as info:
        sf.read_json(tmp_path, "run_1/final_info.json")
    assert str(info.value) == (f"run_1/final_info.json is JSON nested more than {DEEP} "
                               "levels deep: refused")
    with pytest.raises(ValueError, match="nested more than"):
        read_final_info(tmp_path / "run_1")
    # the readers documented to return None / skip an invalid file do so
    assert lab_data.read_json(tmp_path / "run_1" / "final_info.json", tmp_path) is None
    assert [r.final_info for r in load_run_facts(tmp_path).runs] == [None]


def test_depth_counts_brackets_outside_strings_only(tmp_path):
    brackets = "[{" * 5000
    ok = {"s": brackets, "q": 'a\\"[[', "n": [_nest(3)] * 1000, "d": json.loads(_nest(DEEP - 1))}
    (tmp_path / "ok.json").write_text(json.dumps(ok))
    assert sf.read_json(tmp_path, "ok.json") == ok
    (tmp_path / "at.json").write_text(_nest(DEEP))
    assert sf.read_json(tmp_path, "at.json") is not None
    (tmp_path / "scalar.json").write_text('"[[["')
    assert sf.read_json(tmp_path, "scalar.json") == "[[["


def test_a_bomb_that_is_also_invalid_json_is_refused_quickly(tmp_path):
    """Unterminated strings after many brackets: refused as invalid JSON or as too deep,
    never a RecursionError nor a slow string scan."""
    (tmp_path / "a.json").write_text("[" * 200 + '"' + '\\"' * 200_000)
    with pytest.raises(ValueError):
        sf.read_json(tmp_path, "a.json")
    (tmp_path / "integrity.json").write_text('{"findings": ' + _nest(50_000) + "}")
    assert load_findings(tmp_path) == []


# -- the experiment stage ---------------------------------------------------------------

_HEADER = ("import argparse, json, os, sys\n"
           "p = argparse.ArgumentParser(); p.add_argument('--out_dir'); a = p.parse_args()\n"
           "os.makedirs(a.out_dir, exist_ok=True)\n")
_GOOD = ("json.dump({'toy': {'means': {'final_loss': 0.5}}}, "
         "open(os.path.join(a.out_dir, 'final_info.json'), 'w'))\n")


def _cassette(tmp_path: Path, scripts: list[str]) -> Path:
    """Plan one run; attempt a of run 1 writes ``scripts[a - 1]`` as experiment.py."""
    responses: list[dict] = [{"match": "experiment/faster_lr/plan/turn-1",
                              "text": "Plan:\nRun 1: a hostile experiment"}]
    for a, script in enumerate(scripts, 1):
        step = f"experiment/faster_lr/run-1/attempt-{a}"
        responses.append({"match": f"{step}/turn-1", "text": "Editing.", "tool_calls": [
            {"name": "create_file", "arguments": {
                "path": "experiment.py", "content": script, "overwrite": True}}]})
        responses.append({"match": f"{step}/turn-2", "text": "Ready."})
    path = tmp_path / "planted.json"
    path.write_text(json.dumps({"responses": responses}))
    return path


async def test_a_planted_run_env_folder_is_replaced_by_the_engines_file(lab, tmp_path):
    """A FIFO or a symlink there is replaced by the rename itself (test_safe_files)."""
    plant = "os.makedirs(os.path.join(a.out_dir, 'run_env.json', 'inside'))\n"
    provider = FlakyProvider(_cassette(tmp_path, [_HEADER + _GOOD + plant]))
    ctx = make_ctx(lab, provider, **{"experiment.max_runs": 1, "experiment.max_attempts": 1})
    idea_id = add_idea(ctx)
    out = await run_experiments(ctx, idea_id)
    assert out.ok and out.runs == [1], out
    env_file = ctx.idea_dir(idea_id) / "run_1" / "run_env.json"
    assert sf.kind(env_file.parent, env_file.name) == "file"
    assert json.loads(env_file.read_text())["python"]
    ctx.store.close()


async def test_a_deeply_nested_final_info_is_a_failed_attempt_with_feedback(lab, tmp_path):
    bomb = _HEADER + ("open(os.path.join(a.out_dir, 'final_info.json'), 'w')"
                      ".write('[' * 100000 + ']' * 100000)\n")
    provider = FlakyProvider(_cassette(tmp_path, [bomb, _HEADER + _GOOD]))
    ctx = make_ctx(lab, provider, **{"experiment.max_runs": 1, "experiment.max_attempts": 2})
    idea_id = add_idea(ctx)
    out = await run_experiments(ctx, idea_id)
    assert out.ok and out.runs == [1], out
    reason = (f"exit code 0 but run_1/final_info.json is JSON nested more than {DEEP} "
              "levels deep: refused")
    rows = [r for r in ctx.store.runs(idea_id) if r.kind == "experiment"]
    assert [(r.status, r.reason) for r in rows][0] == ("failed", reason)
    second = next(r for k, r in provider.inner.requests if k.endswith("attempt-2/turn-1"))
    assert reason in second.messages[0].text  # the model was told why
    ctx.store.close()
