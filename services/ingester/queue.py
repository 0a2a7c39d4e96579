"""The bounded queue between the source and the publisher, and what happens when it is full.

`block` makes the source wait, so backpressure reaches the feed (a replay slows down; a live
feed's own buffers fill). `drop_oldest` keeps the source running and discards the oldest queued
tick instead: for a live dashboard a fresh tick is worth more than a stale one. Every drop is
counted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

from tapewire.errors import TapewireError

T = TypeVar("T")
QueuePolicy = Literal["block", "drop_oldest"]


class QueueClosed(TapewireError):
    """The queue takes no more items."""


class QueueFull(TapewireError):
    """Under `block`, no room came within the caller's timeout; the item was not added."""


class BoundedQueue(Generic[T]):
    """A thread-safe FIFO of at most `capacity` items, for producing threads (the source and the
    gRPC push streams) and one consuming thread.

    `stamp` is applied to each item at the moment it is accepted (under the queue's lock), e.g.
    to record the ingest time: under `block` that is after the wait for room, not before.
    """

    def __init__(self, capacity: int, policy: QueuePolicy, stamp: Callable[[T], T] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.policy = policy
        self._stamp = stamp
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._dropped = 0
        self._waiting_for_room = 0

    @property
    def depth(self) -> int:
        return len(self._items)

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def waiting_for_room(self) -> int:
        """How many `put` calls are blocked on a full queue (backpressure in action)."""
        return self._waiting_for_room

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T, timeout_s: float | None = None) -> T | None:
        """Add `item`; return the oldest item it displaced (`drop_oldest` on a full queue), else None.

        Under `block` a full queue makes the caller wait for room, for at most `timeout_s` if
        given (then `QueueFull`; 0 = do not wait). Raises `QueueClosed` if the queue is closed,
        including while waiting.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while self.policy == "block" and len(self._items) >= self.capacity and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueFull(f"no room within {timeout_s} s")
                self._waiting_for_room += 1
                try:
                    self._not_full.wait(remaining)
                finally:
                    self._waiting_for_room -= 1
            if self._closed:
                raise QueueClosed("queue closed")
            displaced = None
            if len(self._items) >= self.capacity:
                displaced = self._items.popleft()
                self._dropped += 1
            self._items.append(self._stamp(item) if self._stamp else item)
            self._not_empty.notify()
            return displaced

    def get_batch(self, max_items: int, timeout_s: float) -> list[T] | None:
        """Up to `max_items` in order, waiting up to `timeout_s` for the first one.

        Returns [] when nothing arrived in time, and None once the queue is closed and empty.
        """
        with self._lock:
            if not self._items and not self._closed:
                self._not_empty.wait(timeout_s)
            if not self._items:
                return None if self._closed else []
            batch = [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
            # As many waiters as there is new room: the source and gRPC push streams may all wait.
            self._not_full.notify(len(batch))
            return batch

    def close(self) -> None:
        """Refuse further items and wake every waiter; items already queued can still be taken."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()
