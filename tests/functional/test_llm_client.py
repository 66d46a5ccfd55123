"""The provider-neutral client: JSON replies with one bounded repair request, the scripted
cassette provider, provider selection per stage, and bounded backoff."""

from __future__ import annotations

import json

import pytest
from aisci.engine.config import Settings
from aisci.engine.events import EventBus
from aisci.engine.lab.store import LabStore
from aisci.engine.llm.base import (
    BadRequest,
    LLMRequest,
    MalformedOutput,
    Message,
    RateLimited,
    ScriptMissing,
)
from aisci.engine.llm.client import LLMClient, extract_json, parse_json_reply
from aisci.engine.llm.providers import make_provider
from aisci.engine.llm.scripted import ScriptedProvider
from pydantic import BaseModel
from support.llm_server import ANTHROPIC, Reply


class IdeaReply(BaseModel):
    Name: str
    Novelty: int


@pytest.fixture
def anthropic_client(llm_server, monkeypatch, tmp_path):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.base_url)
    settings = Settings.model_validate({"models": {"default": "anthropic:claude-haiku-4-5"}})
    store = LabStore(tmp_path / "lab")
    yield LLMClient(settings, store, EventBus()), store
    store.close()


def _req() -> LLMRequest:
    return LLMRequest(system="s", messages=[Message(role="user", text="idea please")],
                      step="idea-1/round-1")


async def test_malformed_json_gets_exactly_one_repair_request(anthropic_client, llm_server):
    client, store = anthropic_client
    llm_server.script(ANTHROPIC, Reply(text='Here: {"Name": "x", "Novelty": }'),
                      Reply(text='```json\n{"Name": "grok_wd", "Novelty": 7}\n```'))
    model, resp = await client.chat_json("ideate", _req(), IdeaReply)
    assert model == IdeaReply(Name="grok_wd", Novelty=7)
    reqs = llm_server.requests_for(ANTHROPIC)
    assert len(reqs) == 2
    repair_msgs = reqs[1].body["messages"]
    # The repair request carries the bad reply and names the problem.
    assert repair_msgs[1]["role"] == "assistant"
    assert "invalid JSON" in repair_msgs[2]["content"][0]["text"]
    assert "IdeaReply" in repair_msgs[2]["content"][0]["text"]
    assert len(store.llm_calls()) == 2


async def test_still_malformed_after_the_repair_is_a_clear_error(anthropic_client, llm_server):
    client, _ = anthropic_client
    llm_server.script(ANTHROPIC, Reply(text="no json at all"),
                      Reply(text='{"Name": "x", "Novelty": "high"}'), Reply(text="unused"))
    with pytest.raises(MalformedOutput, match=r"ideate: .*IdeaReply.*1 repair request.*Novelty"):
        await client.chat_json("ideate", _req(), IdeaReply)
    assert len(llm_server.requests_for(ANTHROPIC)) == 2
    assert llm_server.pending(ANTHROPIC) == 1


def test_extract_json_prefers_the_last_fenced_block():
    text = 'draft ```json\n{"a": 1}\n``` final ```json\n{"a": 2}\n```'
    assert extract_json(text) == {"a": 2}
    assert extract_json('THOUGHT: ok\n{"a": {"b": 3}}') == {"a": {"b": 3}}
    with pytest.raises(MalformedOutput, match="no JSON"):
        extract_json("nothing here")


def test_the_reply_is_the_object_that_fits_the_schema():
    """A valid answer followed by prose quoting another object is still the answer; when
    no object fits, the error names what the most likely one lacks."""
    class Score(BaseModel):
        title: str
        score: int

    text = ('{"title": "Sparse attention probes", "score": 7}\n'
            'If you prefer, I can also return it as {"format": "yaml"}.')
    assert parse_json_reply(text, Score) == Score(title="Sparse attention probes", score=7)
    with pytest.raises(MalformedOutput, match="title: Field required"):
        parse_json_reply('{"format": "yaml"} or {"other": 1}', Score)


# -- scripted provider ------------------------------------------------------------------

def _cassette(tmp_path, responses) -> str:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"responses": responses}))
    return str(path)


async def test_scripted_exact_then_glob_and_missing(tmp_path):
    path = _cassette(tmp_path, [
        {"match": "review/*/reviewer-*", "text": "glob"},
        {"match": "review/p1/reviewer-2", "text": "exact"},
        {"match": "experiment/p1/run-1", "text": "",
         "tool_calls": [{"name": "replace_text", "arguments": {"path": "experiment.py"}}]}])
    settings = Settings.model_validate({"models": {"default": f"scripted:{path}"}})
    client = LLMClient(settings, None, None)
    req = _req()
    req.step = "p1/reviewer-2"
    assert (await client.chat("review", req)).text == "exact"
    req.step = "p1/reviewer-3"
    assert (await client.chat("review", req)).text == "glob"
    req.step = "p1/run-1"
    resp = await client.chat("experiment", req)
    assert resp.tool_calls[0].name == "replace_text"
    assert resp.tool_calls[0].arguments == {"path": "experiment.py"}
    req.step = "p1/run-2"
    with pytest.raises(ScriptMissing, match="experiment/p1/run-2"):
        await client.chat("experiment", req)


def test_scripted_rejects_a_bad_cassette(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BadRequest, match="not valid JSON"):
        ScriptedProvider(str(bad))
    with pytest.raises(BadRequest, match="no cassette"):
        ScriptedProvider(str(tmp_path / "missing.json"))


def test_make_provider_names_known_providers():
    settings = Settings()
    with pytest.raises(BadRequest, match="unknown provider 'mistral'.*llm.endpoints.mistral"):
        make_provider("mistral:large", settings)
    with pytest.raises(BadRequest, match="expected 'provider:model'"):
        make_provider("gpt-4o", settings)


def test_stage_model_choice():
    s = Settings.model_validate({"models": {"default": "anthropic:claude-sonnet-4-5",
                                            "review": "openai:gpt-4o", "cite": "openai:o4-mini"}})
    client = LLMClient(s, None, None)
    assert client.model_for_stage("review") == "openai:gpt-4o"
    assert client.model_for_stage("cite") == "openai:o4-mini"
    assert client.model_for_stage("write") == "anthropic:claude-sonnet-4-5"
    assert client.model_for_stage("not-a-stage") == "anthropic:claude-sonnet-4-5"


def test_exponential_backoff_is_bounded_and_jittered():
    s = Settings.model_validate({"llm": {"backoff_base_s": 1.0, "backoff_max_s": 8.0}})
    client = LLMClient(s, None, None)
    exc = RateLimited("x")
    waits = [client._backoff(t, exc) for t in range(1, 12)]
    assert all(0 < w <= 8.0 for w in waits)
    assert 0.5 <= waits[0] <= 1.0 and 4.0 <= waits[-1] <= 8.0
    assert client._backoff(1, RateLimited("x", retry_after=500)) == s.llm.retry_after_cap_s


async def test_scripted_tool_call_ids_are_stable_across_processes(tmp_path):
    import subprocess
    import sys
    path = _cassette(tmp_path, [{"match": "plot/p/1", "tool_calls": [
        {"name": "create_file", "arguments": {"path": "plot.py"}}]}])
    code = ("import asyncio, sys; from aisci.engine.llm.scripted import ScriptedProvider;"
            "from aisci.engine.llm.base import LLMRequest;"
            "r = asyncio.run(ScriptedProvider(sys.argv[1]).complete("
            "LLMRequest(system='', messages=[], step='p/1'), 'plot', None));"
            "print(r.tool_calls[0].id)")
    ids = {subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          timeout=60).stdout.strip() for _ in range(2)}
    assert len(ids) == 1 and next(iter(ids)).startswith("call_")
