"""`TransactionCalls.repeating`: which errors of a transaction call are repeated and which are
raised; `TransactionCalls.bounded`: a call that does not return in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.processor import run
from services.processor.run import TransactionCalls, TransactionStuck


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def calls(slept: list[float]) -> Iterator[TransactionCalls]:
    calls = TransactionCalls(sleep=slept.append)
    yield calls
    calls.close()


def failing(*errors: KafkaError) -> tuple[list[int], Callable[[float], None]]:
    """A call that raises `errors` one per attempt, then succeeds; and its attempt count."""
    attempts = [0]
    queue = list(errors)

    def call(_timeout_s: float) -> None:
        attempts[0] += 1
        if queue:
            raise KafkaException(queue.pop(0))

    return attempts, call


TIMED_OUT = KafkaError(KafkaError._TIMED_OUT, "commit timed out", retriable=True)


def test_a_retriable_error_repeats_the_same_call_until_it_succeeds(
    calls: TransactionCalls, slept: list[float]
) -> None:
    attempts, call = failing(TIMED_OUT, TIMED_OUT)
    calls.repeating(call, patience_s=30)
    assert attempts == [3]
    assert slept == [0.05, 0.1]


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError._FENCED, "fenced", fatal=True),
        KafkaError(KafkaError.INVALID_TXN_STATE, "abortable", retriable=True, txn_requires_abort=True),
        KafkaError(KafkaError.INVALID_REQUEST, "permanent"),
    ],
)
def test_fatal_abortable_and_permanent_errors_are_raised_at_once(
    calls: TransactionCalls, error: KafkaError
) -> None:
    attempts, call = failing(error)
    with pytest.raises(KafkaException):
        calls.repeating(call, patience_s=30)
    assert attempts == [1]


def test_a_retriable_error_that_outlasts_the_patience_is_raised(calls: TransactionCalls) -> None:
    attempts, call = failing(*[TIMED_OUT] * 100)
    with pytest.raises(KafkaException):
        calls.repeating(call, patience_s=0.0)
    assert attempts == [1]


def test_a_call_that_does_not_return_in_time_is_stuck(
    calls: TransactionCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "STUCK_GRACE_S", 0.05)
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(TransactionStuck):
        calls.bounded(lambda timeout_s: release.wait(60), 0.05)
    assert time.monotonic() - started < 5
    release.set()


def test_a_bounded_call_gets_its_timeout_and_hands_back_its_error(calls: TransactionCalls) -> None:
    given: list[float] = []
    calls.bounded(given.append, 2.5)
    assert given == [2.5]
    with pytest.raises(KafkaException):
        calls.bounded(failing(TIMED_OUT)[1], 1.0)


def test_every_call_runs_on_the_same_thread(calls: TransactionCalls) -> None:
    threads: set[int] = set()
    for _ in range(5):
        calls.bounded(lambda _timeout_s: threads.add(threading.get_ident()), 1.0)
    assert len(threads) == 1
    assert threading.get_ident() not in threads
