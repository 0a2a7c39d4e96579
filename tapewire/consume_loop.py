"""The loop every consuming service runs: poll a batch, handle it, commit, or rewind and retry.

Offsets are committed only after `handle` returned, so everything it wrote (to Kafka,
PostgreSQL, Redis) happened before the commit: a crash replays the batch rather than losing
it. When `handle` raises a transient error the consumer is rewound to the batch's first
offsets and the same records are handled again after a backoff; nothing is buffered in the
meantime, so a stalled dependency costs no memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tapewire.backoff import Backoff
from tapewire.errors import KafkaFailure, StoreUnavailable
from tapewire.kafka import poll_batch, record_position

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (KafkaFailure, StoreUnavailable, KafkaException)


@dataclass(frozen=True)
class LoopSettings:
    batch_size: int = 500
    poll_timeout_s: float = 0.1
    lag_report_interval_s: float = 1.0
    # False when `handle` commits the offsets itself (inside a Kafka transaction).
    commit_after_handle: bool = True
    # True: store the offsets after `handle` for librdkafka's auto-commit (enable.auto.commit
    # with enable.auto.offset.store=false) instead of a synchronous commit per batch.
    store_offsets: bool = False
    # False when `handle` rewinds the consumer itself before raising (its transaction spans
    # more than the batch in hand).
    rewind_on_failure: bool = True


class LoopMetrics:
    """The loop's own metrics, named after the service that runs it (`<service>_...`)."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.batches = Counter(f"{service}_batches_total", "Batches handled and committed", registry=registry)
        self.records = Counter(
            f"{service}_records_consumed_total", "Records handled and committed", registry=registry
        )
        self.failures = Counter(
            f"{service}_batch_failures_total",
            "Batches rewound after a transient error",
            ["error"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            f"{service}_batch_seconds",
            "Time to handle and commit one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.lag = Gauge(
            f"{service}_consumer_lag",
            "Records behind the end of the partition",
            ["topic", "partition"],
            registry=registry,
        )
        self._last_lag_report = 0.0
        self._reported: set[tuple[str, str]] = set()

    def report_lag(self, consumer: Consumer, interval_s: float) -> None:
        """Lag from the high watermarks the fetches carried (no extra broker round trip), for
        the partitions assigned now: one given up in a rebalance stops being reported, or an
        autoscaler summing the lag of every instance would count it twice."""
        now = time.monotonic()
        if now - self._last_lag_report < interval_s:
            return
        self._last_lag_report = now
        try:
            assigned = consumer.assignment()
            positions = consumer.position(assigned) if assigned else []
        except KafkaException:
            return
        reported: set[tuple[str, str]] = set()
        for tp in positions:
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high is None or high < 0 or tp.offset < 0:
                continue
            labels = (tp.topic, str(tp.partition))
            self.lag.labels(*labels).set(max(0, high - tp.offset))
            reported.add(labels)
        for labels in self._reported - reported:
            self.lag.remove(*labels)
        self._reported = reported


def batch_bounds(messages: Iterable[Message]) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (first offset, last offset) of the good records in a batch."""
    bounds: dict[tuple[str, int], tuple[int, int]] = {}
    for message in messages:
        where = record_position(message)
        if where is None:
            continue
        topic, partition, offset = where
        first, last = bounds.get((topic, partition), (offset, offset))
        bounds[(topic, partition)] = (min(first, offset), max(last, offset))
    return bounds


def run_batches(
    consumer: Consumer,
    handle: Callable[[list[Message]], None],
    stop: threading.Event,
    settings: LoopSettings,
    metrics: LoopMetrics,
    housekeeping: Callable[[], None] = lambda: None,
) -> None:
    """Run until `stop` is set; see the module docstring for the guarantees.

    `housekeeping` runs before every poll, busy or idle (it rate-limits itself); a transient
    error from it is retried after a backoff like a failed batch.
    """
    backoff = Backoff()
    while not stop.is_set():
        metrics.report_lag(consumer, settings.lag_report_interval_s)
        try:
            housekeeping()
        except TRANSIENT_ERRORS as exc:
            metrics.failures.labels(type(exc).__name__).inc()
            log.warning("housekeeping failed", extra={"error": str(exc)})
            stop.wait(backoff.next_delay())
            continue
        batch = poll_batch(consumer, settings.batch_size, settings.poll_timeout_s)
        if not batch:
            continue
        started = time.perf_counter()
        try:
            handle(batch)
        except TRANSIENT_ERRORS as exc:
            metrics.failures.labels(type(exc).__name__).inc()
            delay = backoff.next_delay()
            log.warning(
                "batch failed, rewinding to retry",
                extra={"error": str(exc), "retry_in_s": round(delay, 3), "attempt": backoff.attempts},
            )
            if settings.rewind_on_failure:
                rewind(consumer, batch)
            stop.wait(delay)
            continue
        backoff.reset()
        if settings.store_offsets:
            store(consumer, batch)
        elif settings.commit_after_handle:
            commit(consumer, batch)
        metrics.batches.inc()
        metrics.records.inc(len(batch))
        metrics.batch_seconds.observe(time.perf_counter() - started)


def rewind(consumer: Consumer, batch: list[Message]) -> None:
    """Seek every partition in the batch back to its first record, so the next poll re-reads it."""
    rewind_to(consumer, first_offsets(batch))


def first_offsets(batch: Iterable[Message]) -> list[TopicPartition]:
    """The offset of each partition's first record in the batch: where a retry starts."""
    return [
        TopicPartition(topic, partition, first)
        for (topic, partition), (first, _) in batch_bounds(batch).items()
    ]


def rewind_to(consumer: Consumer, positions: Iterable[TopicPartition]) -> None:
    """Seek each partition to the given offset, so the next poll re-reads from there."""
    for position in positions:
        try:
            consumer.seek(position)
        except KafkaException as exc:
            # The partition was revoked meanwhile: its next owner starts from the last commit.
            log.info(
                "could not rewind partition",
                extra={"topic": position.topic, "partition": position.partition, "error": str(exc)},
            )


def next_offsets(batch: list[Message]) -> list[TopicPartition]:
    """The offset after each partition's last record: what to commit once the batch is done."""
    return [
        TopicPartition(topic, partition, last + 1)
        for (topic, partition), (_first, last) in batch_bounds(batch).items()
    ]


def store(consumer: Consumer, batch: list[Message]) -> None:
    """Store the offset after each partition's last record, for the background auto-commit."""
    offsets = next_offsets(batch)
    if not offsets:
        return
    try:
        consumer.store_offsets(offsets=offsets)
    except KafkaException as exc:
        # The partition was revoked meanwhile: its next owner replays harmlessly from the last commit.
        log.warning("offset store failed", extra={"error": str(exc)})


def commit(consumer: Consumer, batch: list[Message]) -> None:
    """Commit the offset after each partition's last record, synchronously."""
    offsets = next_offsets(batch)
    if not offsets:
        return
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        # Typically a rebalance took the partition away. The work is written and guarded by
        # versions, so whoever owns the partition now replays harmlessly from the last commit.
        log.warning("offset commit failed", extra={"error": str(exc)})
