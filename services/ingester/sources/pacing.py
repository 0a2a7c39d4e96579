"""When to emit: pure functions of elapsed time, so pacing is tested without sleeping."""

from __future__ import annotations

import math


def ticks_due(elapsed_s: float, rate: float) -> int:
    """How many ticks a source paced at `rate` per second should have emitted after `elapsed_s`."""
    if elapsed_s <= 0:
        return 0
    return math.floor(elapsed_s * rate)


class RatePacer:
    """Emit `rate` ticks per second in small bursts, on a schedule anchored to the first call.

    Each wake-up emits everything due since the last one, so the average rate stays exact over
    seconds even though the OS wakes the thread late by a millisecond or two. If the source was
    held back (backpressure from a full queue), it catches up with at most `max_lag_s` worth of
    ticks and then drops the rest of the debt instead of flooding the queue.
    """

    def __init__(self, rate: float, burst_interval_s: float = 0.005, max_lag_s: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst_interval_s = burst_interval_s
        self._max_burst = max(1, math.ceil(rate * max_lag_s))
        self._origin: float | None = None
        self._base = 0  # ticks already due at `_origin`
        self._emitted = 0

    @property
    def emitted(self) -> int:
        return self._emitted

    def take(self, now: float) -> int:
        """How many ticks to emit at monotonic time `now`; they count as emitted."""
        if self._origin is None:
            self._origin = now
        behind = self._base + ticks_due(now - self._origin, self.rate) - self._emitted
        if behind > self._max_burst:
            self._origin, self._base = now, self._emitted + self._max_burst
            behind = self._max_burst
        self._emitted += max(0, behind)
        return max(0, behind)

    def wait_s(self, now: float) -> float:
        """How long to sleep after `take(now)`: until the next tick is due, at least one burst interval."""
        if self._origin is None:
            return 0.0
        next_due_at = self._origin + (self._emitted + 1 - self._base) / self.rate
        return max(self.burst_interval_s, next_due_at - now)


def replay_delay_s(first_time_ns: int, tick_time_ns: int, speed: float, elapsed_s: float) -> float:
    """How long to wait before emitting a replayed tick so that line times are reproduced at `speed`×.

    `elapsed_s` is the time since the first line was emitted; speed 0 means as fast as possible.
    A line stamped earlier than the schedule (or than the first line) goes out at once.
    """
    if speed <= 0:
        return 0.0
    return max(0.0, (tick_time_ns - first_time_ns) / 1e9 / speed - elapsed_s)
