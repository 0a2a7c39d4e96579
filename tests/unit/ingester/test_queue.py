"""The bounded queue: both policies exactly, and closing, without sleeping."""

from __future__ import annotations

import threading
import time

import pytest

from services.ingester.queue import BoundedQueue, QueueClosed, QueueFull

WAIT_S = 5.0  # only ever reached if the code under test is broken


def filled(capacity: int, policy: str, items: range) -> BoundedQueue[int]:
    queue = BoundedQueue[int](capacity, policy)  # type: ignore[arg-type]
    for item in items:
        queue.put(item)
    return queue


def test_items_come_out_in_order_in_batches() -> None:
    queue = filled(10, "block", range(5))
    assert queue.depth == 5
    assert queue.get_batch(3, 0) == [0, 1, 2]
    assert queue.get_batch(10, 0) == [3, 4]
    assert queue.get_batch(10, 0) == []


def test_drop_oldest_discards_the_oldest_and_counts_every_drop() -> None:
    queue = filled(3, "drop_oldest", range(3))
    assert queue.put(3) == 0
    assert queue.put(4) == 1
    assert (queue.depth, queue.dropped) == (3, 2)
    assert queue.get_batch(10, 0) == [2, 3, 4]
    assert queue.put(5) is None
    assert queue.dropped == 2


def test_drop_oldest_never_blocks() -> None:
    queue = filled(1, "drop_oldest", range(1000))
    assert (queue.depth, queue.dropped) == (1, 999)
    assert queue.get_batch(10, 0) == [999]


def put_in_thread(
    queue: BoundedQueue[int], item: int
) -> tuple[threading.Thread, threading.Event, list[object]]:
    started, outcome = threading.Event(), list[object]()

    def put() -> None:
        started.set()
        try:
            outcome.append(queue.put(item))
        except QueueClosed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=put, daemon=True)
    thread.start()
    assert started.wait(WAIT_S)
    return thread, started, outcome


def wait_until_blocked(queue: BoundedQueue[int], thread: threading.Thread) -> None:
    deadline = time.monotonic() + WAIT_S
    while queue.waiting_for_room == 0:
        assert time.monotonic() < deadline, "the put never blocked"
        thread.join(0.001)
    assert thread.is_alive()


def test_block_makes_the_source_wait_until_there_is_room() -> None:
    queue = filled(2, "block", range(2))
    thread, _, outcome = put_in_thread(queue, 2)
    wait_until_blocked(queue, thread)
    assert outcome == [] and queue.depth == 2
    assert queue.get_batch(1, 0) == [0]
    thread.join(WAIT_S)
    assert outcome == [None]
    assert queue.waiting_for_room == 0
    assert queue.get_batch(10, 0) == [1, 2]
    assert queue.dropped == 0


def test_close_wakes_a_blocked_source() -> None:
    queue = filled(1, "block", range(1))
    thread, _, outcome = put_in_thread(queue, 1)
    wait_until_blocked(queue, thread)
    queue.close()
    thread.join(WAIT_S)
    assert len(outcome) == 1 and isinstance(outcome[0], QueueClosed)
    assert queue.get_batch(10, 0) == [0]  # what was accepted can still be drained


def test_after_close_puts_are_refused_and_the_consumer_drains_then_sees_the_end() -> None:
    queue = filled(5, "block", range(3))
    queue.close()
    with pytest.raises(QueueClosed):
        queue.put(9)
    assert queue.get_batch(2, WAIT_S) == [0, 1]
    assert queue.get_batch(2, WAIT_S) == [2]
    assert queue.get_batch(2, WAIT_S) is None
    assert queue.closed


def test_a_waiting_consumer_is_woken_by_a_put_and_by_close() -> None:
    queue = BoundedQueue[int](5, "block")
    got: list[list[int] | None] = []
    consumer = threading.Thread(
        target=lambda: got.extend([queue.get_batch(5, WAIT_S), queue.get_batch(5, WAIT_S)])
    )
    consumer.start()
    queue.put(1)
    while not got and queue.depth:  # the consumer takes the first item...
        consumer.join(0.001)
    queue.close()  # ...and close ends its second wait at once
    consumer.join(WAIT_S)
    assert not consumer.is_alive()
    assert got == [[1], None]


def test_stamp_is_applied_on_acceptance() -> None:
    accepted: list[int] = []

    def stamp(item: int) -> int:
        accepted.append(item)
        return item * 10

    queue = BoundedQueue[int](1, "block", stamp=stamp)
    queue.put(1)
    thread, _, _ = put_in_thread(queue, 2)
    wait_until_blocked(queue, thread)
    assert accepted == [1]  # the blocked tick is not stamped while it waits
    assert queue.get_batch(1, 0) == [10]
    thread.join(WAIT_S)
    assert accepted == [1, 2]
    assert queue.get_batch(1, 0) == [20]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BoundedQueue[int](0, "block")


def test_a_put_with_a_timeout_gives_up_with_queue_full_and_adds_nothing() -> None:
    queue = filled(2, "block", range(2))
    with pytest.raises(QueueFull):
        queue.put(9, timeout_s=0)
    started = time.monotonic()
    with pytest.raises(QueueFull):
        queue.put(9, timeout_s=0.05)
    assert time.monotonic() - started >= 0.05
    assert queue.get_batch(10, 0) == [0, 1]
    assert queue.put(9, timeout_s=0) is None  # room now: no waiting at all


def test_a_timeout_never_applies_under_drop_oldest() -> None:
    queue = filled(1, "drop_oldest", range(1))
    assert queue.put(1, timeout_s=0) == 0


def test_a_batch_taken_wakes_as_many_waiting_producers_as_it_made_room_for() -> None:
    queue = filled(3, "block", range(3))
    waiters = [put_in_thread(queue, item) for item in (10, 11, 12)]
    deadline = time.monotonic() + WAIT_S
    while queue.waiting_for_room < 3:
        assert time.monotonic() < deadline, "the puts never blocked"
        time.sleep(0.001)
    assert queue.get_batch(3, 0) == [0, 1, 2]
    for thread, _, outcome in waiters:
        thread.join(WAIT_S)
        assert outcome == [None]
    assert sorted(queue.get_batch(10, 0) or []) == [10, 11, 12]
