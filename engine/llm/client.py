"""The LLM client every stage uses: provider selection per stage, a bounded retry policy,
an overall deadline, budget checks before each call, streaming to events, recording of
every call (tokens, latency, cost) in the store, and JSON replies validated by schemas
with one bounded repair request.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.errors import EXIT_BUDGET
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.base import (
    DeadlineExceeded,
    LLMError,
    LLMRequest,
    LLMResponse,
    MalformedOutput,
    Message,
    Provider,
    StreamInterrupted,
    TextCallback,
    Usage,
)
from aisci.engine.llm.json_reply import extract_json, parse_json_reply
from aisci.engine.llm.pricing import PriceTable
from aisci.engine.llm.prompts import PromptLibrary
from aisci.engine.llm.providers import make_provider
from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


class BudgetExceeded(LLMError):
    """The next call would cross a budget; it was not made. The stage should pause."""

    exit_code = EXIT_BUDGET

    def __init__(self, scope: str, idea_id: int | None, spent: float, budget: float) -> None:
        super().__init__(f"{scope} budget reached: ${spent:.4f} spent of ${budget:.2f}")
        self.scope = scope
        self.idea_id = idea_id
        self.spent = spent
        self.budget = budget


ProviderFactory = Callable[[str], Provider]


class LLMClient:
    """Shared by all stages of one engine. Providers are created lazily per model spec."""

    def __init__(self, settings: Settings, store: LabStore | None, bus: EventBus | None,
                 *, provider_factory: ProviderFactory | None = None,
                 prices: PriceTable | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.prices = prices or PriceTable.load()
        self._factory = provider_factory
        self._providers: dict[str, Provider] = {}
        self._sleep = sleep
        self._budget_lock = asyncio.Lock()
        # Estimated cost of calls in flight, per idea (None = lab-level calls), so that
        # concurrent calls cannot all pass the budget check and cross it together.
        self._reserved: dict[int | None, float] = {}
        self.prompts = PromptLibrary(store.lab_dir if store is not None else None)

    # -- providers -----------------------------------------------------------------------
    def provider_for(self, spec: str) -> Provider:
        prov = self._providers.get(spec)
        if prov is None:
            if self._factory is not None:
                prov = self._factory(spec)
            else:
                prov = make_provider(spec, self.settings)
            self._providers[spec] = prov
        return prov

    def model_for_stage(self, stage: str) -> str:
        return self.settings.models.for_stage(stage)

    def for_stage(self, stage: str, idea_id: int | None = None) -> StageLLM:
        return StageLLM(self, stage, idea_id)

    async def aclose(self) -> None:
        for p in self._providers.values():
            await p.aclose()
        self._providers.clear()

    # -- budget --------------------------------------------------------------------------
    def check_budget(self, idea_id: int | None, stage: str, estimate_usd: float = 0.0) -> None:
        """Raise BudgetExceeded (and publish BudgetReached) if the next call would cross a
        budget. ``estimate_usd`` is the expected cost of the call about to be made."""
        b = self.settings.budget
        if self.store is None:
            return
        checks: list[tuple[str, int | None, float | None, float]] = []
        if b.lab_usd is not None:
            checks.append(("lab", None, b.lab_usd,
                           self.store.spend() + sum(self._reserved.values())))
        if b.idea_usd is not None and idea_id is not None:
            checks.append(("idea", idea_id, b.idea_usd,
                           self.store.spend(idea_id) + self._reserved.get(idea_id, 0.0)))
        for scope, iid, budget, spent in checks:
            assert budget is not None
            if spent + estimate_usd > budget:
                if self.bus:
                    self.bus.publish(ev.BudgetReached(scope=scope, idea_id=iid, spent_usd=spent,
                                                      budget_usd=budget, stage=stage))
                raise BudgetExceeded(scope, iid, spent, budget)

    def estimate_cost(self, provider: Provider, request: LLMRequest) -> float:
        chars = len(request.system) + sum(len(m.text) + sum(len(r.content) for r in m.tool_results)
                                          for m in request.messages)
        est_in = chars // 4
        est_out = min(request.max_tokens or self.settings.llm.max_tokens, 2048)
        cost = self.prices.cost(provider.provider, provider.model, input_tokens=est_in,
                                output_tokens=est_out)
        return cost or 0.0

    # -- calls ---------------------------------------------------------------------------
    async def chat(self, stage: str, request: LLMRequest, *, idea_id: int | None = None,
                   on_text: TextCallback | None = None, model: str | None = None) -> LLMResponse:
        spec = model or self.model_for_stage(stage)
        provider = self.provider_for(spec)
        cfg = self.settings.llm
        call_id = uuid.uuid4().hex[:12]
        if request.max_tokens is None:
            request.max_tokens = cfg.max_tokens
        if request.temperature is None:
            request.temperature = cfg.temperature
        estimate = self.estimate_cost(provider, request)
        async with self._budget_lock:
            self.check_budget(idea_id, stage, estimate)
            self._reserved[idea_id] = self._reserved.get(idea_id, 0.0) + estimate
        try:
            return await self._call(stage, request, idea_id, on_text, spec, provider, call_id)
        finally:
            left = self._reserved.get(idea_id, 0.0) - estimate
            if left > 1e-12:
                self._reserved[idea_id] = left
            else:
                self._reserved.pop(idea_id, None)

    async def _call(self, stage: str, request: LLMRequest, idea_id: int | None,
                    on_text: TextCallback | None, spec: str, provider: Provider,
                    call_id: str) -> LLMResponse:
        """Attempts of one call under the retry policy, all inside ``llm.call_deadline_s``.
        Every attempt is one ``llm_calls`` row; every wait is an LLMRetry event."""
        cfg = self.settings.llm
        self._publish(ev.LLMCallStarted(call_id=call_id, stage=stage, idea_id=idea_id,
                                        model=spec))

        def stream_cb(text: str) -> None:
            if on_text:
                on_text(text)
            self._publish(ev.LLMStreamed(call_id=call_id, stage=stage, idea_id=idea_id, text=text))

        started = time.monotonic()
        deadline = started + cfg.call_deadline_s
        limit = f"{cfg.call_deadline_s:g}"
        tries = 0
        stream_restarts = 0
        last_error: LLMError | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last_error = DeadlineExceeded(
                    f"{spec}: no answer within {limit} s (llm.call_deadline_s)"
                    + (f"; last error: {last_error}" if last_error else ""))
                break
            tries += 1
            attempt_started = time.monotonic()
            attempt = replace(request, timeout_s=min(cfg.request_timeout_s, remaining))
            try:
                resp = await asyncio.wait_for(provider.complete(attempt, stage, stream_cb),
                                              timeout=remaining)
            except TimeoutError:
                last_error = DeadlineExceeded(
                    f"{spec}: no answer within {limit} s (llm.call_deadline_s)"
                    + (f"; last error: {last_error}" if last_error else ""))
                self._record(call_id, stage, idea_id, provider, None,
                             time.monotonic() - attempt_started, None,
                             f"{type(last_error).__name__}: {last_error}", tries)
                break
            except LLMError as exc:
                give_up: LLMError | None = None
                max_for_kind = cfg.max_tries
                if isinstance(exc, StreamInterrupted):
                    stream_restarts += 1
                    max_for_kind = cfg.stream_restarts + 1
                    if stream_restarts > cfg.stream_restarts:
                        give_up = StreamInterrupted(
                            f"{exc} (gave up after {stream_restarts} broken streams)",
                            status=exc.status)
                elif not exc.retryable:
                    give_up = exc
                elif tries >= cfg.max_tries:
                    give_up = type(exc)(f"{exc} (gave up after {tries} tries)",
                                        status=exc.status, retry_after=exc.retry_after)
                wait = 0.0
                if give_up is None:
                    wait = self._backoff(tries, exc)
                    if time.monotonic() + wait >= deadline:
                        give_up = DeadlineExceeded(
                            f"{spec}: no answer within {limit} s (llm.call_deadline_s): gave "
                            f"up after {tries} tries, the next would start after the "
                            f"deadline; last error: {exc}")
                outcome = give_up or exc
                self._record(call_id, stage, idea_id, provider, None,
                             time.monotonic() - attempt_started, None,
                             f"{type(outcome).__name__}: {outcome}"
                             + ("" if give_up else " (retried)"), tries)
                last_error = outcome
                if give_up is not None:
                    break
                done = stream_restarts if isinstance(exc, StreamInterrupted) else tries
                self._publish(ev.LLMRetry(call_id=call_id, stage=stage, idea_id=idea_id,
                                          attempt=done, wait_s=wait, reason=str(exc),
                                          model=spec, what=exc.what, max_tries=max_for_kind))
                await self._sleep(wait)
                continue
            except Exception as raised:
                # Not ours: a provider that broke its contract (the SDK providers map
                # everything at their boundary), or the caller's own on_text callback. The
                # attempt is recorded and the call finished, then the exception goes on
                # unchanged: it is a bug to see, not a provider failure to retry.
                # (CancelledError and KeyboardInterrupt are not Exceptions.)
                error = " ".join(f"{type(raised).__name__}: {raised}".split())[:300]
                self._record(call_id, stage, idea_id, provider, None,
                             time.monotonic() - attempt_started, None, error, tries)
                self._publish(ev.LLMCallFinished(
                    call_id=call_id, stage=stage, idea_id=idea_id, model=spec,
                    latency_s=time.monotonic() - started, error=error))
                raise
            latency = time.monotonic() - started
            resp.usage = resp.usage.checked()
            cost = self.cost_of(provider, resp.usage)
            self._record(call_id, stage, idea_id, provider, resp.usage, latency, cost, None, tries)
            self._publish(ev.LLMCallFinished(
                call_id=call_id, stage=stage, idea_id=idea_id, model=spec,
                input_tokens=resp.usage.input_tokens, output_tokens=resp.usage.output_tokens,
                cache_read_tokens=resp.usage.cache_read_tokens,
                cache_write_tokens=resp.usage.cache_write_tokens, cost_usd=cost,
                latency_s=latency))
            self._publish_cost(idea_id)
            return resp
        assert last_error is not None
        latency = time.monotonic() - started
        msg = f"{type(last_error).__name__}: {last_error}"
        self._publish(ev.LLMCallFinished(call_id=call_id, stage=stage, idea_id=idea_id,
                                         model=spec, latency_s=latency, error=msg))
        raise last_error

    def cost_of(self, provider: Provider, usage: Usage) -> float | None:
        """What a call cost, or None when unknown: a model without a price, or a reply
        whose usage the provider did not report (unknown usage is not free)."""
        if not usage.known:
            return 0.0 if provider.provider in self.prices.free_providers else None
        return self.prices.cost(provider.provider, provider.model,
                                input_tokens=usage.input_tokens,
                                output_tokens=usage.output_tokens,
                                cache_read_tokens=usage.cache_read_tokens,
                                cache_write_tokens=usage.cache_write_tokens)

    def _backoff(self, tries: int, exc: LLMError) -> float:
        cfg = self.settings.llm
        if exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), cfg.retry_after_cap_s)
        base = min(cfg.backoff_max_s, cfg.backoff_base_s * (2.0 ** (tries - 1)))
        return base * (0.5 + random.random() / 2)

    def _record(self, call_id: str, stage: str, idea_id: int | None, provider: Provider,
                usage: Any, latency: float, cost: float | None, error: str | None,
                tries: int) -> None:
        if self.store is None:
            return
        u = usage
        self.store.record_llm_call(
            stage=stage, idea_id=idea_id, provider=provider.provider, model=provider.model,
            input_tokens=u.input_tokens if u else 0, output_tokens=u.output_tokens if u else 0,
            cache_read_tokens=u.cache_read_tokens if u else 0,
            cache_write_tokens=u.cache_write_tokens if u else 0,
            latency_s=latency, cost_usd=cost, error=error, call_id=call_id, tries=tries)

    def _publish(self, event: ev.Event) -> None:
        if self.bus is not None:
            self.bus.publish(event)

    def _publish_cost(self, idea_id: int | None) -> None:
        if self.bus is None or self.store is None:
            return
        self.bus.publish(ev.CostUpdated(
            lab_usd=self.store.spend(), idea_id=idea_id,
            idea_usd=self.store.spend(idea_id) if idea_id is not None else None,
            unknown_cost_calls=self.store.unknown_cost_calls()))

    async def chat_json(self, stage: str, request: LLMRequest, schema: type[T], *,
                        idea_id: int | None = None, on_text: TextCallback | None = None,
                        model: str | None = None) -> tuple[T, LLMResponse]:
        """Ask for a JSON reply validated against ``schema``; a malformed reply gets
        ``llm.json_repairs`` repair requests (default one), then MalformedOutput."""
        resp = await self.chat(stage, request, idea_id=idea_id, on_text=on_text, model=model)
        repairs = 0
        while True:
            try:
                return parse_json_reply(resp.text, schema, stop_reason=resp.stop_reason), resp
            except MalformedOutput as exc:
                if repairs >= self.settings.llm.json_repairs:
                    spec = model or self.model_for_stage(stage)
                    final = MalformedOutput(
                        f"{stage}: {spec} gave no valid {schema.__name__} JSON after "
                        f"{repairs} repair request(s): {exc}")
                    self._publish(ev.Notice(level="error", message=str(final),
                                            idea_id=idea_id))
                    raise final from None
                repairs += 1
                repair = LLMRequest(
                    system=request.system,
                    messages=[*request.messages, resp.as_message(), Message(
                        role="user",
                        text=self.prompts.render("json_repair", problem=str(exc),
                                                 schema=schema.__name__))],
                    temperature=request.temperature, max_tokens=request.max_tokens,
                    step=f"{request.step}/repair-{repairs}",
                    cache_prefix_messages=request.cache_prefix_messages)
                resp = await self.chat(stage, repair, idea_id=idea_id, on_text=on_text,
                                       model=model)


class StageLLM:
    """A client bound to one stage and idea, so stage code need not repeat them."""

    def __init__(self, client: LLMClient, stage: str, idea_id: int | None) -> None:
        self.client = client
        self.stage = stage
        self.idea_id = idea_id

    async def chat(self, request: LLMRequest, on_text: TextCallback | None = None) -> LLMResponse:
        return await self.client.chat(self.stage, request, idea_id=self.idea_id, on_text=on_text)

    async def chat_json(self, request: LLMRequest, schema: type[T],
                        on_text: TextCallback | None = None) -> tuple[T, LLMResponse]:
        return await self.client.chat_json(self.stage, request, schema, idea_id=self.idea_id,
                                           on_text=on_text)


__all__ = ["BudgetExceeded", "LLMClient", "StageLLM", "extract_json", "parse_json_reply"]
