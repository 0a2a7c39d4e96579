"""What a client may send, and how often (pure, no I/O): a token bucket and an error budget."""

from __future__ import annotations

from collections import deque


class TokenBucket:
    """`rate` messages per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class ErrorBudget:
    """True once more than `limit` errors fell within the last `window_s` seconds."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self._limit = limit
        self._window_s = window_s
        self._times: deque[float] = deque(maxlen=limit + 1)

    def exceeded(self, now: float) -> bool:
        """Count one error at `now`; True when the budget is spent."""
        self._times.append(now)
        while self._times and now - self._times[0] > self._window_s:
            self._times.popleft()
        return len(self._times) > self._limit
