"""From the queue to Kafka: one thread produces, another serves the delivery reports.

Nothing is ever dropped here. When librdkafka's own buffer is full (`BufferError`) the publisher
waits for acknowledgements to make room and tries again, so a slow or absent broker fills
librdkafka's buffer, then our bounded queue, and then the queue's policy decides. librdkafka
retries failed sends itself until `delivery.timeout.ms`; only then is a record reported failed.

Delivery reports are served by a dedicated thread blocked in `poll()`, which returns as soon as
an acknowledgement arrives: the ack latency histogram measures the broker, not how often a busy
loop remembers to poll, and the callbacks only ever run on one thread at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message

from services.ingester.metrics import IngesterMetrics
from services.ingester.queue import BoundedQueue
from tapewire.ticks import RawTick, to_proto

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


class ProducerLike(Protocol):
    """The part of `confluent_kafka.Producer` the ingester uses (tests pass a fake)."""

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: DeliveryCallback) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class Publisher:
    """Produces the queue's ticks, keyed by instrument, until the queue is closed and empty."""

    def __init__(
        self,
        producer: ProducerLike,
        topic: str,
        queue: BoundedQueue[RawTick],
        metrics: IngesterMetrics,
        batch_size: int = 1_000,
        idle_wait_s: float = 0.1,
        buffer_full_wait_s: float = 0.05,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._queue = queue
        self._metrics = metrics
        self._batch_size = batch_size
        self._idle_wait_s = idle_wait_s
        self._buffer_full_wait_s = buffer_full_wait_s
        self._wall_clock_ns = wall_clock_ns
        self._abandoned = False
        # Set by a delivery report (or abandon) while the producer buffer is full, so that the
        # publisher retries as soon as there is room instead of after a fixed pause.
        self._room = threading.Event()
        self._waiting_for_room = False
        self._failure_log = _Throttled(log, interval_s=1.0)
        self._failure_lock = threading.Lock()  # failures are counted from both threads
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
            for index, tick in enumerate(batch):
                if not self._produce(tick):
                    self.unsent += len(batch) - index
                    return

    def abandon(self) -> None:
        """Stop as soon as possible, leaving what is still queued (shutdown ran out of time)."""
        self._abandoned = True
        self._room.set()

    def _produce(self, tick: RawTick) -> bool:
        value = to_proto(tick).SerializeToString()
        on_delivery = partial(self._delivered, tick.ingest_time_ns)
        while True:
            try:
                self._producer.produce(
                    self._topic, value=value, key=tick.instrument.encode(), on_delivery=on_delivery
                )
                self.produced += 1
                return True
            except BufferError:
                # librdkafka's buffer is full: the report thread makes room as acknowledgements arrive.
                if not self._wait_for_room():
                    return False
            except KafkaException as exc:
                if exc.args[0].fatal():
                    self.error = exc
                    log.error("kafka producer failed fatally", extra={"error": str(exc)})
                    return False
                self._count_failure(exc.args[0])
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

    def _delivered(self, ingest_time_ns: int, error: KafkaError | None, _message: Message) -> None:
        if self._waiting_for_room:
            self._room.set()
        if error is not None:
            self._count_failure(error)
            return
        self.acknowledged += 1
        self._metrics.published.inc()
        self._metrics.ack_latency.observe(max(0, self._wall_clock_ns() - ingest_time_ns) / 1e9)

    def _count_failure(self, error: KafkaError) -> None:
        with self._failure_lock:
            self.failed += 1
            self._failure_log.warning("delivery failed", {"error": str(error), "topic": self._topic})
        self._metrics.delivery_failures.inc()


def serve_delivery_reports(producer: ProducerLike, done: threading.Event, timeout_s: float = 0.1) -> None:
    """Serve delivery reports (and librdkafka's error and log events) until `done` is set."""
    while not done.is_set():
        producer.poll(timeout_s)


class _Throttled:
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
