"""``openai:<model>`` and OpenAI-compatible endpoints (DeepSeek, OpenRouter, vLLM, Ollama,
llama.cpp server): one streamed Chat Completions call through the official SDK.

SDK retries are off (``max_retries=0``); the client's policy decides. Tool calls are
assembled from the streamed deltas; usage comes from the final chunk
(``stream_options.include_usage``), with cached prompt tokens split out so they are
priced at the cache-read rate.
"""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any

import httpx2
import openai
from aisci.engine.config import LLMSettings
from aisci.engine.llm.base import (
    AuthError,
    BadRequest,
    LLMError,
    LLMRequest,
    LLMResponse,
    Message,
    QuotaExceeded,
    RateLimited,
    ServerError,
    StreamInterrupted,
    TextCallback,
    ToolCall,
    Usage,
)
from aisci.engine.llm.errors import (
    CallbackFailed,
    guard_callback,
    is_quota_code,
    is_quota_message,
    one_line_reason,
    request_failed,
    reraise_callback_error,
    retry_after_seconds,
    status_reason,
    stream_broke,
    transport_error,
)

# OpenAI reasoning models (o-series, GPT-5 and later) reject a non-default `temperature`
# and the legacy `max_tokens`.
_REASONING = re.compile(r"^(o\d|gpt-([5-9]|\d\d))")


class OpenAIProvider:
    def __init__(self, model: str, llm_settings: LLMSettings, provider_name: str = "openai",
                 base_url: str | None = None, api_key_env: str | None = "OPENAI_API_KEY") -> None:
        self.model = model
        self.provider = provider_name
        self.settings = llm_settings
        if base_url is None and provider_name == "openai":
            base_url = os.environ.get("OPENAI_BASE_URL") or None
        self._base_url = base_url
        self._api_key_env = api_key_env
        self._client: openai.AsyncOpenAI | None = None

    @property
    def _where(self) -> str:
        return f"{self.provider}:{self.model}"

    def _sdk(self) -> openai.AsyncOpenAI:
        if self._client is None:
            key = os.environ.get(self._api_key_env) if self._api_key_env else None
            if not key:
                if self._api_key_env and self.provider == "openai":
                    raise AuthError(f"{self._where}: {self._api_key_env} is not set")
                if self._api_key_env:
                    raise AuthError(f"{self._where}: {self._api_key_env} is not set (named by "
                                    f"[llm.endpoints.{self.provider}] api_key_env)")
                # Local servers (Ollama, vLLM, llama.cpp) take no key; the SDK wants one.
                key = "no-key"
            self._client = openai.AsyncOpenAI(
                api_key=key, base_url=self._base_url, max_retries=0,
                timeout=self.settings.request_timeout_s)
        return self._client

    def build_params(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        for m in request.messages:
            messages.extend(_wire_messages(m))
        params: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True,
                                  "stream_options": {"include_usage": True}}
        reasoning = self.provider == "openai" and bool(_REASONING.match(self.model))
        if request.max_tokens:
            key = "max_completion_tokens" if self.provider == "openai" else "max_tokens"
            params[key] = request.max_tokens
        if request.temperature is not None and not reasoning:
            params["temperature"] = request.temperature
        if request.tools:
            params["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.input_schema}}
                for t in request.tools]
        return params

    async def complete(self, request: LLMRequest, stage: str,
                       on_text: TextCallback | None) -> LLMResponse:
        client = self._sdk()
        params = self.build_params(request)
        timeout = request.timeout_s or self.settings.request_timeout_s
        started = False
        emit = guard_callback(on_text)
        try:
            stream = await client.chat.completions.create(**params, timeout=timeout)
            started = True
            async with stream:
                return await self._read(stream, emit)
        except LLMError:
            raise
        except CallbackFailed as exc:
            raise reraise_callback_error(exc) from None
        except openai.APIStatusError as exc:
            raise self._map_status(exc) from None
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            raise transport_error(self._where, str(client.base_url), exc, started,
                                  timeout) from None
        except openai.APIError as exc:
            # An error object inside a 200 stream: the stream broke midway, unless its
            # code says the account is out of money.
            code = str(getattr(exc, "code", None) or "")
            etype = str(getattr(exc, "type", None) or "")
            message = one_line_reason(exc.message)
            if is_quota_code(code, etype):
                raise QuotaExceeded(f"{self._where}: spend limit reached ({code or etype}: "
                                    f"{message}); retrying cannot help") from None
            if started:
                raise StreamInterrupted(f"{self._where}: stream broke: {message}") from None
            raise BadRequest(f"{self._where}: {one_line_reason(exc)}") from None
        except Exception as exc:
            # The provider boundary: whatever else the SDK or the stream's content raised
            # (an undecodable SSE line, a body that does not decompress, chunks of the
            # wrong shape). Once the 200 arrived it is a broken stream, like a dropped one.
            if started:
                raise stream_broke(self._where, exc) from None
            raise request_failed(self._where, exc) from None

    async def _read(self, stream: Any, emit: TextCallback | None) -> LLMResponse:
        """Assemble the reply from the chunks. Chunk fields are read defensively: servers
        that speak "OpenAI-compatible" send ``choices: null``, chunks without ``delta``
        and no usage chunk at all."""
        texts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = Usage(known=False)
        finish: str | None = None
        async for chunk in stream:
            if getattr(chunk, "usage", None) is not None:
                usage = _usage(chunk.usage)
            for choice in getattr(chunk, "choices", None) or []:
                reason = getattr(choice, "finish_reason", None)
                finish = reason if isinstance(reason, str) and reason else finish
                delta = getattr(choice, "delta", None)
                if delta is None:
                    continue
                content = getattr(delta, "content", None)
                if isinstance(content, str) and content:
                    texts.append(content)
                    if emit is not None:
                        emit(content)
                for tc in getattr(delta, "tool_calls", None) or []:
                    index = getattr(tc, "index", None)
                    idx = index if isinstance(index, int) else len(calls)
                    slot = calls.setdefault(idx, {"id": "", "name": "", "args": ""})
                    tc_id = getattr(tc, "id", None)
                    if isinstance(tc_id, str) and tc_id:
                        slot["id"] = tc_id
                    function = getattr(tc, "function", None)
                    if function is not None:
                        name = getattr(function, "name", None)
                        args = getattr(function, "arguments", None)
                        slot["name"] += name if isinstance(name, str) else ""
                        slot["args"] += args if isinstance(args, str) else ""
        if finish is None:
            # No choice ever finished: the connection closed midway and the reply is cut.
            raise StreamInterrupted(f"{self._where}: stream ended without a finish_reason "
                                    "(connection closed early)")
        tool_calls = []
        for idx in sorted(calls):
            slot = calls[idx]
            try:
                args = json.loads(slot["args"]) if slot["args"].strip() else {}
            except json.JSONDecodeError:
                # Kept visible: the tool loop reports the bad arguments back to the model.
                args = {"_unparsed_arguments": slot["args"]}
            tool_calls.append(ToolCall(id=slot["id"] or f"call_{idx}", name=slot["name"],
                                       arguments=args if isinstance(args, dict) else {}))
        return LLMResponse(text="".join(texts), tool_calls=tool_calls, usage=usage,
                           stop_reason=finish, provider=self.provider, model=self.model)

    def _map_status(self, exc: Any) -> LLMError:
        status = int(getattr(exc, "status_code", 0) or 0)
        code = str(getattr(exc, "code", None) or "")
        code = "" if code == str(status) else code  # vLLM repeats the status as the code
        etype = str(getattr(exc, "type", None) or "")
        message = status_reason(exc, str(getattr(exc, "message", "") or ""))
        detail = f"{self._where}: HTTP {status} {code or etype}: {message}".replace(" : ", ": ")
        retry_after = retry_after_seconds(getattr(getattr(exc, "response", None), "headers",
                                                  None))
        quota = is_quota_code(code, etype) or is_quota_message(message)
        if quota:
            return QuotaExceeded(f"{detail} (spend limit: retrying cannot help)", status=status)
        if status in (401, 403):
            hint = f" (check {self._api_key_env})" if self._api_key_env else ""
            return AuthError(detail + hint, status=status)
        if status == 429:
            return RateLimited(detail, status=status, retry_after=retry_after)
        if status >= 500:
            return ServerError(detail, status=status, retry_after=retry_after)
        if status == 402:
            return QuotaExceeded(f"{detail} (spend limit: retrying cannot help)", status=status)
        return BadRequest(detail, status=status)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _usage(u: Any) -> Usage:
    """Usage from the final chunk; OpenAI's ``prompt_tokens`` include the cached ones,
    which are split out to be priced at the cache-read rate."""
    details = getattr(u, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    prompt = getattr(u, "prompt_tokens", None)
    checked = Usage.reported(prompt, getattr(u, "completion_tokens", None), cached)
    return Usage(input_tokens=max(0, checked.input_tokens - checked.cache_read_tokens),
                 output_tokens=checked.output_tokens,
                 cache_read_tokens=min(checked.cache_read_tokens, checked.input_tokens),
                 known=checked.known)


def _wire_messages(m: Message) -> list[dict[str, Any]]:
    """One of our turns as Chat Completions messages (tool results are separate
    ``tool`` messages that must directly follow the assistant's tool calls)."""
    out: list[dict[str, Any]] = []
    if m.role == "assistant":
        msg: dict[str, Any] = {"role": "assistant", "content": m.text or None}
        if m.tool_calls:
            msg["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": json.dumps(c.arguments)}} for c in m.tool_calls]
        return [msg]
    for r in m.tool_results:
        content = f"ERROR: {r.content}" if r.is_error else r.content
        out.append({"role": "tool", "tool_call_id": r.tool_call_id, "content": content})
    if m.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": m.text}] if m.text else []
        for img in m.images:
            url = "data:image/png;base64," + base64.b64encode(img).decode("ascii")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        out.append({"role": "user", "content": parts})
    elif m.text or not m.tool_results:
        out.append({"role": "user", "content": m.text})
    return out
