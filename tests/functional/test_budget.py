"""Budgets are enforced before a call is made: the call that would cross the lab or idea
budget never happens, BudgetReached is published and finished work stays intact."""

from __future__ import annotations

import asyncio

import pytest
from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.base import LLMRequest, LLMResponse, Message, Usage
from aisci.engine.llm.client import BudgetExceeded, LLMClient


class PricedProvider:
    """A provider with a real price-table entry (claude-haiku-4-5: $1 in / $5 out per
    million tokens) answering every call with 1000 input and 1000 output tokens, i.e.
    $0.006 per call."""

    provider = "anthropic"
    model = "claude-haiku-4-5"

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay

    async def complete(self, request, stage, on_text):
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return LLMResponse(text=f"answer {request.step}", tool_calls=[],
                           usage=Usage(input_tokens=1000, output_tokens=1000),
                           stop_reason="end_turn", provider=self.provider, model=self.model)

    async def aclose(self):
        return None


def _client(tmp_path, budget: dict, provider: PricedProvider):
    settings = Settings.model_validate({"budget": budget, "llm": {"max_tokens": 1000},
                                        "models": {"default": "anthropic:claude-haiku-4-5"}})
    store = LabStore(tmp_path / "lab")
    bus = EventBus()
    return LLMClient(settings, store, bus, provider_factory=lambda spec: provider), store, bus


async def test_lab_budget_stops_before_the_crossing_call(tmp_path):
    provider = PricedProvider()
    client, store, bus = _client(tmp_path, {"lab_usd": 0.02}, provider)
    sub = bus.subscribe(kinds=(ev.BudgetReached,))
    out = tmp_path / "drafts"
    out.mkdir()
    written: list[int] = []
    with pytest.raises(BudgetExceeded, match="lab budget reached") as info:
        for k in range(1, 10):
            # A stage writes its artifact only from a complete reply.
            resp = await client.chat("write", LLMRequest(
                system="s", messages=[Message(role="user", text="section")], step=f"sec-{k}"))
            (out / f"section-{k}.tex").write_text(resp.text)
            written.append(k)
    # Each call costs $0.006 and is estimated at ~$0.005 (1000 output tokens max):
    # three fit under $0.02, the fourth would cross it and is never made.
    assert written == [1, 2, 3] and provider.calls == 3
    assert sorted(p.name for p in out.iterdir()) == [f"section-{k}.tex" for k in (1, 2, 3)]
    assert store.spend() == pytest.approx(0.018) and store.spend() <= 0.02
    rows = store.llm_calls()
    assert len(rows) == 3 and all(r["error"] is None for r in rows)
    [reached] = sub.drain()
    assert reached.scope == "lab" and reached.budget_usd == 0.02 and reached.stage == "write"
    assert reached.spent_usd == pytest.approx(0.018)
    assert info.value.scope == "lab"
    store.close()


async def test_idea_budget_is_per_idea(tmp_path):
    provider = PricedProvider()
    client, store, bus = _client(tmp_path, {"idea_usd": 0.01}, provider)
    a = store.add_idea("idea_a", "grokking", {})
    b = store.add_idea("idea_b", "grokking", {})
    req = LLMRequest(system="s", messages=[Message(role="user", text="x")], step="s")
    await client.chat("experiment", req, idea_id=a)
    with pytest.raises(BudgetExceeded, match="idea budget") as info:
        await client.chat("experiment", req, idea_id=a)
    assert info.value.idea_id == a
    # Another idea still has its own budget.
    await client.chat("experiment", req, idea_id=b)
    assert provider.calls == 2
    assert store.spend(a) == pytest.approx(0.006) and store.spend(b) == pytest.approx(0.006)
    store.close()


async def test_concurrent_calls_cannot_cross_the_budget_together(tmp_path):
    provider = PricedProvider(delay=0.05)
    client, store, _ = _client(tmp_path, {"lab_usd": 0.02}, provider)
    req = LLMRequest(system="s", messages=[Message(role="user", text="x")], step="s")
    results = await asyncio.gather(*[client.chat("review", req) for _ in range(8)],
                                   return_exceptions=True)
    made = [r for r in results if isinstance(r, LLMResponse)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(made) + len(refused) == 8 and refused
    # In-flight calls reserve their estimate, so at most budget/estimate start at once.
    assert provider.calls == len(made) <= 4
    store.close()


async def test_raising_the_budget_lets_the_stage_resume(tmp_path):
    provider = PricedProvider()
    client, store, _ = _client(tmp_path, {"lab_usd": 0.004}, provider)
    req = LLMRequest(system="s", messages=[Message(role="user", text="x")], step="s")
    with pytest.raises(BudgetExceeded):
        await client.chat("ideate", req)
    assert provider.calls == 0
    client.settings.budget.lab_usd = 1.0
    await client.chat("ideate", req)
    assert provider.calls == 1
    store.close()
