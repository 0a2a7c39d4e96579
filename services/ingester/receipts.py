"""What became of one push stream's accepted ticks after acceptance: published, failed or dropped.

A `StreamReceipt` travels with each of the stream's records through the queue. The publisher's
threads report each record's outcome on it (the delivery-report thread for acknowledgements and
failures, the publisher thread for a produce that raised) and the thread whose put displaced a
record under `drop_oldest` reports the drop. The stream, once its client has closed its side,
`close`s the receipt with how many ticks it accepted; the receipt calls `on_settled` once every
one of them has an outcome. It knows nothing of asyncio: push.py turns that call into an event
on its loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

MAX_FAILURES = 100  # described in a summary; the count covers them all


@dataclass(frozen=True, slots=True)
class Failure:
    index: int  # the tick's position in its stream, from 0
    code: str  # e.g. "delivery_failed"
    reason: str


@dataclass(frozen=True, slots=True)
class Outcomes:
    published: int
    failed: int
    dropped: int
    failures: tuple[Failure, ...]  # the first MAX_FAILURES, in the order they happened


class StreamReceipt:
    """Thread-safe counts of one stream's outcomes, and the call that says they are all in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._published = 0
        self._failed = 0
        self._dropped = 0
        self._failures: list[Failure] = []
        self._expected: int | None = None  # set by close()
        self._on_settled: Callable[[], None] | None = None

    def published(self) -> None:
        self._record(self._add_published)

    def failed(self, index: int, code: str, reason: str) -> None:
        self._record(partial(self._add_failure, Failure(index, code, reason)))

    def dropped(self) -> None:
        self._record(self._add_dropped)

    def close(self, accepted: int, on_settled: Callable[[], None]) -> None:
        """No more ticks: call `on_settled` (now, or from the thread that reports the last outcome)."""
        with self._lock:
            self._expected, self._on_settled = accepted, on_settled
            notify = self._take_notification()
        if notify is not None:
            notify()

    def outcomes(self) -> Outcomes:
        with self._lock:
            return Outcomes(self._published, self._failed, self._dropped, tuple(self._failures))

    def _record(self, add: Callable[[], None]) -> None:
        with self._lock:
            add()
            notify = self._take_notification()
        # Outside the lock: the callback may take its own (an event loop's) without risk of deadlock.
        if notify is not None:
            notify()

    def _add_published(self) -> None:
        self._published += 1

    def _add_dropped(self) -> None:
        self._dropped += 1

    def _add_failure(self, failure: Failure) -> None:
        self._failed += 1
        if len(self._failures) < MAX_FAILURES:
            self._failures.append(failure)

    def _take_notification(self) -> Callable[[], None] | None:
        """The callback, once, when closed and every accepted tick has an outcome (lock held)."""
        if self._expected is None or self._on_settled is None:
            return None
        if self._published + self._failed + self._dropped < self._expected:
            return None
        notify, self._on_settled = self._on_settled, None
        return notify
