"""One HTTP GET returning JSON, with the failure taxonomy the retry/breaker logic needs.

Plain ``urllib`` in a worker thread (no extra dependency); the socket timeout bounds the
thread and the caller also bounds its wait, so a stuck server never stalls the engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from aisci import __version__
from aisci.engine.errors import ExternalServiceError, bounded_line
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


MAX_BODY_BYTES = 20_000_000
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="aisci-http")
"""The requests' own threads: a server that drips its answer holds one of these (for at
most the request's timeout), never a thread of the engine's shared pool."""


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to http(s) on the same host: the API key is never sent
    elsewhere and a source cannot point the engine at another machine."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if new.scheme not in ("http", "https") or new.netloc != old.netloc:
            where = f"{bounded_line(new.scheme)}://{bounded_line(new.netloc, 80)}"
            raise SourceError(f"{old.netloc}: redirected to another host or scheme "
                              f"({where}); not followed",
                              status=code, retryable=False)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameHostRedirects)


def _get(url: str, headers: dict[str, str], timeout: float) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                               "Accept": "application/json", **headers})
    host = urllib.parse.urlsplit(url).netloc
    deadline = time.monotonic() + timeout
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            # Read in pieces against one deadline: a server dripping a byte at a time
            # never trips the per-read socket timeout.
            parts: list[bytes] = []
            size = 0
            while size < MAX_BODY_BYTES:
                if time.monotonic() > deadline:
                    raise TimeoutError
                chunk = resp.read1(min(65536, MAX_BODY_BYTES - size))
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
            body = b"".join(parts)
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        retryable = status == 429 or status >= 500
        raise SourceError(f"{host}: HTTP {status} {bounded_line(exc.reason)}", status=status,
                          retryable=retryable, retry_after=retry_after) from None
    except TimeoutError:
        raise SourceError(f"{host}: no answer within {timeout:.1f} s") from None
    except urllib.error.URLError as exc:
        raise SourceError(f"{host}: cannot connect ({bounded_line(exc.reason)})") from None
    except http.client.HTTPException as exc:  # a bad status line, header or chunk
        raise SourceError(f"{host}: not a valid HTTP answer ({type(exc).__name__})") from None
    except (ConnectionError, OSError) as exc:
        raise SourceError(f"{host}: connection failed ({bounded_line(exc)})") from None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, 5000-digit numbers, nesting
        raise SourceError(f"{host}: answer is not JSON", retryable=True) from None


async def get_json(url: str, params: dict[str, Any], headers: dict[str, str],
                   timeout: float) -> Any:
    full = f"{url}?{urllib.parse.urlencode(params)}" if params else url
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(_POOL, _get, full, headers, timeout),
                                      timeout=timeout + 1.0)
    except TimeoutError:
        raise SourceError(f"{urllib.parse.urlsplit(url).netloc}: no answer within "
                          f"{timeout:.1f} s") from None
