"""Streams and answers that are wrong rather than cut, through the real SDKs against the
loopback fake: undecodable or unassemblable 200 streams (a broken stream: restarted, then
a one-line error), usage counts that are not counts or are missing (cost unknown, never
$0 or negative), error bodies the SDKs do not understand (one line with the reason), and
providers that raise something not ours (recorded, finished, never swallowed)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.anthropic_provider import AnthropicProvider
from aisci.engine.llm.base import (
    LLMError,
    LLMRequest,
    LLMResponse,
    Message,
    StreamInterrupted,
    TextCallback,
)
from aisci.engine.llm.client import LLMClient

# The provider modules (and so the SDKs, seconds to import) load at collection, so that
# no test below pays for them.
from aisci.engine.llm.openai_provider import OpenAIProvider
from support.llm_server import (
    ANTHROPIC,
    OPENAI,
    FakeLLMServer,
    RawBody,
    RawStream,
    Reply,
    anthropic_events,
    openai_chunks,
)

SPECS = {"anthropic": "anthropic:claude-haiku-4-5", "openai": "openai:gpt-4o-mini"}


class Rig:
    def __init__(self, family: str, server: FakeLLMServer, tmp_path: Any, monkeypatch: Any,
                 provider_factory: Any = None) -> None:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
        self.spec = SPECS[family]
        self.api = ANTHROPIC if family == "anthropic" else OPENAI
        self.server = server
        settings = Settings.model_validate({"models": {"default": self.spec}, "llm": {
            "backoff_base_s": 0.01, "backoff_max_s": 0.02, "max_tries": 2,
            "call_deadline_s": 20, "stream_restarts": 2, "request_timeout_s": 5}})
        self.store = LabStore(tmp_path / "lab")
        bus = EventBus()
        self.events = bus.subscribe()
        self.client = LLMClient(settings, self.store, bus, provider_factory=provider_factory)

    def requests(self) -> int:
        return len(self.server.requests_for(self.api))

    def finished(self) -> list[ev.LLMCallFinished]:
        return [e for e in self.events.drain() if isinstance(e, ev.LLMCallFinished)]

    async def close(self) -> None:
        await self.client.aclose()
        self.store.close()


@pytest.fixture
async def rigs(llm_server, tmp_path, monkeypatch):
    made: list[Rig] = []

    def make(family: str, **kw: Any) -> Rig:
        r = Rig(family, llm_server, tmp_path, monkeypatch, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.close()


def _req() -> LLMRequest:
    return LLMRequest(system="s", messages=[Message(role="user", text="hello")], step="t/1")


def _patched(events: list[tuple[str | None, str]], name: str,
             change: Any) -> list[tuple[str | None, str]]:
    """``events`` with the data of every ``name`` event replaced by ``change(data)``."""
    return [(n, json.dumps(change(json.loads(d))) if n == name else d) for n, d in events]


def _no_usage(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "usage"}


A = anthropic_events(Reply(text="half"))
OC = openai_chunks(Reply(text="half"))
DELTA = ("content_block_delta", json.dumps({"type": "content_block_delta", "index": 7, "delta": {
    "type": "text_delta", "text": "x"}}))

# Each a 200 stream the SDK or our assembly cannot read; every one must be a broken stream.
MALFORMED: dict[str, tuple[str, RawStream]] = {
    "anthropic-cut-json-line": ("anthropic", RawStream(
        [*A[:2], ("content_block_start", '{"type":"content_block_st'), *A[2:]])),
    "anthropic-not-gzip": ("anthropic", RawStream(A, {"content-encoding": "gzip"})),
    "anthropic-delta-before-block": ("anthropic", RawStream([*A[:2], DELTA, *A[2:]])),
    "anthropic-no-message-start": ("anthropic", RawStream(A[1:])),
    "anthropic-message-delta-without-usage": ("anthropic", RawStream(
        _patched(A, "message_delta", _no_usage))),
    "openai-cut-json-line": ("openai", RawStream(
        [*OC[:2], (None, '{"id": "c1", "choi'), *OC[2:]])),
    "openai-not-gzip": ("openai", RawStream(OC, {"content-encoding": "gzip"})),
    "openai-choices-not-a-list": ("openai", RawStream(
        [*OC[:2], (None, json.dumps({"id": "c1", "object": "chat.completion.chunk",
                                    "choices": 5})), *OC[2:]])),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_an_unreadable_stream_is_a_broken_stream_and_restarted(rigs, case):
    family, broken = MALFORMED[case]
    rig = rigs(family)
    rig.server.script(rig.api, broken, Reply(text="the whole answer"))
    resp = await rig.client.chat("ideate", _req())
    assert resp.text == "the whole answer" and rig.requests() == 2
    first, last = rig.store.llm_calls()
    assert first["error"].startswith(f"StreamInterrupted: {rig.spec}: stream broke")
    assert first["error"].endswith("(retried)") and "\n" not in first["error"]
    assert last["error"] is None and last["tries"] == 2
    [done] = rig.finished()
    assert done.error is None and done.cost_usd is not None and done.cost_usd > 0


@pytest.mark.parametrize("case", ["anthropic-cut-json-line", "openai-choices-not-a-list"])
async def test_a_stream_unreadable_every_time_gives_up_in_one_line(rigs, case):
    family, broken = MALFORMED[case]
    rig = rigs(family)
    rig.server.script(rig.api, *[broken] * 3, Reply(text="never"))
    with pytest.raises(StreamInterrupted, match="gave up after 3 broken streams") as info:
        await rig.client.chat("ideate", _req())
    assert str(info.value).startswith(rig.spec) and "\n" not in str(info.value)
    assert rig.requests() == 3 and len(rig.store.llm_calls()) == 3
    [done] = rig.finished()
    assert done.error is not None and "gave up after 3 broken streams" in done.error


async def test_compatible_servers_chunk_shapes_are_read(rigs):
    # "choices": null on the usage chunk and a finishing choice without "delta", as some
    # OpenAI-compatible servers send: a complete answer, not a broken stream.
    rig = rigs("openai")
    head = [(n, d) for n, d in OC if d != "[DONE]" and json.loads(d).get("choices")]
    finish = (None, json.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "finish_reason": "stop"}]}))
    usage = (None, json.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": None,
                               "usage": {"prompt_tokens": 30, "completion_tokens": 7}}))
    rig.server.script(rig.api, RawStream([*head[:-1], finish, usage, (None, "[DONE]")]))
    resp = await rig.client.chat("ideate", _req())
    assert resp.text == "half" and resp.stop_reason == "stop" and rig.requests() == 1
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.known) == (30, 7, True)


# -- usage -------------------------------------------------------------------------------

BAD_COUNTS = [2**64, 10**20, 1e300, -50_000_000, -1, "twelve", "-3", None, [3]]


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")  # the SDK's
@pytest.mark.parametrize("family", ["anthropic", "openai"])
@pytest.mark.parametrize("count", BAD_COUNTS, ids=repr)
async def test_a_usage_count_that_is_not_a_count_makes_the_cost_unknown(rigs, family, count):
    rig = rigs(family)
    if family == "anthropic":
        def start(d: dict[str, Any]) -> dict[str, Any]:
            d["message"]["usage"]["input_tokens"] = count
            return d
        stream = RawStream(_patched(A, "message_start", start))
    else:
        stream = RawStream([(n, json.dumps(dict(json.loads(d), usage={
            "prompt_tokens": count, "completion_tokens": 5})) if '"usage"' in d else d)
            for n, d in OC])
    rig.server.script(rig.api, stream)
    resp = await rig.client.chat("ideate", _req())
    assert resp.text == "half" and not resp.usage.known
    [row] = rig.store.llm_calls()
    assert row["error"] is None and row["cost_usd"] is None
    assert 0 <= row["input_tokens"] <= 10**12 and 0 <= row["output_tokens"] <= 10**12
    assert rig.store.unknown_cost_calls() == 1 and rig.store.spend() == 0
    [done] = rig.finished()
    assert done.cost_usd is None and done.error is None


async def test_a_whole_float_count_is_taken(rigs):
    assert OpenAIProvider.__name__ and AnthropicProvider.provider == "anthropic"
    rig = rigs("openai")
    rig.server.script(rig.api, RawStream([(n, json.dumps(dict(json.loads(d), usage={
        "prompt_tokens": 1000.0, "completion_tokens": 10})) if '"usage"' in d else d)
        for n, d in OC]))
    resp = await rig.client.chat("ideate", _req())
    assert resp.usage.known and resp.usage.input_tokens == 1000
    [row] = rig.store.llm_calls()
    assert row["cost_usd"] == pytest.approx((1000 * 0.15 + 10 * 0.6) / 1e6)


async def test_a_stream_without_usage_is_an_unknown_cost_not_free(rigs):
    rig = rigs("openai")
    rig.server.script(rig.api, RawStream(openai_chunks(Reply(text="a" * 400),
                                                       include_usage=False)),
                      Reply(text="priced"))
    resp = await rig.client.chat("ideate", _req())
    assert resp.text == "a" * 400 and not resp.usage.known
    await rig.client.chat("ideate", _req())
    unknown, priced = rig.store.llm_calls()
    assert unknown["cost_usd"] is None and priced["cost_usd"] > 0
    assert rig.store.unknown_cost_calls() == 1
    assert rig.store.spend() == pytest.approx(priced["cost_usd"])
    assert [e.cost_usd is None for e in rig.finished()] == [True, False]


# -- error bodies ------------------------------------------------------------------------

HTML_502 = ("<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title>\n"
            "<style>body { color: red }</style></head>\n<body><h1>upstream connect error: "
            "overloaded</h1>\n<p>cloudflare &amp; co</p></body>\n</html>\n")
ERROR_BODIES = {
    "html-page": (502, HTML_502, "text/html",
                  "HTTP 502: 502 Bad Gateway upstream connect error: overloaded cloudflare & co"),
    "string-error": (500, json.dumps({"error": "CUDA out of memory while loading model"}),
                     "application/json", "HTTP 500: CUDA out of memory while loading model"),
    "detail": (503, json.dumps({"detail": "model is loading\n  retry later"}),
               "application/json", "HTTP 503: model is loading retry later"),
    "huge-text": (500, "disk full " * 3000, "text/plain", "HTTP 500: disk full disk full"),
}


@pytest.mark.parametrize("family", ["anthropic", "openai"])
@pytest.mark.parametrize("case", list(ERROR_BODIES))
async def test_an_error_body_the_sdk_does_not_know_gives_one_line_with_the_reason(
        rigs, family, case):
    status, body, ctype, expected = ERROR_BODIES[case]
    rig = rigs(family)
    rig.server.script(rig.api, *[RawBody(status, body, ctype)] * 2)
    with pytest.raises(LLMError) as info:
        await rig.client.chat("ideate", _req())
    msg = str(info.value)
    assert msg.startswith(f"{rig.spec}: {expected}") and msg.endswith("(gave up after 2 tries)")
    assert "\n" not in msg and "<" not in msg and len(msg) < 300
    assert all("\n" not in r["error"] and len(r["error"]) < 350 for r in rig.store.llm_calls())


# -- providers that raise something not ours -------------------------------------------

class _Raises:
    provider = "openai"
    model = "gpt-4o-mini"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = 0

    async def complete(self, request: LLMRequest, stage: str,
                       on_text: TextCallback | None) -> LLMResponse:
        self.calls += 1
        raise self.exc

    async def aclose(self) -> None:
        return None


async def test_a_provider_raising_a_foreign_error_is_recorded_then_raised(rigs):
    # Not an SDK failure (those are mapped inside the provider) but a provider breaking
    # its contract: a bug to see, so it goes on unchanged, after its row and its event.
    boom = RuntimeError("boom\nat line two")
    provider = _Raises(boom)
    rig = rigs("openai", provider_factory=lambda spec: provider)
    with pytest.raises(RuntimeError) as info:
        await rig.client.chat("ideate", _req())
    assert info.value is boom and provider.calls == 1
    [row] = rig.store.llm_calls()
    assert row["error"] == "RuntimeError: boom at line two" and row["tries"] == 1
    [done] = rig.finished()
    assert done.error == "RuntimeError: boom at line two"


async def test_cancellation_from_a_provider_is_never_swallowed(rigs):
    # (KeyboardInterrupt, the other BaseException, is left alone by the same clause; it
    # cannot be raised inside a test's event loop without ending the test session.)
    rig = rigs("openai", provider_factory=lambda spec: _Raises(asyncio.CancelledError()))
    with pytest.raises(asyncio.CancelledError):
        await rig.client.chat("ideate", _req())


@pytest.mark.parametrize("family", ["anthropic", "openai"])
async def test_the_callers_own_callback_error_is_raised_unchanged(rigs, family):
    rig = rigs(family)
    rig.server.script(rig.api, Reply(text="some text"), Reply(text="never"))
    bug = ValueError("a bug in the caller")

    def on_text(text: str) -> None:
        raise bug

    with pytest.raises(ValueError) as info:
        await rig.client.chat("ideate", _req(), on_text=on_text)
    assert info.value is bug and rig.requests() == 1
    [row] = rig.store.llm_calls()
    assert row["error"] == "ValueError: a bug in the caller"
    [done] = rig.finished()
    assert done.error == "ValueError: a bug in the caller"
