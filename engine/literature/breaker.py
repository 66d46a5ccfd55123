"""A circuit breaker per literature source: after ``threshold`` consecutive failures
(429, 5xx, network errors) the source is skipped for ``cooldown_s``; then one trial
request is let through (half-open) and its outcome closes or re-opens the breaker."""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self.opened_count = 0

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return HALF_OPEN
        return OPEN

    def allow(self) -> bool:
        """May a request be sent now? In half-open state only one trial at a time."""
        st = self.state
        if st == CLOSED:
            return True
        if st == HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._trial_running = False

    def cancel_trial(self) -> None:
        """A permitted request was not sent after all; let another trial through."""
        self._trial_running = False

    def record_failure(self) -> bool:
        """Count one failure; True when this failure (re)opened the breaker."""
        self.failures += 1
        was_trial = self._trial_running
        self._trial_running = False
        if was_trial or (self._opened_at is None and self.failures >= self.threshold):
            self._opened_at = self._clock()
            self.opened_count += 1
            return True
        return False

    def seconds_until_trial(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
