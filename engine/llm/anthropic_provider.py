"""``anthropic:<model>``: one streamed Messages API call through the official SDK.

The SDK's own retries are off (``max_retries=0``); the client's policy decides. The
stable prefix of a stage (system prompt, and the first ``cache_prefix_messages`` turns,
typically the template code) is marked with ``cache_control`` so repeated calls read it
from the prompt cache. SDK exceptions are mapped onto the error taxonomy in base.py.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import anthropic
import httpx2
from aisci.engine.config import LLMSettings
from aisci.engine.llm.base import (
    AuthError,
    BadRequest,
    LLMError,
    LLMRequest,
    LLMResponse,
    Message,
    Overloaded,
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

_CACHE = {"type": "ephemeral"}


class AnthropicProvider:
    provider = "anthropic"

    def __init__(self, model: str, llm_settings: LLMSettings, *,
                 base_url: str | None = None, api_key: str | None = None) -> None:
        self.model = model
        self.settings = llm_settings
        self._base_url = (base_url or os.environ.get("ANTHROPIC_BASE_URL")
                          or llm_settings.anthropic_base_url or None)
        self._api_key = api_key
        self._client: anthropic.AsyncAnthropic | None = None

    def _sdk(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            key = self._api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise AuthError(f"anthropic:{self.model}: ANTHROPIC_API_KEY is not set")
            self._client = anthropic.AsyncAnthropic(
                api_key=key, base_url=self._base_url, max_retries=0,
                timeout=self.settings.request_timeout_s)
        return self._client

    async def complete(self, request: LLMRequest, stage: str,
                       on_text: TextCallback | None) -> LLMResponse:
        client = self._sdk()
        kwargs = build_params(self.model, request, effort=self.settings.effort)
        timeout = request.timeout_s or self.settings.request_timeout_s
        started = False
        emit = guard_callback(on_text)
        where = f"anthropic:{self.model}"
        try:
            async with client.messages.stream(**kwargs, timeout=timeout) as stream:
                # Entering the context sent the request and got a 200: from here on a
                # failure is a broken stream, restarted from the beginning by the client.
                started = True
                stopped = False
                async for event in stream:
                    if event.type == "text" and emit is not None:
                        emit(event.text)
                    elif event.type == "message_stop":
                        stopped = True
                if not stopped:
                    # The connection closed before message_stop: the reply is truncated.
                    raise StreamInterrupted(f"{where}: stream ended before "
                                            "message_stop (connection closed early)")
                final = await stream.get_final_message()
                return to_response(self.model, final)
        except LLMError:
            raise
        except CallbackFailed as exc:
            raise reraise_callback_error(exc) from None
        except anthropic.APIStatusError as exc:
            raise map_status_error(self.model, exc, started) from None
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            # The SDK wraps transport errors of the request, but not those raised while a
            # stream is read (httpx2.ReadError / RemoteProtocolError / ReadTimeout escape
            # raw): both are mapped here, by when they happened.
            raise transport_error(where, str(client.base_url), exc, started,
                                  timeout) from None
        except anthropic.APIError as exc:
            # Anything else the SDK raises mid-stream (e.g. an undecodable event).
            if started:
                raise StreamInterrupted(f"{where}: stream broke: {one_line_reason(exc)}") from None
            raise BadRequest(f"{where}: {one_line_reason(exc)}") from None
        except Exception as exc:
            # The provider boundary: whatever else reading an accepted stream raised (an
            # SSE data line that is not JSON, a body that does not decompress, events the
            # SDK cannot assemble: a delta before its block, no message_start, a
            # message_delta without usage) is a broken stream, like a dropped one.
            if started:
                raise stream_broke(where, exc) from None
            raise request_failed(where, exc) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


# -- request building ---------------------------------------------------------------------

# Blocks that may carry cache_control (thinking blocks may not).
_CACHEABLE = {"text", "tool_use", "tool_result", "image"}


def _content(m: Message, model: str) -> list[dict[str, Any]]:
    if m.role == "assistant" and m.raw and m.raw_from == f"anthropic:{model}":
        # Same model, same conversation: the turn goes back exactly as received, thinking
        # blocks and their signatures included (a tool loop fails with 400 otherwise).
        return [dict(b) for b in m.raw]
    blocks: list[dict[str, Any]] = []
    for r in m.tool_results:
        blocks.append({"type": "tool_result", "tool_use_id": r.tool_call_id,
                       "content": r.content, "is_error": r.is_error})
    for img in m.images:
        blocks.append({"type": "image", "source": {
            "type": "base64", "media_type": "image/png",
            "data": base64.b64encode(img).decode("ascii")}})
    if m.text:
        blocks.append({"type": "text", "text": m.text})
    for c in m.tool_calls:
        blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
    if not blocks:
        # The API rejects empty content; an empty turn still needs one block.
        blocks.append({"type": "text", "text": "(empty)"})
    return blocks


def build_params(model: str, request: LLMRequest, *, effort: str | None = None) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": m.role, "content": _content(m, model)}
                                      for m in request.messages]
    prefix = min(request.cache_prefix_messages, len(messages))
    if prefix > 0:
        cacheable = [b for b in messages[prefix - 1]["content"] if b.get("type") in _CACHEABLE]
        if cacheable:
            cacheable[-1]["cache_control"] = dict(_CACHE)
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or 4096,
        "messages": messages,
    }
    if request.system:
        params["system"] = [{"type": "text", "text": request.system,
                             "cache_control": dict(_CACHE)}]
    # Nothing the current models reject with a 400: no `temperature`/`top_p` (sampling
    # parameters), no forced `tool_choice`, no assistant prefill, no thinking budget.
    if effort:
        params["output_config"] = {"effort": effort}
    if request.tools:
        params["tools"] = [{"name": t.name, "description": t.description,
                            "input_schema": t.input_schema} for t in request.tools]
    return params


def to_response(model: str, msg: Any) -> LLMResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    raw: list[dict[str, Any]] = []
    for block in msg.content:
        if block.type == "text":
            texts.append(block.text)
            raw.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            args = block.input if isinstance(block.input, dict) else {}
            calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(args)))
            raw.append({"type": "tool_use", "id": block.id, "name": block.name,
                        "input": dict(args)})
        elif block.type == "thinking":
            raw.append({"type": "thinking", "thinking": block.thinking,
                        "signature": block.signature})
        elif block.type == "redacted_thinking":
            raw.append({"type": "redacted_thinking", "data": block.data})
        else:  # server-tool blocks and future types: pass back what was received
            raw.append(block.model_dump(mode="json", exclude_none=True))
    u = msg.usage
    usage = Usage.reported(getattr(u, "input_tokens", None), getattr(u, "output_tokens", None),
                           getattr(u, "cache_read_input_tokens", None) or 0,
                           getattr(u, "cache_creation_input_tokens", None) or 0)
    # The verbatim blocks matter only when the model thought; otherwise the turn is
    # rebuilt from text and tool calls exactly as before.
    keep = any(b["type"] not in ("text", "tool_use") for b in raw)
    return LLMResponse(text="".join(texts), tool_calls=calls, usage=usage,
                       stop_reason=msg.stop_reason, provider="anthropic", model=model,
                       raw=raw if keep else [])


# -- error mapping ------------------------------------------------------------------------

def map_status_error(model: str, exc: Any, started: bool) -> LLMError:
    """An SDK status error as one of ours. ``started``: the stream had begun (an
    ``event: error`` arrived on a 200 response)."""
    status = int(getattr(exc, "status_code", 0) or 0)
    etype = str(getattr(exc, "type", None) or "")
    code = str(getattr(exc, "error_code", None) or "")
    message = status_reason(exc, str(getattr(exc, "api_message", None)
                                     or getattr(exc, "message", None) or exc))
    where = f"anthropic:{model}"
    kind = f"{etype} ({code})" if code else etype
    if is_quota_code(etype, code):
        # Structured: error.type billing_error or a spend-limit error.details.error_code,
        # on a 429, a 400, a 402 or even an error event inside a 200 stream.
        return QuotaExceeded(f"{where}: spend limit reached (HTTP {status} {kind}: {message}); "
                             "retrying cannot help", status=status)
    if started or status < 400:
        return StreamInterrupted(f"{where}: stream broke with {kind or 'an error'}: {message}",
                                 status=status)
    headers = getattr(getattr(exc, "response", None), "headers", None)
    retry_after = retry_after_seconds(headers)
    detail = f"{where}: HTTP {status} {kind}: {message}".replace(" : ", ": ")
    if status == 429 and is_quota_message(message):
        return QuotaExceeded(f"{detail} (spend limit: retrying cannot help)", status=status)
    if status in (401, 403):
        return AuthError(f"{detail} (check ANTHROPIC_API_KEY)", status=status)
    if status == 429:
        return RateLimited(detail, status=status, retry_after=retry_after)
    if status == 529 or etype == "overloaded_error":
        return Overloaded(detail, status=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(detail, status=status, retry_after=retry_after)
    if status == 402 or is_quota_message(message):
        return QuotaExceeded(f"{detail} (spend limit: retrying cannot help)", status=status)
    return BadRequest(detail, status=status)
