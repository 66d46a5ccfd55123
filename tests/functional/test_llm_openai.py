"""The OpenAI provider (and an OpenAI-compatible endpoint from config) through the real
SDK against the loopback fake server: streaming, tool calls assembled from deltas, cached
token accounting, and the retry policy."""

from __future__ import annotations

import time

import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.base import (
    AuthError,
    LLMRequest,
    Message,
    QuotaExceeded,
    ServerError,
    StreamInterrupted,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from aisci.engine.llm.client import LLMClient
from support.llm_server import OPENAI, BreakStream, Fail, Reply

VIEW = ToolSpec("view_file", "Show a file", {"type": "object",
                                             "properties": {"path": {"type": "string"}}})


def _settings(**extra) -> Settings:
    data = {"models": {"default": "openai:gpt-4o-mini"},
            "llm": {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_tries": 3,
                    "call_deadline_s": 20, "stream_restarts": 1, "request_timeout_s": 10}}
    for k, v in extra.items():
        data[k] = {**data.get(k, {}), **v}
    return Settings.model_validate(data)


@pytest.fixture
def env(llm_server, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test")
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.openai_base_url)
    store = LabStore(tmp_path / "lab")
    sleeps: list[float] = []

    async def record_sleep(s: float) -> None:
        sleeps.append(s)

    client = LLMClient(_settings(), store, EventBus(), sleep=record_sleep)
    yield {"server": llm_server, "client": client, "store": store, "sleeps": sleeps}
    store.close()


def _req(**kw) -> LLMRequest:
    return LLMRequest(system="You are a careful scientist.",
                      messages=[Message(role="user", text="Propose one idea.")], step="t/1", **kw)


async def test_streams_text_and_tool_calls_with_cached_usage_and_cost(env):
    server, client, store = env["server"], env["client"], env["store"]
    server.script(OPENAI, Reply(text="Looking at two files.",
                                tool_calls=[("view_file", {"path": "experiment.py"}),
                                            ("view_file", {"path": "plot.py", "n": [1, 2]})],
                                input_tokens=1000, cache_read_tokens=4000, output_tokens=500))
    chunks: list[str] = []
    resp = await client.chat("experiment", _req(tools=[VIEW]), idea_id=None,
                             on_text=chunks.append)
    assert resp.text == "Looking at two files." and len(chunks) > 3
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == [
        ("call_0000", "view_file", {"path": "experiment.py"}),
        ("call_0001", "view_file", {"path": "plot.py", "n": [1, 2]})]
    assert resp.stop_reason == "tool_calls"
    # prompt_tokens (5000) include the 4000 cached ones, priced separately.
    assert (resp.usage.input_tokens, resp.usage.cache_read_tokens,
            resp.usage.output_tokens) == (1000, 4000, 500)
    [row] = store.llm_calls()
    assert row["provider"] == "openai" and row["model"] == "gpt-4o-mini"
    # gpt-4o-mini: $0.15 in, $0.60 out, $0.075 cached input per million tokens.
    assert row["cost_usd"] == pytest.approx((1000 * 0.15 + 500 * 0.6 + 4000 * 0.075) / 1e6)


async def test_request_shape(env):
    server, client = env["server"], env["client"]
    server.script(OPENAI, Reply(text="ok"))
    call = ToolCall(id="call_9", name="view_file", arguments={"path": "a.py"})
    req = LLMRequest(system="sys", messages=[
        Message(role="user", text="look"),
        Message(role="assistant", text="", tool_calls=(call,)),
        Message(role="user", text="and now?", tool_results=(ToolResult("call_9", "x = 1"),))],
        tools=[VIEW], max_tokens=99, temperature=0.3, step="t/2")
    await client.chat("experiment", req)
    [rec] = server.requests_for(OPENAI)
    body = rec.body
    assert rec.headers["authorization"] == "Bearer sk-openai-test"
    assert rec.headers.get("x-stainless-retry-count") == "0"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 99 and body["temperature"] == 0.3
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool",
                                                     "user"]
    assert body["messages"][2]["tool_calls"][0]["function"] == {
        "name": "view_file", "arguments": '{"path": "a.py"}'}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "call_9", "content": "x = 1"}
    assert body["tools"][0]["function"]["parameters"]["properties"]["path"]["type"] == "string"


async def test_429_retry_after_then_success(env):
    server, client, store = env["server"], env["client"], env["store"]
    server.script(OPENAI, Fail(429, "requests", "Rate limit reached", code="rate_limit_exceeded",
                               headers={"retry-after-ms": "1500"}), Reply(text="fine"))
    assert (await client.chat("ideate", _req())).text == "fine"
    assert env["sleeps"] == [1.5]
    assert [r["tries"] for r in store.llm_calls()] == [1, 2]


async def test_retry_after_is_capped(env):
    server, client = env["server"], env["client"]
    client.settings.llm.retry_after_cap_s = 2.0
    server.script(OPENAI, Fail(429, "requests", "Rate limit reached",
                               headers={"retry-after": "3600"}), Reply(text="fine"))
    await client.chat("ideate", _req())
    assert env["sleeps"] == [2.0]


async def test_server_errors_give_up_after_max_tries(env):
    server, client = env["server"], env["client"]
    server.script(OPENAI, *[Fail(503, "server_error", "The server is overloaded")] * 3)
    t0 = time.monotonic()
    with pytest.raises(ServerError, match="gave up after 3 tries"):
        await client.chat("ideate", _req())
    assert time.monotonic() - t0 < 10
    assert len(server.requests_for(OPENAI)) == 3


async def test_401_fails_at_once(env):
    server, client = env["server"], env["client"]
    server.script(OPENAI, Fail(401, "invalid_request_error", "Incorrect API key provided",
                               code="invalid_api_key"), Reply(text="never"))
    with pytest.raises(AuthError, match="OPENAI_API_KEY"):
        await client.chat("ideate", _req())
    assert len(server.requests_for(OPENAI)) == 1 and env["sleeps"] == []


async def test_insufficient_quota_fails_at_once(env):
    server, client, store = env["server"], env["client"], env["store"]
    server.script(OPENAI, Fail(429, "insufficient_quota", "You exceeded your current quota, "
                               "please check your plan and billing details.",
                               code="insufficient_quota"), Reply(text="never"))
    with pytest.raises(QuotaExceeded):
        await client.chat("ideate", _req())
    assert len(server.requests_for(OPENAI)) == 1 and env["sleeps"] == []
    assert store.llm_calls()[0]["error"].startswith("QuotaExceeded")


async def test_broken_streams_restart_at_most_n_times(env):
    server, client = env["server"], env["client"]
    server.script(OPENAI, BreakStream(), BreakStream(abrupt=True), Reply(text="never"))
    with pytest.raises(StreamInterrupted, match="gave up after 2 broken streams"):
        await client.chat("ideate", _req())
    assert len(server.requests_for(OPENAI)) == 2
    server.script(OPENAI, BreakStream(abrupt=True))  # queue now: Reply, BreakStream
    assert (await client.chat("ideate", _req())).text == "never"


async def test_openai_compatible_endpoint_from_config(llm_server, monkeypatch, tmp_path):
    monkeypatch.setenv("LOCAL_LLM_KEY", "local-secret")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    settings = _settings(models={"default": "localvllm:qwen2.5-coder"},
                         llm={"endpoints": {"localvllm": {
                             "base_url": llm_server.openai_base_url,
                             "api_key_env": "LOCAL_LLM_KEY"}}})
    with LabStore(tmp_path / "lab") as store:
        client = LLMClient(settings, store, None)
        llm_server.script(OPENAI, Reply(text="hello from vllm", input_tokens=10,
                                        output_tokens=3))
        resp = await client.chat("ideate", _req(max_tokens=50))
        await client.aclose()
        assert resp.text == "hello from vllm" and resp.provider == "localvllm"
        [rec] = llm_server.requests_for(OPENAI)
        assert rec.headers["authorization"] == "Bearer local-secret"
        # Compatible servers get the classic parameter name.
        assert rec.body["max_tokens"] == 50 and rec.body["model"] == "qwen2.5-coder"
        [row] = store.llm_calls()
        # Not in the price table: recorded as unknown, never guessed.
        assert row["cost_usd"] is None and store.unknown_cost_calls() == 1


@pytest.mark.parametrize("model,sends_temperature", [
    ("gpt-4o-mini", True), ("gpt-4.1", True), ("o3", False), ("gpt-5", False),
    ("gpt-6.1-sol", False)])
async def test_reasoning_models_get_no_temperature(env, model, sends_temperature):
    server, client = env["server"], env["client"]
    client.settings.models.default = f"openai:{model}"
    server.script(OPENAI, Reply(text="ok"))
    await client.chat("ideate", LLMRequest(system="s", messages=[Message(role="user", text="q")],
                                           temperature=0.75, max_tokens=50, step="t/r"))
    body = server.requests_for(OPENAI)[-1].body
    assert ("temperature" in body) == sends_temperature
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
