"""The tool-call chaos classes on the real stage code: the agent tool loop with a stage's
edit tools (``bad_old_text``, ``forbidden_file``; ``latex`` on the write stage with real
TeX is in test_writeup.py). Each either recovers or ends with a clear one-line reason, and
no file the stage may not touch changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aisci.engine.agent.edit_tools import EditTools
from aisci.engine.agent.tool_loop import ToolLoopResult, run_tool_loop
from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.llm.base import Message
from aisci.engine.llm.chaos import Chaos
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.scripted import ScriptedProvider

CODE = "import json\n\nlr = 0.001\nsteps = 100\nprint(json.dumps({'lr': lr}))\n"
STEP = "i/run-1/attempt-1"


def _tree(root: Path) -> dict[str, str]:
    """Every file under root with its content hash (the git folder included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _lab(tmp_path: Path) -> tuple[Path, Path]:
    lab = tmp_path / "lab"
    idea = lab / "ideas" / "1-i"
    (idea / "run_0").mkdir(parents=True)
    (idea / ".git").mkdir()
    (idea / ".git" / "config").write_text("[core]\n")
    (idea / "run_0" / "final_info.json").write_text('{"toy": {"means": {"loss": 0.5}}}')
    (idea / "experiment.py").write_text(CODE)
    (idea / "plot.py").write_text("print('plot')\n")
    (lab / "aisci.toml").write_text("[models]\ndefault = 'scripted:demo'\n")
    return lab, idea


def _edit(path: str, old: str, new: str) -> dict[str, object]:
    return {"name": "replace_text", "arguments": {"path": path, "old_text": old,
                                                  "new_text": new}}


async def _loop(tmp_path: Path, idea: Path, turns: list[dict[str, object]],
                chaos: Chaos) -> tuple[ToolLoopResult, ScriptedProvider]:
    cassette = tmp_path / "cassette.json"
    cassette.write_text(json.dumps({"responses": [
        {"match": f"experiment/{STEP}/turn-{k}", **t} for k, t in enumerate(turns, 1)]}))
    provider = ScriptedProvider(str(cassette), chaos=chaos)
    settings = Settings.model_validate({"models": {"default": f"scripted:{cassette}"}})
    client = LLMClient(settings, None, EventBus(), provider_factory=lambda spec: provider)
    result = await run_tool_loop(
        client.for_stage("experiment", 1), system="edit the code",
        messages=[Message(role="user", text="raise the learning rate")],
        tools=EditTools.for_stage(idea, "experiment"), step=STEP, max_turns=4)
    return result, provider


def _tool_errors(result: ToolLoopResult) -> list[str]:
    return [r.content for m in result.messages for r in m.tool_results if r.is_error]


async def test_old_text_not_in_the_file_is_refused_precisely_and_the_retry_lands(tmp_path):
    lab, idea = _lab(tmp_path)
    before = _tree(lab)
    fix = _edit("experiment.py", "lr = 0.001", "lr = 0.01")
    # Seed 1 at rate 0.5 perturbs turn 1 and leaves turn 2 (the model trying again) intact.
    result, provider = await _loop(tmp_path, idea, [
        {"tool_calls": [fix]}, {"tool_calls": [fix]}, {"text": "Done."}],
        Chaos("bad_old_text", seed=1, rate=0.5))
    errors = _tool_errors(result)
    assert len(errors) == 1 and "\n" not in errors[0].strip()
    assert errors[0].startswith("error: experiment.py: old_text not found")
    # The error went back to the model in the next request.
    sent = result.messages[2].tool_results[0]  # user, assistant turn 1, its results
    assert sent.is_error and "old_text not found" in sent.content
    assert [k.rsplit("/", 1)[1] for k, _ in provider.requests] == ["turn-1", "turn-2",
                                                                    "turn-3"]
    assert not result.exhausted and result.changed == {"experiment.py"}
    assert (idea / "experiment.py").read_text() == CODE.replace("0.001", "0.01")
    after = _tree(lab)
    assert {k for k in after if after[k] != before.get(k)} == {"ideas/1-i/experiment.py"}


async def test_old_text_never_matching_ends_the_loop_with_the_file_untouched(tmp_path):
    lab, idea = _lab(tmp_path)
    before = _tree(lab)
    fix = _edit("experiment.py", "lr = 0.001", "lr = 0.01")
    result, _ = await _loop(tmp_path, idea, [{"tool_calls": [fix]}] * 4,
                            Chaos("bad_old_text", seed=0, rate=1.0))
    errors = _tool_errors(result)
    assert result.exhausted and result.turns == 4 and len(errors) == 4
    assert all(e.startswith("error: experiment.py: old_text not found") for e in errors)
    assert result.changed == set() and _tree(lab) == before


async def test_edits_to_forbidden_files_are_refused_and_change_nothing(tmp_path):
    lab, idea = _lab(tmp_path)
    before = _tree(lab)
    outside = tmp_path / "passwd"
    outside.write_text("root:x:0:0\n")
    calls = [_edit("experiment.py", "lr = 0.001", "lr = 0.01"),
             _edit("experiment.py", "steps = 100", "steps = 200"),
             {"name": "create_file", "arguments": {"path": "experiment.py",
                                                    "content": "x", "overwrite": True}}]
    results = []
    for seed in range(6):  # every forbidden target the chaos class draws
        result, _ = await _loop(tmp_path, idea, [{"tool_calls": calls}, {"text": "Done."}],
                                Chaos("forbidden_file", seed=seed, rate=1.0))
        results.append(result)
    errors = [e for r in results for e in _tool_errors(r)]
    assert len(errors) == 6 * len(calls)
    assert all(e.startswith("error: ") and "\n" not in e.strip() for e in errors)
    assert any("without '..'" in e for e in errors)
    assert any("managed by the engine" in e for e in errors)
    assert any("run_0/final_info.json: this stage may not modify it" in e for e in errors)
    assert all(not r.changed and not r.exhausted for r in results)
    assert _tree(lab) == before and outside.read_text() == "root:x:0:0\n"
