"""Provider faults through the real SDKs, for each provider family (Anthropic, OpenAI, an
OpenAI-compatible endpoint), against the loopback fake: each fault class at each point of
a call (connect, before the headers, inside the stream body), asserting the requests made,
the time taken, the rows recorded and the final message.

Waits are real (``asyncio.sleep``) but short: backoff 10-50 ms, timeouts under 2 s."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore

# The provider modules (and so the SDKs) are imported here, at collection, so that
# their import time stays out of the timings measured below.
from aisci.engine.llm.anthropic_provider import AnthropicProvider
from aisci.engine.llm.base import (
    AuthError,
    ConnectionFailed,
    DeadlineExceeded,
    LLMRequest,
    Message,
    NoAnswer,
    Overloaded,
    QuotaExceeded,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from aisci.engine.llm.client import LLMClient
from aisci.engine.llm.openai_provider import OpenAIProvider
from support.llm_server import (
    ANTHROPIC,
    OPENAI,
    BreakStream,
    Fail,
    FakeLLMServer,
    Reply,
    Stall,
    StallStream,
)

FAMILIES = ["anthropic", "openai", "compatible"]


@dataclass
class Rig:
    family: str
    api: str
    spec: str
    server: FakeLLMServer
    client: LLMClient
    store: LabStore
    events: Any

    def requests(self) -> int:
        return len(self.server.requests_for(self.api))

    def rows(self) -> list[dict[str, Any]]:
        return self.store.llm_calls()

    def retries(self) -> list[ev.LLMRetry]:
        return [e for e in self.events.drain() if isinstance(e, ev.LLMRetry)]


def _settings(family: str, base: str, **llm: Any) -> Settings:
    spec = {"anthropic": "anthropic:claude-haiku-4-5", "openai": "openai:gpt-4o-mini",
            "compatible": "local:qwen3-coder"}[family]
    cfg: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_tries": 3,
                           "call_deadline_s": 20, "stream_restarts": 2,
                           "request_timeout_s": 10, **llm}
    if family == "compatible":
        cfg["endpoints"] = {"local": {"base_url": f"{base}/v1", "api_key_env": "LOCAL_KEY"}}
    return Settings.model_validate({"models": {"default": spec}, "llm": cfg})


def _rig(family: str, server: FakeLLMServer, tmp_path: Any, monkeypatch: Any,
         base: str | None = None, **llm: Any) -> Rig:
    base = base or server.base_url
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", base)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{base}/v1")
    monkeypatch.setenv("LOCAL_KEY", "local-key")
    settings = _settings(family, base, **llm)
    store = LabStore(tmp_path / f"lab-{family}")
    bus = EventBus()
    events = bus.subscribe()
    client = LLMClient(settings, store, bus)
    return Rig(family, ANTHROPIC if family == "anthropic" else OPENAI,
               settings.models.default, server, client, store, events)


@pytest.fixture
async def rig(request, llm_server, tmp_path, monkeypatch):
    r = _rig(request.param, llm_server, tmp_path, monkeypatch)
    yield r
    await r.client.aclose()
    r.store.close()


def _req() -> LLMRequest:
    return LLMRequest(system="s", messages=[Message(role="user", text="hello")], step="t/1")


async def _timed(coro: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    out = await coro
    return out, time.monotonic() - t0


async def _timed_fail(exc_type: type[BaseException], coro: Any, match: str) -> tuple[str, float]:
    t0 = time.monotonic()
    with pytest.raises(exc_type, match=match) as info:
        await coro
    return str(info.value), time.monotonic() - t0


all_families = pytest.mark.parametrize("rig", FAMILIES, indirect=True)


# -- stream body: drop, reset, stall, error event --------------------------------------

@all_families
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_stream_dropped_mid_body_is_restarted(rig, reset):
    rig.server.script(rig.api, BreakStream(text_before="half an ans", abrupt=True, reset=reset),
                      Reply(text="the whole answer"))
    resp, took = await _timed(rig.client.chat("ideate", _req()))
    assert resp.text == "the whole answer"
    assert rig.requests() == 2 and took < 5
    first, last = rig.rows()
    assert first["error"].startswith("StreamInterrupted") and "(retried)" in first["error"]
    assert last["error"] is None and last["tries"] == 2
    [retry] = rig.retries()
    assert retry.what == "stream broke" and retry.summary.startswith(
        f"{rig.spec} stream broke, try 2/3")


@all_families
async def test_stream_dropped_every_time_gives_up_after_the_restarts(rig):
    rig.server.script(rig.api, *[BreakStream(abrupt=True)] * 3, Reply(text="never"))
    msg, took = await _timed_fail(StreamInterrupted, rig.client.chat("ideate", _req()),
                                  "gave up after 3 broken streams")
    assert msg.startswith(rig.spec) and rig.requests() == 3 and took < 5
    assert len(rig.rows()) == 3 and rig.server.pending(rig.api) == 1


@all_families
async def test_stream_silent_mid_body_times_out_and_restarts(rig):
    rig.client.settings.llm.request_timeout_s = 0.6
    rig.server.script(rig.api, StallStream(seconds=5), Reply(text="after the stall"))
    resp, took = await _timed(rig.client.chat("ideate", _req()))
    assert resp.text == "after the stall"
    assert rig.requests() == 2 and 0.5 < took < 3
    assert "stream stalled: no data from 127.0.0.1" in rig.rows()[0]["error"]


@all_families
async def test_error_event_inside_a_200_stream_restarts(rig):
    rig.server.script(rig.api, BreakStream(error_type="overloaded_error", message="Overloaded"),
                      Reply(text="ok"))
    resp, took = await _timed(rig.client.chat("ideate", _req()))
    assert resp.text == "ok" and rig.requests() == 2 and took < 5


# -- before the headers: stall, connect --------------------------------------------------

@all_families
async def test_no_headers_within_the_request_timeout_is_no_answer_and_retried(rig):
    rig.client.settings.llm.request_timeout_s = 0.6
    rig.server.script(rig.api, Stall(5), Reply(text="late but fine"))
    resp, took = await _timed(rig.client.chat("ideate", _req()))
    assert resp.text == "late but fine" and rig.requests() == 2 and 0.5 < took < 3
    err = rig.rows()[0]["error"]
    assert err.startswith("NoAnswer") and "no answer from 127.0.0.1" in err
    assert "within 0.6 s" in err


@all_families
async def test_a_stalled_server_is_bounded_by_the_call_deadline(rig):
    rig.client.settings.llm.call_deadline_s = 1.2
    rig.client.settings.llm.request_timeout_s = 10
    rig.server.script(rig.api, Stall(8), Reply(text="never"))
    msg, took = await _timed_fail(DeadlineExceeded, rig.client.chat("ideate", _req()),
                                  "no answer within 1.2 s")
    assert "cannot reach" not in msg and msg.startswith(rig.spec)
    assert rig.requests() == 1 and 1.0 < took < 2.5
    [row] = rig.rows()
    assert row["error"].startswith("DeadlineExceeded")


@all_families
async def test_retries_of_a_stalling_server_stay_inside_the_deadline(rig):
    rig.client.settings.llm.call_deadline_s = 1.5
    rig.client.settings.llm.request_timeout_s = 0.4
    rig.client.settings.llm.max_tries = 20
    rig.server.script(rig.api, *[Stall(5)] * 10)
    msg, took = await _timed_fail(DeadlineExceeded, rig.client.chat("ideate", _req()),
                                  "no answer within 1.5 s")
    assert 1.2 < took < 2.5 and 2 <= rig.requests() <= 5
    assert "no answer from 127.0.0.1" in msg
    # One row per attempt; the last may be cut by the deadline before its request arrived.
    assert rig.requests() <= len(rig.rows()) <= rig.requests() + 1


@pytest.mark.parametrize("family", FAMILIES)
async def test_unreachable_server_reads_cannot_reach(family, llm_server, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _rig(family, llm_server, tmp_path, monkeypatch, base=f"http://127.0.0.1:{port}")
    try:
        msg, took = await _timed_fail(ConnectionFailed, r.client.chat("ideate", _req()),
                                      f"cannot reach 127.0.0.1:{port}")
        assert "gave up after 3 tries" in msg and took < 5
        assert len(r.rows()) == 3 and llm_server.requests == []
        assert [e.what for e in r.retries()] == ["unreachable", "unreachable"]
    finally:
        await r.client.aclose()
        r.store.close()


# -- status errors: rate limits, overload, server errors, auth, quota ---------------------

@all_families
async def test_rate_limit_waits_are_published_and_honoured(rig):
    rig.server.script(rig.api, Fail(429, "rate_limit_error", "slow down",
                                    headers={"retry-after": "0.3"}),
                      Reply(text="fine"))
    resp, took = await _timed(rig.client.chat("ideate", _req(), idea_id=None))
    assert resp.text == "fine" and rig.requests() == 2 and 0.25 < took < 3
    [retry] = rig.retries()
    assert retry.what == "rate-limited" and retry.wait_s == pytest.approx(0.3)
    assert retry.summary.startswith(f"{rig.spec} rate-limited, try 2/3, next in 0 s (lab, "
                                    "ideate)")


@all_families
async def test_a_retry_after_storm_stops_at_the_deadline(rig):
    rig.client.settings.llm.call_deadline_s = 1.0
    rig.client.settings.llm.max_tries = 20
    rig.server.script(rig.api, *[Fail(429, "rate_limit_error", "slow down",
                                      headers={"retry-after": "0.4"})] * 10)
    msg, took = await _timed_fail(DeadlineExceeded, rig.client.chat("ideate", _req()),
                                  "no answer within 1 s")
    assert "slow down" in msg and took < 1.5 and rig.requests() in (2, 3)


@all_families
async def test_server_errors_are_retried_then_give_up(rig):
    status = 529 if rig.family == "anthropic" else 503
    etype = "overloaded_error" if rig.family == "anthropic" else "server_error"
    rig.server.script(rig.api, *[Fail(status, etype, "busy")] * 3, Reply(text="never"))
    exc_type = Overloaded if rig.family == "anthropic" else ServerError
    msg, took = await _timed_fail(exc_type, rig.client.chat("ideate", _req()),
                                  "gave up after 3 tries")
    assert f"HTTP {status}" in msg and rig.requests() == 3 and took < 5


@all_families
async def test_auth_error_is_one_request(rig):
    rig.server.script(rig.api, Fail(401, "authentication_error", "invalid key"),
                      Reply(text="never"))
    msg, took = await _timed_fail(AuthError, rig.client.chat("ideate", _req()), "HTTP 401")
    assert rig.requests() == 1 and took < 3 and rig.retries() == []
    [row] = rig.rows()
    assert row["error"].startswith("AuthError") and row["tries"] == 1


QUOTA_CASES = {
    # Anthropic: structured error.type / error.details.error_code; the wording is neutral.
    "anthropic": [Fail(429, "rate_limit_error", "Request rejected.",
                       code="enforced_spend_limit_reached", headers={"retry-after": "1"}),
                  Fail(400, "billing_error", "Request rejected."),
                  Fail(402, "billing_error", "Request rejected."),
                  BreakStream(error_type="billing_error", message="Request rejected.")],
    "openai": [Fail(429, "insufficient_quota", "Request rejected.", code="insufficient_quota"),
               Fail(429, "requests", "Request rejected.", code="insufficient_quota",
                    headers={"retry-after": "1"}),
               BreakStream(error_type="insufficient_quota", message="Request rejected.",
                           code="insufficient_quota")],
}


QUOTA_PARAMS = [(f, i) for f in FAMILIES
                for i in range(len(QUOTA_CASES["anthropic" if f == "anthropic" else "openai"]))]


@pytest.mark.parametrize("family,case", QUOTA_PARAMS)
async def test_spend_limit_by_structured_code_is_one_request(family, case, llm_server, tmp_path,
                                                             monkeypatch):
    rig = _rig(family, llm_server, tmp_path, monkeypatch)
    try:
        fault = QUOTA_CASES["anthropic" if family == "anthropic" else "openai"][case]
        rig.server.script(rig.api, fault, Reply(text="never"))
        msg, took = await _timed_fail(QuotaExceeded, rig.client.chat("ideate", _req()),
                                      "spend limit")
        assert "retrying cannot help" in msg and msg.startswith(rig.spec)
        assert rig.requests() == 1 and took < 3 and rig.retries() == []
        assert rig.server.pending(rig.api) == 1
        [row] = rig.rows()
        assert row["error"].startswith("QuotaExceeded")
    finally:
        await rig.client.aclose()
        rig.store.close()


@all_families
async def test_plain_rate_limit_with_the_same_wording_is_still_retried(rig):
    # Not a spend limit: no structured code, so it is waited out.
    rig.server.script(rig.api, Fail(429, "rate_limit_error", "Request rejected."),
                      Reply(text="ok"))
    resp, _ = await _timed(rig.client.chat("ideate", _req()))
    assert resp.text == "ok" and rig.requests() == 2
    assert [e.what for e in rig.retries()] == ["rate-limited"]
    assert rig.rows()[0]["error"].startswith(RateLimited.__name__)


@all_families
async def test_keep_alive_connection_is_reused_and_streams_are_chunked(rig):
    rig.server.script(rig.api, Reply(text="one"), Reply(text="two"))
    assert (await rig.client.chat("ideate", _req())).text == "one"
    assert (await rig.client.chat("ideate", _req())).text == "two"
    assert rig.server.connections == 1


def test_no_answer_is_retryable_and_named():
    assert NoAnswer("x").retryable and NoAnswer("x").what == "no answer"
    assert (AnthropicProvider.provider, OpenAIProvider.__name__) == ("anthropic",
                                                                     "OpenAIProvider")
