"""Idea generation against a recording fake LLM: archive feedback (earlier ideas, veto
reasons, review scores), reflection with early stop, duplicate rejection, resume keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus, IdeaAdded, Notice
from aisci.engine.lab.idea_schema import Idea
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.base import LLMRequest, LLMResponse, Usage
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.stages import approval as triage
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.ideate import duplicate_reason, generate_ideas, rejected_count

TOPICS = [
    ("adaptive_weight_decay", "Adaptive weight decay schedules accelerate grokking",
     "Scale weight decay with the ratio of train to validation loss each step."),
    ("curriculum_operand_order", "Curriculum over operand magnitude in modular arithmetic",
     "Present small operands first and widen the range as training accuracy rises."),
    ("embedding_fourier_probe", "Probing Fourier structure of token embeddings during training",
     "Log the discrete Fourier spectrum of the embedding matrix at every evaluation."),
    ("label_noise_grokking", "Grokking under symmetric label noise",
     "Corrupt a fixed fraction of training labels and measure delay of generalization."),
    ("width_depth_tradeoff", "Width versus depth when learning permutation groups",
     "Sweep model width and layer count on the S5 permutation task at equal parameters."),
    ("dropout_attention_maps", "Attention dropout as an implicit regulariser for grokking",
     "Apply dropout to attention probabilities and compare steps to 99 percent accuracy."),
]


def idea_json(i: int, suffix: str = "") -> str:
    name, title, exp = TOPICS[i]
    return json.dumps({"Name": name + suffix, "Title": title, "Experiment": exp,
                       "Interestingness": 6, "Feasibility": 8, "Novelty": 5})


class RecordingProvider:
    """Answers ``ideate`` steps from a plan: attempt k -> topic index (None = duplicate of
    topic 0); round 1 drafts ``<name>_v1``, round 2 finalises (and says done for odd k)."""

    provider = "fake"
    model = "fake-model"

    def __init__(self) -> None:
        self.requests: list[tuple[str, LLMRequest]] = []
        self.plan: dict[int, int] = {}
        self.malformed: set[str] = set()

    async def complete(self, request: LLMRequest, stage: str, on_text=None) -> LLMResponse:
        self.requests.append((stage, request))
        step = request.step
        parts = step.split("/")
        k = int(parts[0].split("-")[1])
        rnd = int(parts[1].split("-")[1])
        topic = self.plan[k]
        if step in self.malformed:
            text = "THOUGHT: oops\n```json\n{\"Name\": \"x\", \"Title\": \n```"
        elif rnd == 1:
            text = f"THOUGHT: first draft\n\nNEW IDEA JSON:\n```json\n{idea_json(topic, '_v1')}\n```"
        else:
            done = " I am done" if k % 2 == 1 and rnd >= 2 else ""
            text = f"THOUGHT: refined.{done}\n\nNEW IDEA JSON:\n```json\n{idea_json(topic)}\n```"
        return LLMResponse(text=text, tool_calls=[], usage=Usage(100, 50), stop_reason="end_turn",
                           provider=self.provider, model=self.model)

    async def aclose(self) -> None:
        pass

    def first_prompt(self, k: int) -> str:
        for stage, req in self.requests:
            if req.step == f"idea-{k}/round-1":
                return req.messages[0].text
        raise AssertionError(f"idea-{k} never asked")

    def steps(self) -> list[str]:
        return [r.step for _, r in self.requests]


def make_template(root: Path) -> Path:
    t = root / "toy_grokking"
    t.mkdir()
    (t / "experiment.py").write_text("import argparse\n# TOY_TEMPLATE_CODE_MARKER\n")
    (t / "prompt.json").write_text(json.dumps({
        "system": "You are a grokking researcher.",
        "task_description": "TOY_TASK: train a transformer on modular arithmetic."}))
    seeds = [
        {"Name": "batch_size_grokking", "Title": "Batch size and the speed of grokking",
         "Experiment": "Sweep the batch size and record steps to 99 percent val accuracy.",
         "Interestingness": 6, "Feasibility": 9, "Novelty": 4},
        {"Name": "huge_model_sweep", "Title": "Scaling laws of grokking across billion models",
         "Experiment": "Train models from 1M to 10B parameters on every modular task.",
         "Interestingness": 8, "Feasibility": 1, "Novelty": 6},
    ]
    (t / "seed_ideas.json").write_text(json.dumps(seeds))
    return t


@pytest.fixture
def lab(tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    store = LabStore(lab)
    provider = RecordingProvider()
    settings = Settings()
    settings.models.default = "fake:fake-model"
    bus = EventBus()
    ctx = StageContext(lab=lab, settings=settings, store=store, bus=bus,
                       llm=LLMClient(settings, store, bus, provider_factory=lambda s: provider),
                       prompts=PromptLibrary(lab))
    yield ctx, provider, make_template(tmp_path)
    store.close()


async def test_five_ideas_with_reflection_feedback_and_duplicate(lab):
    ctx, provider, template = lab
    sub = ctx.bus.subscribe(kinds=(IdeaAdded, Notice))
    provider.plan = {1: 0, 2: 1, 3: 2, 4: 0, 5: 3, 6: 4}  # attempt 4 repeats topic 0

    first = await generate_ideas(ctx, str(template), 2)
    assert len(first) == 2
    seeds = [i for i in ctx.store.list_ideas() if i.origin == "seed"]
    assert [s.name for s in seeds] == ["batch_size_grokking", "huge_model_sweep"]
    # The human vetoes a seed and a generated idea; a finished idea has a review.
    triage.veto(ctx.store, ctx.bus, seeds[1].id, "needs a GPU cluster we do not have")
    triage.veto(ctx.store, ctx.bus, first[1], "boring: only reorders the data")
    done = ctx.store.get_idea(first[0])
    review_dir = ctx.idea_dir(done)
    review_dir.mkdir(parents=True)
    (review_dir / "review.json").write_text(json.dumps({"Overall": 3, "Decision": "Reject"}))

    second = await generate_ideas(ctx, str(template), 3)
    assert len(second) == 3
    generated = [i for i in ctx.store.list_ideas() if i.origin == "generated"]
    assert [g.name for g in generated] == ["adaptive_weight_decay", "curriculum_operand_order",
                                          "embedding_fourier_probe", "label_noise_grokking",
                                          "width_depth_tradeoff"]
    assert all(g.template == "toy_grokking" and g.status == "proposed" for g in generated[2:])

    # The prompt of idea k contains ideas 1..k-1 (seeds first) and veto reasons.
    order = [s.name for s in seeds] + [g.name for g in generated]
    attempts_to_idea = {1: 0, 2: 1, 3: 2, 5: 3, 6: 4}
    for k, idx in attempts_to_idea.items():
        prompt = provider.first_prompt(k)
        for earlier in order[:2 + idx]:
            assert f'"Name": "{earlier}"' in prompt, (k, earlier)
        for later in order[2 + idx:]:
            assert f'"Name": "{later}"' not in prompt, (k, later)
        assert "TOY_TASK" in provider.requests[0][1].system
        assert "TOY_TEMPLATE_CODE_MARKER" in provider.requests[0][1].system
    for k in (3, 4, 5, 6):
        prompt = provider.first_prompt(k)
        assert "needs a GPU cluster we do not have" in prompt
        assert "boring: only reorders the data" in prompt
        assert '"Decision": "Reject"' in prompt and '"Overall": 3' in prompt
    assert "boring: only reorders the data" not in provider.first_prompt(1)

    # Reflection: odd attempts stop after round 2 ("I am done"), even ones use all 3.
    steps = provider.steps()
    assert {"idea-1/round-1", "idea-1/round-2"} <= set(steps)
    assert "idea-1/round-3" not in steps and "idea-2/round-3" in steps
    # The stored idea is the reflected final version, not the draft.
    assert not any(n.endswith("_v1") for n in order)

    # Attempt 4 duplicated idea 1: rejected, counted, announced.
    assert rejected_count(ctx) == 1
    log = ctx.store.kv_get("ideation.toy_grokking.rejected")
    assert log[0]["attempt"] == 4 and "adaptive_weight_decay" in log[0]["reason"]
    events = sub.drain()
    assert sum(isinstance(e, IdeaAdded) for e in events) == 2 + 5
    assert any(isinstance(e, Notice) and "rejected" in e.message for e in events)
    # Every call is recorded with its cost bookkeeping.
    assert len(ctx.store.llm_calls()) == len(provider.requests)


async def test_malformed_reply_gets_one_repair(lab):
    ctx, provider, template = lab
    provider.plan = {1: 5}
    provider.malformed = {"idea-1/round-1"}
    original = provider.complete

    async def complete(request, stage, on_text=None):
        if request.step == "idea-1/round-1/repair-1":
            provider.requests.append((stage, request))
            return LLMResponse(text=f"```json\n{idea_json(5)}\n```", tool_calls=[],
                               usage=Usage(1, 1), stop_reason="end_turn", provider="fake",
                               model="fake-model")
        return await original(request, stage, on_text)

    provider.complete = complete
    ids = await generate_ideas(ctx, str(template), 1)
    assert len(ids) == 1
    assert "idea-1/round-1/repair-1" in provider.steps()


async def test_resume_asks_same_keys(lab):
    ctx, provider, template = lab
    provider.plan = {1: 0, 2: 1}

    class Boom(Exception):
        pass

    original = provider.complete

    async def failing(request, stage, on_text=None):
        if request.step == "idea-2/round-2":
            raise Boom()
        return await original(request, stage, on_text)

    provider.complete = failing
    with pytest.raises(Boom):
        await generate_ideas(ctx, str(template), 2)
    provider.complete = original
    provider.requests.clear()
    ids = await generate_ideas(ctx, str(template), 1)
    assert ctx.store.get_idea(ids[0]).name == "curriculum_operand_order"
    assert provider.steps()[0] == "idea-2/round-1"
    # Seeds are added once per lab.
    assert sum(1 for i in ctx.store.list_ideas() if i.origin == "seed") == 2


def test_duplicate_reason_similarity(tmp_path):
    store = LabStore(tmp_path)
    iid = store.add_idea("adaptive_weight_decay", "t", json.loads(idea_json(0)))
    rows = store.list_ideas()
    near = Idea.model_validate({**json.loads(idea_json(0)), "Name": "other_name",
                                "Title": "Adaptive weight-decay schedules accelerating grokking"})
    assert f"#{iid}" in duplicate_reason(near, rows, 0.8)
    far = Idea.model_validate(json.loads(idea_json(3)))
    assert duplicate_reason(far, rows, 0.8) is None
    same = Idea.model_validate({**json.loads(idea_json(3)), "Name": "adaptive_weight_decay"})
    assert "same name" in duplicate_reason(same, rows, 0.8)
    store.close()
