"""The Anthropic provider through the real SDK against the loopback fake server: streaming,
tool calls, prompt caching, usage and cost in the store, and the retry policy."""

from __future__ import annotations

import time

import pytest
from aisci.engine import events as ev
from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.base import (
    AuthError,
    BadRequest,
    LLMRequest,
    Message,
    Overloaded,
    QuotaExceeded,
    StreamInterrupted,
    ToolResult,
    ToolSpec,
)
from aisci.engine.llm.client import LLMClient
from support.llm_server import ANTHROPIC, BreakStream, Fail, Reply, Stall

MODEL = "anthropic:claude-haiku-4-5"
VIEW = ToolSpec("view_file", "Show a file", {"type": "object",
                                             "properties": {"path": {"type": "string"}}})


@pytest.fixture
def env(llm_server, monkeypatch, tmp_path):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.base_url)
    settings = Settings.model_validate({
        "models": {"default": MODEL},
        "llm": {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_tries": 3,
                "call_deadline_s": 20, "stream_restarts": 2, "request_timeout_s": 10}})
    store = LabStore(tmp_path / "lab")
    bus = EventBus()
    sleeps: list[float] = []

    async def record_sleep(s: float) -> None:
        sleeps.append(s)

    client = LLMClient(settings, store, bus, sleep=record_sleep)
    sub = bus.subscribe()
    yield {"server": llm_server, "client": client, "store": store, "bus": sub,
           "sleeps": sleeps, "settings": settings}
    store.close()


def _req(step: str = "t/1", **kw) -> LLMRequest:
    return LLMRequest(system="You are a careful scientist.",
                      messages=[Message(role="user", text="TEMPLATE CODE"),
                                Message(role="user", text="Propose one idea.")],
                      step=step, **kw)


async def test_streams_text_tool_calls_usage_and_cost(env):
    server, client, store = env["server"], env["client"], env["store"]
    server.script(ANTHROPIC, Reply(text="I will look at the code first.",
                                   tool_calls=[("view_file", {"path": "experiment.py"})],
                                   input_tokens=1000, output_tokens=200,
                                   cache_read_tokens=5000, cache_write_tokens=2000))
    chunks: list[str] = []
    resp = await client.chat("ideate", _req(tools=[VIEW], cache_prefix_messages=1),
                             idea_id=None, on_text=chunks.append)
    assert resp.text == "I will look at the code first."
    assert len(chunks) > 3 and "".join(chunks) == resp.text
    assert [(c.name, c.arguments) for c in resp.tool_calls] == [
        ("view_file", {"path": "experiment.py"})]
    assert resp.tool_calls[0].id.startswith("toolu_")
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.cache_read_tokens,
            resp.usage.cache_write_tokens) == (1000, 200, 5000, 2000)
    [row] = store.llm_calls()
    assert row["provider"] == "anthropic" and row["model"] == "claude-haiku-4-5"
    assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (5000, 2000)
    # haiku-4-5: $1 in, $5 out, $1.25 cache write, $0.10 cache read per million tokens.
    expected = (1000 * 1.0 + 200 * 5.0 + 5000 * 0.1 + 2000 * 1.25) / 1e6
    assert row["cost_usd"] == pytest.approx(expected)
    assert store.spend() == pytest.approx(expected)
    kinds = [e.kind for e in env["bus"].drain()]
    assert kinds[0] == "LLMCallStarted" and "LLMStreamed" in kinds
    assert "LLMCallFinished" in kinds and kinds[-1] == "CostUpdated"


async def test_request_marks_the_stable_prefix_for_caching(env):
    server, client = env["server"], env["client"]
    server.script(ANTHROPIC, Reply(text="ok"))
    await client.chat("experiment", _req(tools=[VIEW], cache_prefix_messages=1, max_tokens=123))
    [rec] = server.requests_for(ANTHROPIC)
    body = rec.body
    # The key from the environment reaches the server (SDK 2.x sends it as a bearer token).
    assert "sk-test-not-a-real-key" in (rec.headers.get("x-api-key", "")
                                        + rec.headers.get("authorization", ""))
    assert body["stream"] is True and body["max_tokens"] == 123
    assert "temperature" not in body and body["model"] == "claude-haiku-4-5"
    assert body["system"] == [{"type": "text", "text": "You are a careful scientist.",
                               "cache_control": {"type": "ephemeral"}}]
    first, second = body["messages"]
    assert first["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in b for b in second["content"])
    assert body["tools"][0]["name"] == "view_file"
    assert body["tools"][0]["input_schema"]["properties"]["path"]["type"] == "string"


async def test_tool_results_and_images_go_out_as_content_blocks(env):
    server, client = env["server"], env["client"]
    server.script(ANTHROPIC, Reply(text="done"))
    from aisci.engine.llm.base import ToolCall
    call = ToolCall(id="toolu_0007", name="view_file", arguments={"path": "a.py"})
    png = b"\x89PNG\r\n\x1a\nfake"
    req = LLMRequest(system="s", messages=[
        Message(role="user", text="look", images=(png,)),
        Message(role="assistant", text="", tool_calls=(call,)),
        Message(role="user", tool_results=(ToolResult("toolu_0007", "print(1)"),))],
        step="t/2")
    await client.chat("review", req)
    msgs = server.requests_for(ANTHROPIC)[0].body["messages"]
    assert msgs[0]["content"][0]["type"] == "image"
    assert msgs[0]["content"][0]["source"]["media_type"] == "image/png"
    assert msgs[1]["content"] == [{"type": "tool_use", "id": "toolu_0007", "name": "view_file",
                                   "input": {"path": "a.py"}}]
    assert msgs[2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_0007",
                                     "content": "print(1)", "is_error": False}


async def test_429_with_retry_after_is_honoured_then_succeeds(env):
    server, client, store = env["server"], env["client"], env["store"]
    server.script(ANTHROPIC, Fail(429, "rate_limit_error", "slow down",
                                  headers={"retry-after": "7"}), Reply(text="fine"))
    resp = await client.chat("ideate", _req())
    assert resp.text == "fine"
    assert env["sleeps"] == [7.0]
    assert len(server.requests_for(ANTHROPIC)) == 2
    # The SDK itself never retried: every request we saw is a first try.
    assert {r.headers.get("x-stainless-retry-count") for r in server.requests} == {"0"}
    # One row per attempt: the rate-limited one, then the answer.
    first, row = store.llm_calls()
    assert first["error"].startswith("RateLimited") and first["error"].endswith("(retried)")
    assert first["tries"] == 1 and first["call_id"] == row["call_id"]
    assert row["tries"] == 2 and row["error"] is None
    retries = [e for e in env["bus"].drain() if isinstance(e, ev.LLMRetry)]
    assert retries and retries[0].wait_s == 7.0
    assert retries[0].summary.startswith(
        f"{MODEL} rate-limited, try 2/3, next in 7 s (lab, ideate)")


async def test_three_529_give_up_with_a_clear_error_within_the_deadline(env):
    server, client, store = env["server"], env["client"], env["store"]
    server.script(ANTHROPIC, *[Fail(529, "overloaded_error", "Overloaded")] * 3)
    t0 = time.monotonic()
    with pytest.raises(Overloaded, match=r"HTTP 529.*gave up after 3 tries"):
        await client.chat("ideate", _req())
    assert time.monotonic() - t0 < env["settings"].llm.call_deadline_s
    assert len(server.requests_for(ANTHROPIC)) == 3
    assert len(env["sleeps"]) == 2 and all(s <= 0.05 for s in env["sleeps"])
    rows = store.llm_calls()
    assert [r["tries"] for r in rows] == [1, 2, 3]
    row = rows[-1]
    assert row["error"].startswith("Overloaded") and row["cost_usd"] is None
    assert "gave up after 3 tries" in row["error"]


async def test_deadline_bounds_a_stalled_server(env, monkeypatch):
    server, client = env["server"], env["client"]
    client.settings.llm.call_deadline_s = 0.5
    server.script(ANTHROPIC, Stall(3))
    t0 = time.monotonic()
    from aisci.engine.llm.base import DeadlineExceeded
    with pytest.raises(DeadlineExceeded, match="deadline"):
        await client.chat("ideate", _req())
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_fail_at_once(env, status):
    server, client = env["server"], env["client"]
    server.script(ANTHROPIC, Fail(status, "authentication_error", "invalid x-api-key"),
                  Reply(text="never"))
    with pytest.raises(AuthError, match="ANTHROPIC_API_KEY"):
        await client.chat("ideate", _req())
    assert len(server.requests_for(ANTHROPIC)) == 1 and env["sleeps"] == []


async def test_spend_limit_429_fails_at_once(env):
    server, client = env["server"], env["client"]
    server.script(ANTHROPIC, Fail(429, "rate_limit_error",
                                  "You have reached your specified API usage limits / "
                                  "credit balance is too low", headers={"retry-after": "1"}),
                  Reply(text="never"))
    with pytest.raises(QuotaExceeded, match="retrying cannot help"):
        await client.chat("ideate", _req())
    assert len(server.requests_for(ANTHROPIC)) == 1 and env["sleeps"] == []


async def test_missing_key_is_a_clear_auth_error(env, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(AuthError, match="ANTHROPIC_API_KEY is not set"):
        await env["client"].chat("ideate", _req())
    assert env["server"].requests == []


async def test_mid_stream_error_restarts_from_the_start(env):
    server, client = env["server"], env["client"]
    server.script(ANTHROPIC, BreakStream(text_before="half an ans"),
                  BreakStream(abrupt=True), Reply(text="whole answer"))
    chunks: list[str] = []
    resp = await client.chat("ideate", _req(), on_text=chunks.append)
    assert resp.text == "whole answer"
    assert len(server.requests_for(ANTHROPIC)) == 3
    # Every restart sends the identical request again.
    bodies = [r.body for r in server.requests_for(ANTHROPIC)]
    assert bodies[0] == bodies[1] == bodies[2]


async def test_mid_stream_errors_give_up_after_n_restarts(env):
    server, client = env["server"], env["client"]
    n = env["settings"].llm.stream_restarts
    server.script(ANTHROPIC, *[BreakStream()] * (n + 2))
    with pytest.raises(StreamInterrupted, match=f"gave up after {n + 1} broken streams"):
        await client.chat("ideate", _req())
    assert len(server.requests_for(ANTHROPIC)) == n + 1
    assert server.pending(ANTHROPIC) == 1


async def test_base_url_from_settings_when_no_env(llm_server, monkeypatch, tmp_path):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    settings = Settings.model_validate({"models": {"default": MODEL},
                                        "llm": {"anthropic_base_url": llm_server.base_url}})
    client = LLMClient(settings, None, None)
    llm_server.script(ANTHROPIC, Reply(text="via settings"))
    assert (await client.chat("ideate", _req())).text == "via settings"
    await client.aclose()


async def test_400_fails_at_once_and_500_is_retried(env):
    from aisci.engine.llm.base import BadRequest
    server, client = env["server"], env["client"]
    server.script(ANTHROPIC, Fail(400, "invalid_request_error", "messages: field required"))
    with pytest.raises(BadRequest, match="HTTP 400 invalid_request_error: messages"):
        await client.chat("ideate", _req())
    assert len(server.requests_for(ANTHROPIC)) == 1
    server.script(ANTHROPIC, Fail(500, "api_error", "Internal server error"), Reply(text="ok"))
    assert (await client.chat("ideate", _req())).text == "ok"
    assert len(server.requests_for(ANTHROPIC)) == 3


async def test_unreachable_server_is_a_connection_error(env, monkeypatch):
    import socket

    from aisci.engine.llm.base import ConnectionFailed
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    client = LLMClient(env["settings"], None, None, sleep=lambda s: _no_sleep())
    with pytest.raises(ConnectionFailed, match="gave up after 3 tries"):
        await client.chat("ideate", _req())


async def _no_sleep() -> None:
    return None


# -- adaptive-thinking models (Claude 5 generation) ---------------------------------------

THINKER = "claude-sonnet-5-5"


def _tool_loop_turn(first, result: str = "print(1)") -> LLMRequest:
    req = _req(step="t/2", tools=[VIEW])
    call = first.tool_calls[0]
    req.messages = [*req.messages, first.as_message(),
                    Message(role="user", tool_results=(ToolResult(call.id, result),))]
    return req


async def test_thinking_blocks_go_back_verbatim_in_a_tool_loop(env):
    server, client = env["server"], env["client"]
    env["settings"].models.default = f"anthropic:{THINKER}"
    server.script(ANTHROPIC,
                  Reply(thinking="The bug is probably in the loss; read it first.",
                        tool_calls=[("view_file", {"path": "experiment.py"})]),
                  Reply(text="Done."))
    first = await client.chat("experiment", _req(tools=[VIEW]), idea_id=None)
    assert first.text == "" and first.tool_calls[0].name == "view_file"
    second = await client.chat("experiment", _tool_loop_turn(first), idea_id=None)
    assert second.text == "Done."
    body = server.requests_for(ANTHROPIC)[-1].body
    assistant = body["messages"][2]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0]["type"] == "thinking"
    assert assistant["content"][0]["thinking"] == "The bug is probably in the loss; read it first."
    assert assistant["content"][0]["signature"].startswith("sig")
    assert assistant["content"][1]["type"] == "tool_use"
    # Nothing these models reject: no sampling parameters, no forced tool choice.
    for key in ("temperature", "top_p", "top_k", "tool_choice"):
        assert key not in body


async def test_dropping_the_thinking_block_is_what_the_api_rejects(env):
    """The fake enforces the rule; a turn rebuilt without its thinking block fails."""
    server, client = env["server"], env["client"]
    env["settings"].models.default = f"anthropic:{THINKER}"
    server.script(ANTHROPIC, Reply(thinking="plan", tool_calls=[("view_file", {"path": "a"})]))
    first = await client.chat("experiment", _req(tools=[VIEW]), idea_id=None)
    req = _tool_loop_turn(first)
    stripped = req.messages[2]
    req.messages[2] = Message(role="assistant", text=stripped.text,
                              tool_calls=stripped.tool_calls)
    with pytest.raises(BadRequest, match="Expected `thinking`"):
        await client.chat("experiment", req, idea_id=None)


async def test_another_model_gets_the_turn_without_foreign_thinking(env):
    server, client = env["server"], env["client"]
    env["settings"].models.default = f"anthropic:{THINKER}"
    server.script(ANTHROPIC, Reply(thinking="plan", tool_calls=[("view_file", {"path": "a"})]),
                  Reply(text="ok"))
    first = await client.chat("experiment", _req(tools=[VIEW]), idea_id=None)
    env["settings"].models.default = MODEL
    await client.chat("experiment", _tool_loop_turn(first), idea_id=None)
    assistant = server.requests_for(ANTHROPIC)[-1].body["messages"][2]
    assert [b["type"] for b in assistant["content"]] == ["tool_use"]


async def test_effort_setting_is_sent_as_output_config(env):
    server, client = env["server"], env["client"]
    env["settings"].models.default = f"anthropic:{THINKER}"
    env["settings"].llm.effort = "low"
    server.script(ANTHROPIC, Reply(text="ok"))
    await client.chat("ideate", _req(), idea_id=None)
    assert server.requests_for(ANTHROPIC)[-1].body["output_config"] == {"effort": "low"}


async def test_edit_tool_loop_with_a_thinking_model_edits_the_file(env, tmp_path):
    """The experiment stage's real loop (edit tools, three turns) against a model that
    thinks before each tool call: every replayed turn keeps its signed thinking."""
    from aisci.engine.agent.edit_tools import EditTools
    from aisci.engine.agent.tool_loop import run_tool_loop
    from aisci.engine.llm.client import StageLLM

    server, client = env["server"], env["client"]
    env["settings"].models.default = f"anthropic:{THINKER}"
    root = tmp_path / "idea"
    root.mkdir()
    (root / "experiment.py").write_text("WEIGHT_DECAY = 0.5\n")
    server.script(ANTHROPIC,
                  Reply(thinking="Look at the file first.",
                        tool_calls=[("view_file", {"path": "experiment.py"})]),
                  Reply(thinking="Raise the weight decay as planned.",
                        tool_calls=[("replace_text", {"path": "experiment.py",
                                                      "old_text": "WEIGHT_DECAY = 0.5",
                                                      "new_text": "WEIGHT_DECAY = 1.0"})]),
                  Reply(thinking="Done; summarise.", text="Weight decay is now 1.0."))
    result = await run_tool_loop(StageLLM(client, "experiment", None), system="sys",
                                 messages=[Message(role="user", text="Run 1: wd 1.0")],
                                 tools=EditTools.for_stage(root, "experiment"), step="run-1",
                                 max_turns=5)
    assert not result.exhausted and result.turns == 3
    assert result.text == "Weight decay is now 1.0."
    assert (root / "experiment.py").read_text() == "WEIGHT_DECAY = 1.0\n"
    last = server.requests_for(ANTHROPIC)[-1].body["messages"]
    thoughts = [b["thinking"] for m in last if m["role"] == "assistant"
                for b in m["content"] if b["type"] == "thinking"]
    assert thoughts == ["Look at the file first.", "Raise the weight decay as planned."]
