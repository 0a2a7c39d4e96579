"""The loop two services rely on: handle, then commit (or store) exactly what was handled; on a
transient failure rewind to the batch's first records and retry after a backoff, committing
nothing; a bug is not retried. A fake consumer over an in-memory log stands in for Kafka."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry

from tapewire.consume_loop import LoopMetrics, LoopSettings, batch_bounds, next_offsets, run_batches
from tapewire.errors import StoreUnavailable
from tapewire.kafka import poll_batch


@dataclass
class Record:
    """What the loop reads of a consumed message."""

    _topic: str
    _partition: int
    _offset: int
    _error: object = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> object:
        return self._error

    def value(self) -> bytes:
        return f"{self._partition}:{self._offset}".encode()


@dataclass
class FakeConsumer:
    """One topic's partitions as lists of records, a read position per partition, and every
    seek, commit and store the loop makes."""

    log: dict[int, list[Record]]
    topic: str = "t"
    positions: dict[int, int] = field(default_factory=dict)
    commits: list[list[tuple[int, int]]] = field(default_factory=list)
    stored: list[list[tuple[int, int]]] = field(default_factory=list)
    seeks: list[tuple[int, int]] = field(default_factory=list)
    on_empty: Callable[[], None] = lambda: None
    fail_seek: bool = False

    def _next(self) -> Record | None:
        for partition, records in sorted(self.log.items()):
            position = self.positions.get(partition, 0)
            if position < len(records):
                self.positions[partition] = position + 1
                return records[position]
        return None

    def poll(self, _timeout: float) -> Record | None:
        found = self._next()
        if found is None:
            self.on_empty()
        return found

    def consume(self, count: int, _timeout: float) -> list[Record]:
        taken = []
        while len(taken) < count and (record := self._next()) is not None:
            taken.append(record)
        return taken

    def seek(self, position: TopicPartition) -> None:
        if self.fail_seek:
            raise KafkaException("partition revoked")
        self.seeks.append((position.partition, position.offset))
        self.positions[position.partition] = position.offset

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert asynchronous is False
        self.commits.append(sorted((tp.partition, tp.offset) for tp in offsets))

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored.append(sorted((tp.partition, tp.offset) for tp in offsets))

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in self.log]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(self.topic, tp.partition, self.positions.get(tp.partition, 0)) for tp in partitions
        ]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, len(self.log[tp.partition])


def records(partitions: int, per_partition: int, topic: str = "t") -> dict[int, list[Record]]:
    return {p: [Record(topic, p, o) for o in range(per_partition)] for p in range(partitions)}


def run(
    consumer: FakeConsumer, handle: Callable[[list[Message]], None], settings: LoopSettings
) -> tuple[threading.Event, CollectorRegistry]:
    """Run the loop until the log is read to its end (the fake sets `stop` when a poll finds nothing)."""
    stop = threading.Event()
    consumer.on_empty = stop.set
    registry = CollectorRegistry()
    run_batches(cast(Consumer, consumer), handle, stop, settings, LoopMetrics("t", registry))
    return stop, registry


def seen(batch: list[Message]) -> list[tuple[int, int]]:
    return [(m.partition() or 0, m.offset() or 0) for m in batch]


def test_every_batch_is_committed_after_it_was_handled_and_only_then() -> None:
    consumer = FakeConsumer(records(2, 3))
    handled: list[list[tuple[int, int]]] = []

    def handle(batch: list[Message]) -> None:
        assert len(consumer.commits) == len(handled)  # nothing of this batch is committed yet
        handled.append(seen(batch))

    run(consumer, handle, LoopSettings(batch_size=4))
    assert handled == [[(0, 0), (0, 1), (0, 2), (1, 0)], [(1, 1), (1, 2)]]
    assert consumer.commits == [[(0, 3), (1, 1)], [(1, 3)]]  # the offset after each last record


def test_a_transient_failure_rewinds_and_retries_the_same_records_committing_nothing() -> None:
    consumer = FakeConsumer(records(1, 3))
    attempts: list[list[tuple[int, int]]] = []

    def handle(batch: list[Message]) -> None:
        attempts.append(seen(batch))
        if len(attempts) == 1:
            raise StoreUnavailable("PostgreSQL: connection refused")

    _, registry = run(consumer, handle, LoopSettings(batch_size=10, poll_timeout_s=0.01))
    assert attempts == [[(0, 0), (0, 1), (0, 2)]] * 2
    assert consumer.seeks == [(0, 0)]
    assert consumer.commits == [[(0, 3)]]
    assert registry.get_sample_value("t_batch_failures_total", {"error": "StoreUnavailable"}) == 1
    assert registry.get_sample_value("t_records_consumed_total") == 3


def test_offsets_are_stored_for_the_background_commit_when_asked() -> None:
    consumer = FakeConsumer(records(2, 2))
    run(consumer, lambda _batch: None, LoopSettings(batch_size=10, store_offsets=True))
    assert consumer.stored == [[(0, 2), (1, 2)]] and consumer.commits == []


def test_a_handler_that_commits_itself_and_rewinds_itself_is_left_to_do_so() -> None:
    consumer = FakeConsumer(records(1, 2))
    calls = 0

    def handle(_batch: list[Message]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("once")

    settings = LoopSettings(batch_size=10, commit_after_handle=False, rewind_on_failure=False)
    run(consumer, handle, settings)
    # No rewind by the loop: the second poll found nothing new and the loop ended after one try.
    assert (calls, consumer.seeks, consumer.commits) == (1, [], [])


def test_a_bug_is_not_retried() -> None:
    consumer = FakeConsumer(records(1, 2))

    def handle(_batch: list[Message]) -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run(consumer, handle, LoopSettings())
    assert consumer.commits == [] and consumer.seeks == []


def test_a_failed_rewind_of_a_revoked_partition_does_not_stop_the_loop() -> None:
    consumer = FakeConsumer(records(1, 1), fail_seek=True)
    calls = 0

    def handle(_batch: list[Message]) -> None:
        nonlocal calls
        calls += 1
        raise StoreUnavailable("down")

    run(consumer, handle, LoopSettings(poll_timeout_s=0.01))
    assert calls == 1 and consumer.commits == []


def test_error_events_and_other_topics_are_bounded_apart() -> None:
    batch: list[Any] = [
        Record("a", 0, 5),
        Record("a", 0, 7),
        Record("b", 0, 2),
        Record("a", 0, -1001),  # an offset librdkafka gives no real record
        Record("a", 1, 9, _error=KafkaError(KafkaError._TRANSPORT)),  # an error event
    ]
    assert batch_bounds(batch) == {("a", 0): (5, 7), ("b", 0): (2, 2)}
    assert sorted((tp.topic, tp.partition, tp.offset) for tp in next_offsets(batch)) == [
        ("a", 0, 8),
        ("b", 0, 3),
    ]


def test_poll_batch_takes_what_is_queued_after_the_first_record_without_waiting() -> None:
    consumer = FakeConsumer(records(1, 5))
    assert seen(poll_batch(cast(Consumer, consumer), 3, 0.1)) == [(0, 0), (0, 1), (0, 2)]
    assert seen(poll_batch(cast(Consumer, consumer), 1, 0.1)) == [(0, 3)]
    assert seen(poll_batch(cast(Consumer, consumer), 10, 0.1)) == [(0, 4)]
    assert poll_batch(cast(Consumer, consumer), 10, 0.1) == []


def test_lag_is_reported_for_the_partitions_assigned_now_only() -> None:
    consumer = FakeConsumer(records(2, 5))
    consumer.positions = {0: 2, 1: 5}
    registry = CollectorRegistry()
    metrics = LoopMetrics("t", registry)

    metrics.report_lag(cast(Consumer, consumer), 0)
    assert registry.get_sample_value("t_consumer_lag", {"topic": "t", "partition": "0"}) == 3
    assert registry.get_sample_value("t_consumer_lag", {"topic": "t", "partition": "1"}) == 0

    del consumer.log[1]  # partition 1 went to another instance in a rebalance
    metrics.report_lag(cast(Consumer, consumer), 0)
    assert registry.get_sample_value("t_consumer_lag", {"topic": "t", "partition": "1"}) is None
    assert registry.get_sample_value("t_consumer_lag", {"topic": "t", "partition": "0"}) == 3
