"""A stream's receipt: outcomes from other threads, and one call when they are all in."""

from __future__ import annotations

import threading

from services.ingester.receipts import MAX_FAILURES, Failure, StreamReceipt


def test_settled_is_called_once_when_every_accepted_tick_has_an_outcome() -> None:
    receipt, calls = StreamReceipt(), list[str]()
    receipt.published()  # outcomes may come before the stream closes
    receipt.close(3, lambda: calls.append("settled"))
    assert calls == []
    receipt.failed(1, "delivery_failed", "timed out")
    receipt.dropped()
    assert calls == ["settled"]
    receipt.published()  # never again
    assert calls == ["settled"]
    outcomes = receipt.outcomes()
    assert (outcomes.published, outcomes.failed, outcomes.dropped) == (2, 1, 1)
    assert outcomes.failures == (Failure(1, "delivery_failed", "timed out"),)


def test_a_stream_with_nothing_outstanding_settles_at_close() -> None:
    receipt, calls = StreamReceipt(), list[int]()
    receipt.close(0, lambda: calls.append(0))
    assert calls == [0]


def test_failures_are_all_counted_and_the_first_ones_described() -> None:
    receipt = StreamReceipt()
    for index in range(MAX_FAILURES + 5):
        receipt.failed(index, "delivery_failed", "x")
    outcomes = receipt.outcomes()
    assert outcomes.failed == MAX_FAILURES + 5
    assert [f.index for f in outcomes.failures] == list(range(MAX_FAILURES))


def test_outcomes_from_many_threads_add_up() -> None:
    receipt, settled = StreamReceipt(), threading.Event()
    receipt.close(4_000, settled.set)
    threads = [threading.Thread(target=lambda: [receipt.published() for _ in range(1_000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert settled.is_set() and receipt.outcomes().published == 4_000
