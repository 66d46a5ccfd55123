"""Reading provider errors the same way for every SDK: the retry-after delay a server asks
for, whether an error means "slow down" or "out of money" (by the structured codes first),
and what a transport failure was (unreachable, reached but silent, or a broken stream).

Imported by the provider modules only (it imports httpx2, which the SDKs bring)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
from aisci.engine.errors import AisciError, bounded_line
from aisci.engine.llm.base import (
    ConnectionFailed,
    LLMError,
    NoAnswer,
    StreamInterrupted,
    TextCallback,
)
from aisci.engine.retry_after import parse_retry_after

# Wording providers use when the account, not the request rate, is the problem. A 429
# carrying one of these is a spend limit: waiting does not help, so it is not retried.
_QUOTA = re.compile(
    r"insufficient[_ ]quota|spend(ing)?[_ ]limit|billing|credit balance|quota exceeded|"
    r"exceeded your current quota|usage limit|payment required",
    re.IGNORECASE)


# Structured error codes that mean the account cannot pay for more calls. Anthropic:
# ``error.type`` ``billing_error`` and ``error.details.error_code`` (the SDK's
# ``error_code``); OpenAI: ``error.code`` / ``error.type``.
QUOTA_CODES = frozenset({
    "billing_error",
    "enforced_spend_limit_reached",
    "contract_spend_limit_reached",
    "linked_organization_spend_limit_reached",
    "linked_organization_billing_unavailable",
    "organization_on_hold",
    "user_profile_billing_not_authorized",
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "spend_limit_reached",
})


def is_quota_code(*codes: object) -> bool:
    """True when any of the provider's structured error codes names a spend limit."""
    return any(isinstance(c, str) and c.strip().lower() in QUOTA_CODES for c in codes)


def is_quota_message(text: str | None) -> bool:
    return bool(text) and bool(_QUOTA.search(text or ""))


def retry_after_seconds(headers: Mapping[str, str] | Any | None) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (the SDKs raise theirs ``from`` the httpx2 error)."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(out) < 8:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def host_of(base_url: str) -> str:
    try:
        url = httpx2.URL(base_url)
    except Exception:  # a malformed base URL still gets named as given
        return base_url
    return f"{url.host}:{url.port}" if url.port else str(url.host or base_url)


def transport_error(where: str, base_url: str, exc: BaseException, started: bool,
                    timeout_s: float) -> LLMError:
    """A transport failure at any point of a call, as one of ours. ``started``: the
    response headers had arrived and the body was being read. Every kind is retryable
    (broken streams are restarted from the beginning), within the client's bounds."""
    chain = _chain(exc)
    host = host_of(base_url)
    name = type(exc).__name__
    root = chain[-1]
    detail = f"{type(root).__name__}: {root}" if str(root) else type(root).__name__
    if any(isinstance(e, httpx2.ConnectError | httpx2.ConnectTimeout) for e in chain):
        return ConnectionFailed(f"{where}: cannot reach {host} ({detail})")
    timed_out = any(isinstance(e, httpx2.TimeoutException) for e in chain) \
        or name == "APITimeoutError"
    if started:
        if timed_out:
            return StreamInterrupted(f"{where}: stream stalled: no data from {host} within "
                                     f"{timeout_s:g} s")
        return StreamInterrupted(f"{where}: stream broke ({detail})")
    if timed_out:
        return NoAnswer(f"{where}: no answer from {host} within {timeout_s:g} s")
    if any(isinstance(e, httpx2.RemoteProtocolError | httpx2.ReadError) for e in chain):
        return NoAnswer(f"{where}: {host} closed the connection without an answer ({detail})")
    return ConnectionFailed(f"{where}: cannot reach {host} ({detail})")


# -- error bodies in one line ---------------------------------------------------------------

REASON_CHARS = 200
"""An error body is cut to this many characters in a message (a whole HTML page is not a
reason)."""

_HTML = re.compile(r"<\s*(!doctype|html|head|body|title|h1|div|p|center)\b", re.IGNORECASE)
_NOT_TEXT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def one_line_reason(text: object, limit: int = REASON_CHARS) -> str:
    """``text`` as one bounded line: an HTML page reduced to its text, then
    :func:`~aisci.engine.errors.bounded_line`."""
    s = str(text if text is not None else "")[: limit * 50]
    if _HTML.search(s):
        s = html.unescape(_TAG.sub(" ", _NOT_TEXT.sub(" ", s)))
    return bounded_line(s, limit)


def _body_reason(body: object) -> str:
    """The human reason inside a parsed error body, whatever its shape: the vendors'
    ``{"error": {"message": ...}}``, OpenAI-compatible servers' ``{"error": "..."}``,
    ``{"message": ...}`` or ``{"detail": ...}``, or a bare string."""
    if isinstance(body, str):
        return body
    if isinstance(body, Mapping):
        for key in ("message", "error", "detail", "msg"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value
            if isinstance(value, Mapping):
                inner = _body_reason(value)
                if inner:
                    return inner
    return ""


def status_reason(exc: Any, fallback: str = "") -> str:
    """The reason an SDK status error carries, in one bounded line: from the parsed body
    when it has one, else from the raw response text (an HTML error page from a proxy),
    else ``fallback`` (the SDK's own message)."""
    reason = _body_reason(getattr(exc, "body", None))
    if not reason:
        response = getattr(exc, "response", None)
        try:
            reason = str(getattr(response, "text", "") or "")
        except Exception:  # an unread or undecodable body: fall back to the SDK message
            reason = ""
    return one_line_reason(reason or fallback or exc)


def stream_broke(where: str, exc: BaseException) -> StreamInterrupted:
    """Anything that went wrong while an accepted (200) stream was read (an undecodable
    event, a body that does not decompress, events the SDK cannot assemble): a broken
    stream, restarted from the beginning by the client."""
    detail = one_line_reason(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return StreamInterrupted(f"{where}: stream broke ({detail})")


def request_failed(where: str, exc: BaseException) -> LLMError:
    """Anything unexpected the SDK raised before a response arrived: one line naming it,
    not retried (nothing says that trying again would help)."""
    detail = one_line_reason(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return LLMError(f"{where}: request failed ({detail})")


class CallbackFailed(AisciError):
    """The caller's own ``on_text`` callback raised (carried as ``__cause__``): not a
    provider failure, so the provider re-raises the original instead of mapping it. It
    never leaves the provider."""


def guard_callback(on_text: TextCallback | None) -> Callable[[str], None] | None:
    """``on_text`` wrapped so that its exceptions are told apart from the stream's."""
    if on_text is None:
        return None
    callback = on_text

    def call(text: str) -> None:
        try:
            callback(text)
        except Exception as exc:
            raise CallbackFailed("the on_text callback failed") from exc

    return call


def reraise_callback_error(exc: CallbackFailed) -> BaseException:
    """The exception the caller's callback raised, to re-raise unchanged."""
    return exc.__cause__ if exc.__cause__ is not None else exc
