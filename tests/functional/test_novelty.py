"""Novelty checks against the loopback S2/OpenAlex server and a scripted fake LLM:
failover within the deadline, evidence stored, cache reuse, no-decision, resume,
literature down, deadline."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus, IdeaChanged
from aisci.engine.lab.store import LabStore
from aisci.engine.literature import Literature, LiteratureUnavailable
from aisci.engine.llm.base import LLMRequest, LLMResponse, Usage
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.stages.context import StageContext
from aisci.engine.stages.novelty import NoveltyDeadline, check_novelty
from support.literature_server import LiteratureServer

IDEA = {"Name": "wd_grokking", "Title": "Weight decay strength and grokking speed",
        "Experiment": "Sweep AdamW weight decay on modular addition and time grokking.",
        "Interestingness": 6, "Feasibility": 9, "Novelty": 3}


class NoveltyProvider:
    """Replies per round from ``script``: ``{"Query": ...}`` or ``{"Decision": ...}``."""

    provider = "fake"
    model = "fake-model"

    def __init__(self, script: dict[int, dict], delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay
        self.requests: list[LLMRequest] = []

    async def complete(self, request, stage, on_text=None) -> LLMResponse:
        assert stage == "novelty"
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        rnd = int(request.step.rsplit("-", 1)[1])
        reply = self.script.get(rnd, {"Query": f"query round {rnd}"})
        text = f"THOUGHT: round {rnd}\n\nRESPONSE:\n```json\n{json.dumps(reply)}\n```"
        return LLMResponse(text=text, tool_calls=[], usage=Usage(10, 10),
                           stop_reason="end_turn", provider="fake", model="fake-model")

    async def aclose(self) -> None:
        pass


@pytest.fixture
def server():
    with LiteratureServer() as srv:
        yield srv


def make_ctx(lab: Path, srv: LiteratureServer, provider: NoveltyProvider,
             **novelty) -> StageContext:
    s = Settings()
    s.models.default = "fake:fake-model"
    s.literature.semantic_scholar_url = srv.s2_url
    s.literature.openalex_url = srv.openalex_url
    s.literature.requests_per_s_without_key = 200.0
    s.literature.backoff_base_s = 0.01
    s.literature.request_timeout_s = 2.0
    for k, v in novelty.items():
        setattr(s.novelty, k, v)
    store = LabStore(lab)
    bus = EventBus()
    return StageContext(lab=lab, settings=s, store=store, bus=bus,
                        llm=LLMClient(s, store, bus, provider_factory=lambda spec: provider),
                        prompts=PromptLibrary(lab),
                        literature=Literature(s, store, bus))


SCRIPT = {1: {"Query": "grokking weight decay"},
          2: {"Query": "modular arithmetic transformer generalization"},
          3: {"Decision": "not novel",
              "Rationale": "Power et al. 2022 already show weight decay speeds up grokking."}}


async def test_failover_evidence_and_deadline(tmp_path, server, monkeypatch):
    monkeypatch.delenv("S2_API_KEY", raising=False)
    server.fail_always("s2", "429")
    provider = NoveltyProvider(SCRIPT)
    ctx = make_ctx(tmp_path, server, provider, deadline_s=20)
    sub = ctx.bus.subscribe(kinds=(IdeaChanged,))
    iid = ctx.store.add_idea(IDEA["Name"], "grokking", IDEA)
    t0 = time.monotonic()
    result = await check_novelty(ctx, iid)
    assert time.monotonic() - t0 < 20
    assert result.decided and result.novel is False and "Power et al." in result.rationale
    assert result.queries == ["grokking weight decay",
                              "modular arithmetic transformer generalization"]
    assert result.rounds == 3 and result.papers
    assert all(p["source"] == "openalex" for p in result.papers)
    assert server.count("s2") == ctx.settings.literature.breaker_threshold
    row = ctx.store.get_idea(iid)
    assert row.status == "checked" and row.novelty["novel"] is False
    assert row.novelty["papers"][0]["abstract"] and row.novelty["papers"][0]["bibtex"]
    assert any(h["action"] == "novelty_checked" for h in ctx.store.idea_history(iid))
    assert any(e.detail == "novelty: not novel" for e in sub.drain())
    # The model saw the results with abstracts in the next round.
    round2 = provider.requests[1].messages[-1].text
    assert "Grokking" in round2 and "Abstract:" in round2 and "Number of citations" in round2
    assert [r.step for r in provider.requests] == [f"{IDEA['Name']}/round-{i}" for i in (1, 2, 3)]
    # Done: calling again does not ask anything.
    again = await check_novelty(ctx, iid)
    assert again.rounds == 3 and len(provider.requests) == 3

    # A second idea asking the same queries is answered from the cache.
    n = len(server.requests)
    other = ctx.store.add_idea("wd_grokking_two", "grokking", {**IDEA, "Name": "wd_grokking_two"})
    await check_novelty(ctx, other)
    assert len(server.requests) == n
    ctx.store.close()


async def test_no_decision_is_not_novel(tmp_path, server):
    provider = NoveltyProvider({})
    ctx = make_ctx(tmp_path, server, provider, max_rounds=3)
    iid = ctx.store.add_idea(IDEA["Name"], "grokking", IDEA)
    result = await check_novelty(ctx, iid)
    assert not result.decided and not result.novel
    assert "no decision after 3 rounds" in result.rationale
    assert result.rounds == 3
    # The last round's query is recorded but not searched (no round to read it).
    assert server.count("s2") == 2
    assert "last round" in provider.requests[-1].messages[-1].text
    ctx.store.close()


async def test_literature_down_then_resume(tmp_path, server):
    provider = NoveltyProvider(SCRIPT)
    ctx = make_ctx(tmp_path, server, provider, deadline_s=30)
    ctx.settings.literature.breaker_threshold = 2
    iid = ctx.store.add_idea(IDEA["Name"], "grokking", IDEA)
    # Round 1 search works; before round 2's search both sources go down.
    original = ctx.literature.search
    calls = {"n": 0}

    async def search(query, limit=10, *, deadline=None):
        calls["n"] += 1
        if calls["n"] == 2:
            server.fail_always("s2", "500")
            server.fail_always("openalex", "500")
        return await original(query, limit, deadline=deadline)

    ctx.literature.search = search
    t0 = time.monotonic()
    with pytest.raises(LiteratureUnavailable):
        await check_novelty(ctx, iid)
    assert time.monotonic() - t0 < 10
    saved = ctx.store.get_idea(iid).novelty
    assert saved["complete"] is False and len(saved["log"]) == 1
    # Back online: the check resumes at round 2 (round 1 is not asked again).
    server.fail_always("s2", None)
    server.fail_always("openalex", None)
    ctx.literature = Literature(ctx.settings, ctx.store, ctx.bus)
    provider.requests.clear()
    result = await check_novelty(ctx, iid)
    assert [r.step for r in provider.requests] == [f"{IDEA['Name']}/round-2",
                                                   f"{IDEA['Name']}/round-3"]
    # The rebuilt conversation carries round 1's results.
    assert "grokking weight decay" in provider.requests[0].messages[2].text
    assert result.decided and result.rounds == 3
    ctx.store.close()


async def test_deadline_is_enforced(tmp_path, server):
    provider = NoveltyProvider(SCRIPT, delay=5.0)
    ctx = make_ctx(tmp_path, server, provider, deadline_s=0.5)
    iid = ctx.store.add_idea(IDEA["Name"], "grokking", IDEA)
    t0 = time.monotonic()
    with pytest.raises(NoveltyDeadline):
        await check_novelty(ctx, iid)
    assert time.monotonic() - t0 < 1.5
    ctx.store.close()


async def test_novel_decision_with_scripted_cassette(tmp_path, server):
    from aisci.engine.llm.scripted import ScriptedProvider
    cassette = tmp_path / "nov.json"
    cassette.write_text(json.dumps({"responses": [
        {"match": "novelty/wd_grokking/round-1", "text": '{"Query": "weight decay grokking"}'},
        {"match": "novelty/wd_grokking/round-2",
         "text": 'I checked.\n```json\n{"Decision": "Novel", "Rationale": "nothing close"}\n```'},
    ]}))
    provider = ScriptedProvider(str(cassette))
    ctx = make_ctx(tmp_path / "lab", server, provider)
    iid = ctx.store.add_idea(IDEA["Name"], "grokking", IDEA)
    result = await check_novelty(ctx, iid)
    assert result.novel and result.decided and result.rationale == "nothing close"
    assert ctx.store.get_idea(iid).status == "checked"
    ctx.store.close()
