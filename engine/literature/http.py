"""One HTTP GET returning JSON, with the failure taxonomy the retry/breaker logic needs.

Plain ``urllib`` in a worker thread (no extra dependency); the socket timeout bounds the
thread and the caller also bounds its wait, so a stuck server never stalls the engine.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from aisci import __version__
from aisci.engine.errors import ExternalServiceError
from aisci.engine.retry_after import parse_retry_after

USER_AGENT = f"aisci/{__version__} (+literature search for novelty checks and citations)"


class SourceError(ExternalServiceError):
    """A failed request to a literature source."""

    def __init__(self, message: str, *, status: int | None = None,
                 retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


def _get(url: str, headers: dict[str, str], timeout: float) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                               "Accept": "application/json", **headers})
    host = urllib.parse.urlsplit(url).netloc
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read(20_000_000)
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        retryable = status == 429 or status >= 500
        raise SourceError(f"{host}: HTTP {status} {exc.reason}", status=status,
                          retryable=retryable, retry_after=retry_after) from None
    except TimeoutError:
        raise SourceError(f"{host}: no answer within {timeout:.1f} s") from None
    except urllib.error.URLError as exc:
        raise SourceError(f"{host}: cannot connect ({exc.reason})") from None
    except (ConnectionError, OSError) as exc:
        raise SourceError(f"{host}: connection failed ({exc})") from None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SourceError(f"{host}: answer is not JSON", retryable=True) from None


async def get_json(url: str, params: dict[str, Any], headers: dict[str, str],
                   timeout: float) -> Any:
    full = f"{url}?{urllib.parse.urlencode(params)}" if params else url
    try:
        return await asyncio.wait_for(asyncio.to_thread(_get, full, headers, timeout),
                                      timeout=timeout + 1.0)
    except TimeoutError:
        raise SourceError(f"{urllib.parse.urlsplit(url).netloc}: no answer within "
                          f"{timeout:.1f} s") from None
