"""Exponential backoff with jitter, for retrying transient failures without a thundering herd."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of initial, initial*multiplier, ... capped at maximum, each spread by ±jitter."""

    initial_s: float = 0.1
    maximum_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    _attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        base = min(self.maximum_s, self.initial_s * self.multiplier**self._attempt)
        self._attempt += 1
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt
