"""Provider-neutral request/response types and the error taxonomy the retry policy uses."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aisci.engine.errors import ExternalServiceError


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    tool_call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Message:
    """One conversation turn. A user turn may carry tool results; an assistant turn may
    carry tool calls. Providers translate this into their own wire shapes."""

    role: Literal["user", "assistant"]
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    images: tuple[bytes, ...] = ()
    """PNG images attached to a user turn (multimodal review)."""
    raw: tuple[Any, ...] = field(default=(), compare=False)
    """An assistant turn's content blocks exactly as the provider sent them (Anthropic
    thinking blocks carry a signature and must go back unchanged in a tool loop)."""
    raw_from: str = ""
    """``provider:model`` that produced ``raw``; another model gets the plain rebuild
    (thinking blocks are tied to the model that wrote them)."""


MAX_TOKEN_COUNT = 10**12
"""The largest token count taken from a provider; anything beyond is not a real count."""


def token_count(value: object) -> int | None:
    """A token count a provider reported, as a sane int in ``0..MAX_TOKEN_COUNT``, or None
    when it is unusable (not a number, NaN, negative, absurdly large)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and math.isfinite(value):
        n = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and len(value) < 20:
        n = int(value.strip())  # what the Anthropic SDK's models would coerce anyway
    else:
        return None
    return n if 0 <= n <= MAX_TOKEN_COUNT else None


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    known: bool = True
    """False when the provider sent no usable usage (no usage chunk, or counts that are not
    counts): the call's cost is then unknown, never $0."""

    @classmethod
    def reported(cls, input_tokens: object = 0, output_tokens: object = 0,
                 cache_read_tokens: object = 0, cache_write_tokens: object = 0) -> Usage:
        """Usage from counts as a provider sent them: each is checked (:func:`token_count`);
        an unusable one counts as 0 and makes the whole usage unknown."""
        counts = [token_count(v) for v in (input_tokens, output_tokens, cache_read_tokens,
                                           cache_write_tokens)]
        inp, out, read, write = (c or 0 for c in counts)
        return cls(inp, out, read, write, known=all(c is not None for c in counts))

    def checked(self) -> Usage:
        """This usage with every count re-checked (for providers built outside this
        package, whose numbers nothing has vetted)."""
        u = Usage.reported(self.input_tokens, self.output_tokens, self.cache_read_tokens,
                           self.cache_write_tokens)
        u.known = u.known and self.known
        return u

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens,
                     self.cache_read_tokens + other.cache_read_tokens,
                     self.cache_write_tokens + other.cache_write_tokens,
                     known=self.known and other.known)


@dataclass
class LLMRequest:
    system: str
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    step: str = ""
    """Deterministic name of this call inside its stage (``idea-3/round-2``); the scripted
    provider looks answers up by ``<stage>/<step>``, so steps must not depend on counters
    that reset on resume."""
    cache_prefix_messages: int = 0
    """How many leading messages (after the system prompt) are a stable prefix worth
    caching (Anthropic ``cache_control``). The system prompt is always cached."""
    timeout_s: float | None = None
    """Time limit of one attempt, set by the client (the request timeout, cut to what is
    left of the call's deadline); providers hand it to their SDK."""


@dataclass
class LLMResponse:
    text: str
    tool_calls: list[ToolCall]
    usage: Usage
    stop_reason: str | None
    provider: str
    model: str
    raw: list[Any] = field(default_factory=list)
    """The provider's content blocks, verbatim (see :attr:`Message.raw`)."""

    def as_message(self) -> Message:
        return Message(role="assistant", text=self.text, tool_calls=tuple(self.tool_calls),
                       raw=tuple(self.raw),
                       raw_from=f"{self.provider}:{self.model}" if self.raw else "")


TextCallback = Callable[[str], None]


class Provider(Protocol):
    """One attempt at one call. Raises an :class:`LLMError` subclass on failure; the
    client owns retries, deadlines, recording and budgets."""

    provider: str
    model: str

    async def complete(self, request: LLMRequest, stage: str,
                       on_text: TextCallback | None) -> LLMResponse: ...

    async def aclose(self) -> None: ...


class LLMError(ExternalServiceError):
    """A failed call. ``retryable`` tells the client whether trying again can help."""

    retryable = False
    what = "failed"
    """Short kind of failure for progress lines (``rate-limited``, ``stream broke``)."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RateLimited(LLMError):
    retryable = True
    what = "rate-limited"


class Overloaded(LLMError):
    retryable = True
    what = "overloaded"


class ServerError(LLMError):
    retryable = True
    what = "server error"


class ConnectionFailed(LLMError):
    """The server could not be reached (connect refused, DNS, TLS)."""

    retryable = True
    what = "unreachable"


class NoAnswer(LLMError):
    """The server was reached but sent no answer (no headers, or a silent stream) within
    the request timeout."""

    retryable = True
    what = "no answer"


class StreamInterrupted(LLMError):
    """The stream broke after it started; the call is restarted from the beginning."""

    retryable = True
    what = "stream broke"


class AuthError(LLMError):
    pass


class QuotaExceeded(LLMError):
    """Spend limit / insufficient quota / billing: retrying cannot help."""

    what = "spend limit"


class BadRequest(LLMError):
    pass


class DeadlineExceeded(LLMError):
    pass


class ScriptMissing(LLMError):
    """The scripted cassette has no answer for this request."""


class MalformedOutput(LLMError):
    """A stage's structured reply could not be parsed even after the repair request."""
