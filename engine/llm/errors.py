"""Reading provider error responses the same way for every SDK: the retry-after delay a
server asks for, and whether a 429 means "slow down" or "out of money"."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aisci.engine.retry_after import parse_retry_after

# Wording providers use when the account, not the request rate, is the problem. A 429
# carrying one of these is a spend limit: waiting does not help, so it is not retried.
_QUOTA = re.compile(
    r"insufficient[_ ]quota|spend(ing)?[_ ]limit|billing|credit balance|quota exceeded|"
    r"exceeded your current quota|usage limit|payment required",
    re.IGNORECASE)


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
