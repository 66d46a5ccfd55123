"""A loopback HTTP server speaking the Anthropic Messages and OpenAI Chat Completions wire
protocols, so tests drive the real SDKs (which use httpx2, out of reach of respx).

Each test scripts what the next requests get, as a FIFO queue of actions per API:
``Reply`` (text and/or tool calls with usage; streamed as SSE when the request asks for a
stream), ``Fail`` (an HTTP error body with optional headers such as retry-after),
``BreakStream`` (the stream starts, then an error event inside the 200 stream, or the
TCP connection is dropped mid-body), ``Stall`` (no answer at all for a while) and
``StallStream`` (headers and a few events, then silence). Every request is recorded
(path, headers, JSON body) so tests can assert what the SDK sent. An unscripted request
gets a 500 naming the gap.

Streams are framed as real servers frame them: ``Transfer-Encoding: chunked`` on a
keep-alive connection, one chunk per SSE event and the terminating zero-size chunk at
the end. A dropped stream ends without that terminating chunk (the socket is shut
down, or reset), which the client reads as an incomplete body, not as a clean end.
"""

from __future__ import annotations

import collections
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANTHROPIC = "anthropic"
OPENAI = "openai"

# Claude 5-generation models think adaptively and reject sampling parameters, forced tool
# choice and prefill (documented behaviour the fake reproduces).
_THINKING_ONLY = re.compile(r"^claude-(sonnet|opus|haiku|fable|mythos)-5\b")


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(name, arguments) pairs."""
    input_tokens: int = 100
    output_tokens: int = 20
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    chunk_chars: int = 4
    """Text and tool arguments are streamed in pieces of this many characters."""
    thinking: str = ""
    """Anthropic: a signed thinking block before the text, as adaptive-thinking models
    send. The server then insists, as the API does, that the turn comes back with the
    block and its signature unchanged whenever it is replayed to the same model."""


@dataclass
class Fail:
    status: int
    error_type: str = "api_error"
    message: str = "failure injected by the fake server"
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    """OpenAI ``error.code`` (e.g. ``insufficient_quota``); Anthropic
    ``error.details.error_code`` (e.g. ``enforced_spend_limit_reached``)."""


@dataclass
class BreakStream:
    """Start a 200 stream, send ``text_before`` then fail: an SSE error event (Anthropic)
    / an error chunk (OpenAI), or, when ``abrupt``, drop the TCP connection mid-body
    (half an event, no terminating chunk; ``reset`` sends a TCP RST instead of a FIN)."""

    text_before: str = "partial "
    error_type: str = "overloaded_error"
    message: str = "Overloaded"
    abrupt: bool = False
    reset: bool = False
    code: str | None = None
    """OpenAI error ``code`` / Anthropic ``error.details.error_code`` of the error event."""


@dataclass
class Stall:
    """Accept the request and answer nothing (no headers) for ``seconds``, then a 500."""

    seconds: float


@dataclass
class StallStream:
    """Send the 200 headers and the first events of a stream, then nothing for
    ``seconds`` (the connection stays open), then drop the connection."""

    seconds: float
    text_before: str = "partial "


@dataclass
class RawStream:
    """A complete 200 event stream of exactly these ``(event, data)`` pairs, the data sent
    verbatim (so it may be cut JSON or a shape the SDK cannot assemble), with extra
    response headers (``content-encoding: gzip`` over a body that is not gzip). Build the
    pairs from :func:`anthropic_events` / :func:`openai_chunks` and break them."""

    events: list[tuple[str | None, str]]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RawBody:
    """An HTTP answer with this status and body verbatim: a proxy's HTML error page, or an
    error shape the SDKs do not know (``{"error": "CUDA out of memory"}``)."""

    status: int
    body: str
    content_type: str = "application/json"


Action = Reply | Fail | BreakStream | Stall | StallStream | RawStream | RawBody


@dataclass
class RecordedRequest:
    api: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    ts: float


class FakeLLMServer:
    """Start with :meth:`start` (or use as a context manager); ``base_url`` is the root
    both SDKs take (Anthropic appends ``/v1/messages``; for OpenAI use ``openai_base_url``)."""

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque[Action]] = {
            ANTHROPIC: collections.deque(), OPENAI: collections.deque()}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tool_seq = 0
        self._signed: dict[str, tuple[str, str, str]] = {}
        """tool_use id -> (model, thinking, signature) of the turn that issued it."""
        self.stopping = threading.Event()
        """Set by :meth:`stop`: stalled handlers wake and give up at once."""
        self.connections = 0
        """TCP connections accepted (keep-alive reuses one for several requests)."""

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True, name="fake-llm-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    # -- scripting -----------------------------------------------------------------------
    def script(self, api: str, *actions: Action) -> None:
        with self._lock:
            self._queues[api].extend(actions)

    def pending(self, api: str) -> int:
        with self._lock:
            return len(self._queues[api])

    def requests_for(self, api: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.api == api]

    # -- Anthropic turn bookkeeping ------------------------------------------------------
    def _issue(self, r: Reply, model: str) -> tuple[list[str], str]:
        """Unique tool_use ids for this reply, and the signature of its thinking block."""
        with self._lock:
            ids = []
            for _ in r.tool_calls:
                self._tool_seq += 1
                ids.append(f"toolu_{self._tool_seq:04d}")
            signature = ""
            if r.thinking:
                signature = f"sig{self._tool_seq:04d}-{abs(hash((model, r.thinking))) % 10**8}"
                for i in ids:
                    self._signed[i] = (model, r.thinking, signature)
        return ids, signature

    def _invalid(self, body: dict[str, Any]) -> str | None:
        """What the real Messages API would reject in this body with a 400, or None."""
        model = str(body.get("model", ""))
        if _THINKING_ONLY.match(model):
            for key in ("temperature", "top_p", "top_k"):
                if body.get(key) is not None:
                    return f"{key}: sampling parameters are not supported by {model}"
            if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
                return f"tool_choice: forced tool use is not supported by {model}"
        messages = body.get("messages") or []
        if messages and messages[-1].get("role") == "assistant" and _THINKING_ONLY.match(model):
            return "assistant prefill is not supported with adaptive thinking"
        for n, m in enumerate(messages):
            content = m.get("content")
            if m.get("role") != "assistant" or not isinstance(content, list):
                continue
            for block in content:
                if block.get("type") != "tool_use":
                    continue
                with self._lock:
                    issued = self._signed.get(str(block.get("id")))
                if issued is None or issued[0] != model:
                    continue
                first = content[0]
                if (first.get("type") != "thinking" or first.get("signature") != issued[2]
                        or first.get("thinking") != issued[1]):
                    return (f"messages.{n}.content.0.type: Expected `thinking` or "
                            f"`redacted_thinking`, but found `{first.get('type')}`. When "
                            "thinking is enabled, a final assistant message must start with "
                            "a thinking block (pass it back unchanged)")
        return None

    def _next(self, req: RecordedRequest) -> Action | None:
        with self._lock:
            self.requests.append(req)
            q = self._queues[req.api]
            return q.popleft() if q else None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLMServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake.connections += 1

    def do_POST(self) -> None:
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (deadline, cancelled stream): nothing left to answer.
            self.close_connection = True

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        if self.path.endswith("/messages"):
            api = ANTHROPIC
        elif self.path.endswith("/chat/completions"):
            api = OPENAI
        else:
            self._json(404, {"error": {"type": "not_found_error", "message": self.path}})
            return
        req = RecordedRequest(api, self.path, {k.lower(): v for k, v in self.headers.items()},
                              body, time.time())
        if api == ANTHROPIC:
            problem = self.fake._invalid(body)
            if problem is not None:
                with self.fake._lock:
                    self.fake.requests.append(req)
                self._fail(api, Fail(400, "invalid_request_error", problem))
                return
        action = self.fake._next(req)
        if action is None:
            self._fail(api, Fail(500, "api_error", f"fake server: no scripted action left for "
                                 f"{api} request #{len(self.fake.requests_for(api))}"))
            return
        if isinstance(action, Stall):
            if self.fake.stopping.wait(action.seconds):
                self.close_connection = True
                return
            self._fail(api, Fail(500, "api_error", "fake server: stalled"))
            return
        if isinstance(action, StallStream):
            model = str(body.get("model", "model"))
            events = (_anthropic_broken(BreakStream(action.text_before, abrupt=True), model)
                      if api == ANTHROPIC else
                      _openai_broken(BreakStream(action.text_before, abrupt=True), model))
            self._sse(events, end=False)
            self.fake.stopping.wait(action.seconds)
            self._drop(reset=False)
            return
        if isinstance(action, Fail):
            self._fail(api, action)
            return
        if isinstance(action, RawStream):
            self._sse(action.events, headers=action.headers)
            return
        if isinstance(action, RawBody):
            data = action.body.encode()
            self.send_response(action.status)
            self.send_header("content-type", action.content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        stream = bool(body.get("stream"))
        model = str(body.get("model", "model"))
        if api == ANTHROPIC:
            if isinstance(action, BreakStream):
                self._sse(_anthropic_broken(action, model), end=not action.abrupt)
                if action.abrupt:
                    self._drop(action.reset)
            else:
                ids, signature = self.fake._issue(action, model)
                if stream:
                    self._sse(_anthropic_events(action, model, ids, signature))
                else:
                    self._json(200, _anthropic_message(action, model, ids, signature))
        else:
            if isinstance(action, BreakStream):
                self._sse(_openai_broken(action, model), end=not action.abrupt)
                if action.abrupt:
                    self._drop(action.reset)
            elif stream:
                self._sse(_openai_chunks(action, model, body))
            else:
                self._json(200, _openai_completion(action, model))

    # -- writing -------------------------------------------------------------------------
    def _json(self, status: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, api: str, f: Fail) -> None:
        if api == ANTHROPIC:
            error: dict[str, Any] = {"type": f.error_type, "message": f.message}
            if f.code:
                error["details"] = {"error_code": f.code}
            payload: dict[str, Any] = {"type": "error", "error": error}
        else:
            payload = {"error": {"message": f.message, "type": f.error_type,
                                 "param": None, "code": f.code}}
        self._json(f.status, payload, f.headers)

    def _sse(self, events: list[tuple[str | None, str]], end: bool = True,
             headers: dict[str, str] | None = None) -> None:
        """Send (event, data) pairs as one chunk each on a keep-alive connection; ``end``
        sends the terminating zero-size chunk (a complete body)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("connection", "keep-alive")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        for name, data in events:
            payload = ((f"event: {name}\n" if name else "") + f"data: {data}\n\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            self.wfile.flush()
        if end:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _drop(self, reset: bool) -> None:
        """Abort the connection mid-body: half an event in a chunk that never completes,
        then a FIN (or an RST with ``reset``), without the terminating chunk."""
        half = b'data: {"trunc'
        try:
            self.wfile.write(b"%x\r\n%s" % (len(half) + 40, half))
            self.wfile.flush()
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True


# -- Anthropic shapes ------------------------------------------------------------------

def _chunks(text: str, n: int) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), max(1, n))]


def _anthropic_usage(r: Reply) -> dict[str, Any]:
    return {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "cache_creation_input_tokens": r.cache_write_tokens,
            "cache_read_input_tokens": r.cache_read_tokens}


def _anthropic_message(r: Reply, model: str, ids: list[str],
                       signature: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if r.thinking:
        content.append({"type": "thinking", "thinking": r.thinking, "signature": signature})
    if r.text:
        content.append({"type": "text", "text": r.text})
    for tid, (name, args) in zip(ids, r.tool_calls, strict=True):
        content.append({"type": "tool_use", "id": tid, "name": name, "input": args})
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "tool_use" if r.tool_calls else "end_turn",
            "stop_sequence": None, "usage": _anthropic_usage(r)}


def _ev(name: str, payload: dict[str, Any]) -> tuple[str, str]:
    return name, json.dumps({"type": name, **payload})


def _anthropic_start(model: str, usage: dict[str, Any]) -> list[tuple[str | None, str]]:
    start_usage = dict(usage, output_tokens=1)
    return [_ev("message_start", {"message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
        _ev("ping", {})]


def _anthropic_events(r: Reply, model: str, ids: list[str],
                      signature: str) -> list[tuple[str | None, str]]:
    out = _anthropic_start(model, _anthropic_usage(r))
    idx = 0
    if r.thinking:
        out.append(_ev("content_block_start", {"index": idx, "content_block": {
            "type": "thinking", "thinking": "", "signature": ""}}))
        for piece in _chunks(r.thinking, r.chunk_chars):
            out.append(_ev("content_block_delta", {
                "index": idx, "delta": {"type": "thinking_delta", "thinking": piece}}))
        out.append(_ev("content_block_delta", {
            "index": idx, "delta": {"type": "signature_delta", "signature": signature}}))
        out.append(_ev("content_block_stop", {"index": idx}))
        idx += 1
    if r.text:
        out.append(_ev("content_block_start", {"index": idx,
                                               "content_block": {"type": "text", "text": ""}}))
        for piece in _chunks(r.text, r.chunk_chars):
            out.append(_ev("content_block_delta", {
                "index": idx, "delta": {"type": "text_delta", "text": piece}}))
        out.append(_ev("content_block_stop", {"index": idx}))
        idx += 1
    for tid, (name, args) in zip(ids, r.tool_calls, strict=True):
        out.append(_ev("content_block_start", {"index": idx, "content_block": {
            "type": "tool_use", "id": tid, "name": name, "input": {}}}))
        for piece in _chunks(json.dumps(args), r.chunk_chars * 3):
            out.append(_ev("content_block_delta", {
                "index": idx, "delta": {"type": "input_json_delta", "partial_json": piece}}))
        out.append(_ev("content_block_stop", {"index": idx}))
        idx += 1
    out.append(_ev("message_delta", {
        "delta": {"stop_reason": "tool_use" if r.tool_calls else "end_turn",
                  "stop_sequence": None},
        "usage": {"output_tokens": r.output_tokens}}))
    out.append(_ev("message_stop", {}))
    return out


def _anthropic_broken(b: BreakStream, model: str) -> list[tuple[str | None, str]]:
    out = _anthropic_start(model, {"input_tokens": 10, "output_tokens": 1,
                                   "cache_creation_input_tokens": 0,
                                   "cache_read_input_tokens": 0})
    out.append(_ev("content_block_start", {"index": 0,
                                           "content_block": {"type": "text", "text": ""}}))
    out.append(_ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                 "text": b.text_before}}))
    if not b.abrupt:
        error: dict[str, Any] = {"type": b.error_type, "message": b.message}
        if b.code:
            error["details"] = {"error_code": b.code}
        out.append(("error", json.dumps({"type": "error", "error": error})))
    return out


# -- OpenAI shapes ---------------------------------------------------------------------

def _openai_usage(r: Reply) -> dict[str, Any]:
    # OpenAI's prompt_tokens include the cached ones.
    prompt = r.input_tokens + r.cache_read_tokens
    return {"prompt_tokens": prompt, "completion_tokens": r.output_tokens,
            "total_tokens": prompt + r.output_tokens,
            "prompt_tokens_details": {"cached_tokens": r.cache_read_tokens}}


def _openai_completion(r: Reply, model: str) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": r.text or None}
    if r.tool_calls:
        msg["tool_calls"] = [
            {"id": f"call_{i:04d}", "type": "function",
             "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(r.tool_calls)]
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": msg,
                                         "finish_reason": "tool_calls" if r.tool_calls
                                         else "stop"}],
            "usage": _openai_usage(r)}


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None,
           usage: dict[str, Any] | None = None, choices: bool = True) -> tuple[None, str]:
    payload: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                               "created": int(time.time()), "model": model,
                               "choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish}] if choices else []}
    if usage is not None:
        payload["usage"] = usage
    return None, json.dumps(payload)


def _openai_chunks(r: Reply, model: str, body: dict[str, Any]) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = [_chunk(model, {"role": "assistant", "content": ""})]
    for piece in _chunks(r.text, r.chunk_chars) if r.text else []:
        out.append(_chunk(model, {"content": piece}))
    for i, (name, args) in enumerate(r.tool_calls):
        out.append(_chunk(model, {"tool_calls": [{"index": i, "id": f"call_{i:04d}",
                                                  "type": "function",
                                                  "function": {"name": name,
                                                               "arguments": ""}}]}))
        for piece in _chunks(json.dumps(args), r.chunk_chars * 3):
            out.append(_chunk(model, {"tool_calls": [{"index": i,
                                                      "function": {"arguments": piece}}]}))
    out.append(_chunk(model, {}, "tool_calls" if r.tool_calls else "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        out.append(_chunk(model, {}, usage=_openai_usage(r), choices=False))
    out.append((None, "[DONE]"))
    return out


def _openai_broken(b: BreakStream, model: str) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = [_chunk(model, {"role": "assistant", "content": ""}),
                                         _chunk(model, {"content": b.text_before})]
    if not b.abrupt:
        out.append((None, json.dumps({"error": {"message": b.message, "type": b.error_type,
                                                "param": None, "code": b.code}})))
    return out


# -- raw material for RawStream ------------------------------------------------------

def anthropic_events(r: Reply, model: str = "claude-haiku-4-5") -> list[tuple[str | None, str]]:
    """The events a good Messages stream of ``r`` is made of (no tool calls), to break."""
    return _anthropic_events(r, model, [], "")


def openai_chunks(r: Reply, model: str = "gpt-4o-mini", *,
                  include_usage: bool = True) -> list[tuple[str | None, str]]:
    """The chunks of a good Chat Completions stream of ``r`` (no tool calls); without
    ``include_usage`` no usage chunk, as servers that ignore ``stream_options`` send."""
    return _openai_chunks(r, model, {"stream_options": {"include_usage": include_usage}})
