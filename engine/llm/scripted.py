"""The scripted provider: replays recorded answers from a cassette (offline demo, tests).

A cassette is JSON: ``{"description": ..., "responses": [{"match": "<stage>/<step>",
"text": ..., "tool_calls": [{"name": ..., "arguments": {...}}]}, ...]}``. A request is
answered by the first entry whose ``match`` equals ``<stage>/<step>``, else the first
whose ``match`` is a glob pattern (``review/*/reviewer-*``) that matches it. A request
with no answer fails with ScriptMissing naming the key, so a cassette gap is obvious.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

from aisci.engine.llm.base import (
    BadRequest,
    LLMRequest,
    LLMResponse,
    ScriptMissing,
    TextCallback,
    ToolCall,
    Usage,
)
from aisci.engine.llm.chaos import Chaos, parse_chaos_spec
from aisci.engine.resources import data_dir


def resolve_cassette(name: str) -> Path:
    """A path, or the name of a bundled cassette in engine/data/cassettes/."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    bundled = data_dir() / "cassettes" / (name if name.endswith(".json") else f"{name}.json")
    if bundled.is_file():
        return bundled
    raise BadRequest(f"scripted:{name}: no cassette file {p} and no bundled cassette {bundled.name}")


class ScriptedProvider:
    provider = "scripted"

    def __init__(self, cassette: str, *, chunk_delay_s: float = 0.0,
                 chaos: Chaos | None = None) -> None:
        cassette, spec_chaos = parse_chaos_spec(cassette)
        self.chaos = chaos or spec_chaos
        self.path = resolve_cassette(cassette)
        self.model = self.path.stem
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BadRequest(f"{self.path}: cassette is not valid JSON ({exc})") from None
        entries = data.get("responses") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise BadRequest(f"{self.path}: expected an object with a 'responses' list")
        self.description = str(data.get("description", ""))
        self.exact: dict[str, dict[str, Any]] = {}
        self.patterns: list[tuple[str, dict[str, Any]]] = []
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("match"), str):
                raise BadRequest(f"{self.path}: responses[{i}] needs a string 'match'")
            key = e["match"]
            if any(ch in key for ch in "*?["):
                self.patterns.append((key, e))
            else:
                self.exact.setdefault(key, e)
        self.chunk_delay_s = chunk_delay_s
        self.requests: list[tuple[str, LLMRequest]] = []

    def answer_for(self, key: str) -> dict[str, Any] | None:
        if key in self.exact:
            return self.exact[key]
        for pattern, entry in self.patterns:
            if fnmatch.fnmatchcase(key, pattern):
                return entry
        return None

    async def complete(self, request: LLMRequest, stage: str,
                       on_text: TextCallback | None) -> LLMResponse:
        key = f"{stage}/{request.step}"
        self.requests.append((key, request))
        repair = "/repair-" in key
        entry = self.answer_for(key.split("/repair-")[0] if repair and self.chaos else key)
        if entry is None:
            raise ScriptMissing(f"scripted cassette {self.path.name} has no answer for {key!r}")
        stop: str | None = None
        if self.chaos is not None and not repair:
            entry, stop = self.chaos.perturb(key, entry)
        text = str(entry.get("text", ""))
        if on_text and text:
            # Stream in a few chunks so the TUI shows the same live behaviour as a real model.
            step = max(1, len(text) // 8)
            for i in range(0, len(text), step):
                on_text(text[i:i + step])
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
        calls = [
            # Ids derive from the key, not hash() (salted per process), so a resumed
            # run sees the same ids.
            ToolCall(id=f"call_{hashlib.sha1(f'{key}#{j}'.encode()).hexdigest()[:10]}",
                     name=c["name"],
                     arguments=dict(c.get("arguments", {})))
            for j, c in enumerate(entry.get("tool_calls", []))
        ]
        prompt_chars = len(request.system) + sum(
            len(m.text) + sum(len(r.content) for r in m.tool_results) for m in request.messages)
        usage = Usage(input_tokens=prompt_chars // 4,
                      output_tokens=(len(text) + len(json.dumps(entry.get("tool_calls", [])))) // 4)
        return LLMResponse(text=text, tool_calls=calls, usage=usage,
                           stop_reason=stop or ("tool_use" if calls else "end_turn"),
                           provider=self.provider, model=self.model)

    async def aclose(self) -> None:
        return None
