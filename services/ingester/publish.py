"""From the queue to Kafka: one thread produces, another serves the delivery reports.

Nothing is ever dropped here. When librdkafka's own buffer is full (`BufferError`) the publisher
waits for acknowledgements to make room and tries again, so a slow or absent broker fills
librdkafka's buffer, then our bounded queue, and then the queue's policy decides. librdkafka
retries failed sends itself until `delivery.timeout.ms`; only then is a record reported failed.

Delivery reports are served by a dedicated thread blocked in `poll()`, which returns as soon as
an acknowledgement arrives: the ack latency histogram measures the broker, not how often a busy
loop remembers to poll, and the callbacks only ever run on one thread at a time.

No record can stop either thread. The records were encoded and size-checked at acceptance
(records.py), and whatever still goes wrong with one of them (a produce that raises, a failed
delivery) is counted as that record's failure, with a reason, and reported to its push stream's
receipt; then the next one goes. Only a fatal producer error (fencing, an idempotence violation)
stops the publisher, since every later produce would fail the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message
from opentelemetry.trace import Span

from services.ingester.metrics import IngesterMetrics
from services.ingester.queue import BoundedQueue
from services.ingester.records import Record
from tapewire import tracing
from tapewire.tracing import Tracer

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]
Headers = list[tuple[str, str | bytes | None]] | None  # a record's, as produce() takes them

# Why a record accepted into the queue was not published; label values of
# ingester_delivery_failures_total and the `code` of a stream's failures in its PushSummary.
DELIVERY_FAILED = "delivery_failed"  # the broker did not acknowledge it after librdkafka's retries
PRODUCE_FAILED = "produce_failed"  # librdkafka refused it (a non-fatal KafkaException)
PRODUCE_ERROR = "produce_error"  # anything else produce() raised
FAILURE_REASONS = (DELIVERY_FAILED, PRODUCE_FAILED, PRODUCE_ERROR)


class ProducerLike(Protocol):
    """The part of `confluent_kafka.Producer` the ingester uses (tests pass a fake)."""

    def produce(
        self,
        topic: str,
        *,
        value: bytes,
        key: bytes,
        on_delivery: DeliveryCallback,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class Publisher:
    """Produces the queue's records, keyed by instrument, until the queue is closed and empty."""

    def __init__(
        self,
        producer: ProducerLike,
        topic: str,
        queue: BoundedQueue[Record],
        metrics: IngesterMetrics,
        batch_size: int = 1_000,
        idle_wait_s: float = 0.1,
        buffer_full_wait_s: float = 0.05,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        tracer: Tracer = tracing.DISABLED,
    ) -> None:
        self._producer = producer
        self._tracer = tracer
        self._topic = topic
        self._queue = queue
        self._metrics = metrics
        metrics.declare_delivery_failures(FAILURE_REASONS)
        self._batch_size = batch_size
        self._idle_wait_s = idle_wait_s
        self._buffer_full_wait_s = buffer_full_wait_s
        self._wall_clock_ns = wall_clock_ns
        self._abandoned = False
        # Set by a delivery report (or abandon) while the producer buffer is full, so that the
        # publisher retries as soon as there is room instead of after a fixed pause.
        self._room = threading.Event()
        self._waiting_for_room = False
        self._failure_log = Throttled(log, interval_s=1.0)
        self._failure_lock = threading.Lock()
        self.produced = 0
        self.acknowledged = 0
        self.failed = 0
        self.unsent = 0  # taken from the queue but never handed to librdkafka (abandoned at shutdown)
        self.error: Exception | None = None  # what stopped the publisher early, if anything

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:
            self.error = exc
            log.exception("the publisher failed")

    def _run(self) -> None:
        while not self._abandoned:
            batch = self._queue.get_batch(self._batch_size, self._idle_wait_s)
            if batch is None:
                return
            for index, record in enumerate(batch):
                if not self._produce(record):
                    self.unsent += len(batch) - index
                    return

    def abandon(self) -> None:
        """Stop as soon as possible, leaving what is still queued (shutdown ran out of time)."""
        self._abandoned = True
        self._room.set()

    def _produce(self, record: Record) -> bool:
        """Hand `record` to librdkafka; False when the publisher must stop (abandoned, fatal error)."""
        span, headers = self._trace(record) if self._tracer.sampled() else (None, None)
        try:
            return self._produce_until_buffered(record, span, headers)
        except Exception as exc:  # one record's trouble, whatever it is, must not stop the rest
            self._fail(record, PRODUCE_ERROR, f"{type(exc).__name__}: {exc}", span)
            return True

    def _produce_until_buffered(self, record: Record, span: Span | None, headers: Headers) -> bool:
        on_delivery = partial(self._delivered, record, span)
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    value=record.value(),
                    key=record.key,
                    on_delivery=on_delivery,
                    headers=headers,
                )
                self.produced += 1
                return True
            except BufferError:
                # librdkafka's buffer is full: the report thread makes room as acknowledgements arrive.
                if not self._wait_for_room():
                    self._end_unsent(span, "abandoned at shutdown")
                    return False
            except KafkaException as exc:
                if exc.args[0].fatal():
                    self.error = exc
                    log.error("kafka producer failed fatally", extra={"error": str(exc)})
                    self._end_unsent(span, str(exc))
                    return False
                self._fail(record, PRODUCE_FAILED, str(exc.args[0]), span)
                return True

    def _wait_for_room(self) -> bool:
        """Wait for a delivery report (or a short while); False once abandoned."""
        self._waiting_for_room = True
        try:
            if not self._abandoned:
                self._room.wait(self._buffer_full_wait_s)
            self._room.clear()
        finally:
            self._waiting_for_room = False
        return not self._abandoned

    def _trace(self, record: Record) -> tuple[Span, Headers]:
        """A new trace for a sampled tick: its span runs from acceptance to acknowledgement."""
        attributes = {"instrument": record.key.decode(errors="replace"), "topic": self._topic}
        span = self._tracer.start("ingester publish", record.ingest_time_ns, attributes=attributes)
        return span, tracing.headers(span)

    def _delivered(
        self, record: Record, span: Span | None, error: KafkaError | None, message: Message
    ) -> None:
        if self._waiting_for_room:
            self._room.set()
        if error is not None:
            self._fail(record, DELIVERY_FAILED, str(error), span)
            return
        self.acknowledged += 1
        self._metrics.published.inc()
        self._metrics.ack_latency.observe(max(0, self._wall_clock_ns() - record.ingest_time_ns) / 1e9)
        if record.receipt is not None:
            record.receipt.published()
        if span is not None:
            span.set_attributes({"partition": message.partition() or 0, "offset": message.offset() or 0})
            span.end(end_time=self._wall_clock_ns())

    def _end_unsent(self, span: Span | None, reason: str) -> None:
        if span is not None:
            tracing.failed(span, reason, self._wall_clock_ns())

    def _fail(self, record: Record, code: str, reason: str, span: Span | None = None) -> None:
        with self._failure_lock:  # failures are reported from both threads
            self.failed += 1
            self._failure_log.warning(
                "delivery failed", {"code": code, "error": reason, "topic": self._topic}
            )
        self._metrics.delivery_failed(code)
        if record.receipt is not None:
            record.receipt.failed(record.index, code, reason)
        self._end_unsent(span, f"{code}: {reason}")


def serve_delivery_reports(producer: ProducerLike, done: threading.Event, timeout_s: float = 0.1) -> None:
    """Serve delivery reports (and librdkafka's error and log events) until `done` is set."""
    trouble = Throttled(log, interval_s=1.0)
    while not done.is_set():
        try:
            producer.poll(timeout_s)
        except Exception as exc:
            # poll() re-raises what a callback raised; the reports of every later record still
            # have to be served, or each of their streams would wait for nothing.
            trouble.warning("serving delivery reports failed", {"error": f"{type(exc).__name__}: {exc}"})


class Throttled:
    """Logs at most once per interval, saying how many occurrences it held back."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last = float("-inf")
        self._held_back = 0

    def warning(self, message: str, fields: dict[str, object]) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            self._held_back += 1
            return
        self._logger.warning(message, extra={**fields, "similar_since_last_log": self._held_back})
        self._last, self._held_back = now, 0
