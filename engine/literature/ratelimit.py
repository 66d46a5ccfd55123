"""A token bucket per literature source (e.g. 1 request/s without an API key)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aisci.engine.errors import ExternalServiceError


class DeadlinePassed(ExternalServiceError):
    """Waiting for a token would pass the caller's deadline."""


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. Safe for asyncio tasks."""

    def __init__(self, rate: float, burst: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_time(self) -> float:
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    async def acquire(self, deadline: float | None = None) -> None:
        """Take one token, sleeping until one is available; raise DeadlinePassed (without
        waiting) when that would be after ``deadline`` (a time.monotonic() value)."""
        async with self._lock:
            wait = self.wait_time()
            if deadline is not None and self._clock() + wait > deadline:
                raise DeadlinePassed(f"rate limit: next request in {wait:.1f} s is past the deadline")
            if wait > 0:
                await asyncio.sleep(wait)
                self._refill()
            self._tokens -= 1
