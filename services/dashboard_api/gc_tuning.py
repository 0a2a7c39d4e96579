"""Python's garbage collector, tuned for many long-lived connections and its pauses measured.

Every WebSocket connection keeps a few hundred objects the collector tracks (its protocol,
tasks, coroutines, events, queues): about 1.1 million at 5,000 connections. A full
(generation 2) collection walks all of them and stops the event loop meanwhile, for 0.6–1 s
at that size on the benchmark machine, and with CPython's default thresholds (700, 10, 10)
one came every few seconds under load: the fan-out's p99 at 5,000 connections was that pause
(750–1,050 ms). A full collection runs when the objects promoted out of the young generations
since the last one reach a quarter of the old generation; at a young threshold of 700
allocations, anything alive for a millisecond or two (a queued update, a timer) is promoted.
With the young threshold at 50,000, short-lived objects die before they are promoted, no full
collection ran in a 60 s window at 5,000 connections, and p99 was 49 ms. The price is a
longer young collection (5–20 ms, a few times a second under that load).

`dashboard_api_gc_pause_seconds{generation}` shows what the collector costs in production.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram


def tune(young_threshold: int) -> None:
    """Set the young generation's threshold (0: leave CPython's default)."""
    if young_threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)


class PauseTimer:
    """A `gc.callbacks` entry that observes each collection's duration by generation."""

    def __init__(self, pauses: Histogram) -> None:
        self._by_generation = [pauses.labels(str(generation)) for generation in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
