"""The chaos model against the structured-reply path every JSON stage uses (ideation,
novelty, review): each perturbation class of the demo's recorded answers either parses
(tolerant reading) or ends in one line naming the model and the stage; with the repair
round (precise feedback, the model answers again) every reply is recovered. Fast: no
pipeline, just the client and the scripted provider on the bundled cassette."""

from __future__ import annotations

import json

import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus, Notice
from aisci.engine.lab.idea_schema import Idea
from aisci.engine.llm.base import BadRequest, LLMRequest, MalformedOutput, Message
from aisci.engine.llm.chaos import CLASSES, Chaos
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.json_reply import parse_json_reply
from aisci.engine.llm.scripted import ScriptedProvider, resolve_cassette
from aisci.engine.paper.review_form import ReviewForm
from aisci.engine.stages.novelty import NoveltyReply

SCHEMAS = {"ideate": Idea, "novelty": NoveltyReply, "review": ReviewForm}
JSON_CLASSES = ["prose", "fences", "trailing_commas", "renamed_fields", "dropped_field",
                "wrong_types", "out_of_range", "refusal", "empty", "truncated"]
# Read as meant without asking the model again.
TOLERATED = {"prose", "fences", "trailing_commas", "renamed_fields", "wrong_types"}


def _json_keys() -> list[str]:
    data = json.loads(resolve_cassette("demo").read_text())
    keys = [r["match"] for r in data["responses"]]
    return [k for k in keys if k.split("/")[0] in SCHEMAS and "*" not in k
            and not k.endswith("/meta") and "{" in next(
                r["text"] for r in data["responses"] if r["match"] == k)]


KEYS = _json_keys()


def _client(kind: str, repairs: int, seed: int = 7) -> tuple[LLMClient, list[Notice]]:
    settings = Settings.model_validate({"models": {"default": "scripted:demo"},
                                        "llm": {"json_repairs": repairs}})
    bus = EventBus()
    notices: list[Notice] = []
    bus.add_sink(lambda e: notices.append(e) if isinstance(e, Notice) else None)
    provider = ScriptedProvider("demo", chaos=Chaos(kind, seed=seed))
    return LLMClient(settings, None, bus, provider_factory=lambda spec: provider), notices


async def _ask(client: LLMClient, key: str) -> object:
    stage, step = key.split("/", 1)
    req = LLMRequest(system="s", messages=[Message(role="user", text="go")], step=step)
    model, _ = await client.chat_json(stage, req, SCHEMAS[stage])
    return model


def test_the_cassette_has_json_answers_for_each_schema():
    assert {k.split("/")[0] for k in KEYS} == set(SCHEMAS) and len(KEYS) >= 10


@pytest.mark.parametrize("kind", JSON_CLASSES)
async def test_each_class_parses_or_fails_in_one_line(kind):
    client, notices = _client(kind, repairs=0)
    ok = 0
    for key in KEYS:
        try:
            await _ask(client, key)
            ok += 1
        except MalformedOutput as exc:
            msg = str(exc)
            stage = key.split("/")[0]
            assert "\n" not in msg and msg.startswith(f"{stage}: scripted:demo gave no valid")
            assert notices and notices[-1].message == msg
    if kind in TOLERATED:
        assert ok == len(KEYS), f"{kind}: {ok}/{len(KEYS)} parsed"
    elif kind in ("refusal", "empty", "truncated"):
        assert ok == 0


@pytest.mark.parametrize("kind", JSON_CLASSES)
async def test_one_repair_round_recovers_every_reply(kind):
    client, _ = _client(kind, repairs=1)
    for key in KEYS:
        await _ask(client, key)
    provider = client.provider_for("scripted:demo")
    assert isinstance(provider, ScriptedProvider)
    repairs = [k for k, _ in provider.requests if "/repair-" in k]
    if kind in TOLERATED:
        assert repairs == []
    else:
        assert repairs


def test_feedback_names_the_problem_precisely():
    with pytest.raises(MalformedOutput, match=r"Overall: .*less than or equal to 10.*42"):
        parse_json_reply(json.dumps(_review(Overall=42)), ReviewForm)
    with pytest.raises(MalformedOutput, match="cut off at the output limit"):
        parse_json_reply('{"Summary": "a paper about', ReviewForm, stop_reason="max_tokens")
    with pytest.raises(MalformedOutput, match="empty"):
        parse_json_reply("  ", ReviewForm)
    # Tolerated: a wrapping key, other case, numbers as text, trailing commas, Python
    # literals.
    text = ("Sure:\n```jsonc\n{'review': {" + ", ".join(
        f"'{k.lower()}': {v!r}" for k, v in _review(Overall="7/10").items()) + ",}}\n```")
    assert parse_json_reply(text, ReviewForm).Overall == 7


def _review(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "Summary": "s", "Strengths": ["a"], "Weaknesses": ["b"], "Originality": 2,
        "Quality": 2, "Clarity": 2, "Significance": 2, "Questions": [], "Limitations": [],
        "Ethical Concerns": False, "Soundness": 2, "Presentation": 2, "Contribution": 2,
        "Overall": 5, "Confidence": 3, "Decision": "Reject"}
    base.update(over)
    return base


def test_chaos_is_seeded_and_checked():
    a = Chaos("all", seed=3)
    b = Chaos("all", seed=3)
    entry = {"text": '{"a": 1, "b": [1, 2]}'}
    assert [a.perturb("k", entry) for _ in range(5)] == [b.perturb("k", entry) for _ in range(5)]
    assert set(CLASSES) >= set(JSON_CLASSES)
    with pytest.raises(BadRequest, match="chaos class 'nope'"):
        Chaos("nope")
    with pytest.raises(BadRequest, match="expected @chaos"):
        ScriptedProvider("demo@colour=red")
