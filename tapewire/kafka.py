"""Thin, typed helpers over confluent-kafka shared by the services.

Nothing here talks to the network in a constructor: building a config is pure, and every
function that does I/O says so in its name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tapewire.errors import KafkaFailure
from tapewire.settings import KafkaSettings

log = logging.getLogger(__name__)


def producer_config(kafka: KafkaSettings, client_id: str, **overrides: Any) -> dict[str, Any]:
    """An idempotent, acks=all producer: no loss and no duplicates from its own retries."""
    conf: dict[str, Any] = {
        **kafka.as_librdkafka_dict(),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        # A small linger batches bursts without adding noticeable latency to a live feed.
        "linger.ms": 2,
        "compression.type": "lz4",
        # Retry transient broker trouble for up to 2 minutes before reporting a failure.
        "delivery.timeout.ms": 120_000,
    }
    conf.update(overrides)
    return conf


def consumer_config(kafka: KafkaSettings, group_id: str, client_id: str, **overrides: Any) -> dict[str, Any]:
    """A consumer that commits only when told to, starting from the beginning of new partitions."""
    conf: dict[str, Any] = {
        **kafka.as_librdkafka_dict(),
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        # librdkafka waits up to 500 ms for a fetch to fill by default; a live feed wants the
        # record as soon as it lands.
        "fetch.wait.max.ms": 10,
        # Cap what librdkafka prefetches per partition so a slow stage holds bounded memory.
        "queued.max.messages.kbytes": 16_384,
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
    }
    conf.update(overrides)
    return conf


def ensure_topics(
    kafka: KafkaSettings, topics: Mapping[str, int], replication_factor: int = 1, timeout_s: float = 30.0
) -> None:
    """Create the topics that do not exist yet (name -> partitions); existing ones are kept."""
    admin = AdminClient(dict(kafka.as_librdkafka_dict()))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            existing = admin.list_topics(timeout=5).topics
            break
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise KafkaFailure(f"broker at {kafka.bootstrap_servers} not reachable: {exc}") from exc
            time.sleep(0.5)
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=replication_factor)
        for name, n in topics.items()
        if name not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
        try:
            future.result()
            log.info("created topic", extra={"topic": name})
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaFailure(f"could not create topic {name}: {exc}", exc.args[0].code()) from exc


def poll_batch(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Wait up to `timeout_s` for the first message, then take what is already queued.

    `consume(n, timeout)` alone waits for n messages *or* the timeout, which adds up to the
    whole timeout of latency per hop at low rates.
    """
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    return [first, *consumer.consume(max_messages - 1, 0)]


def flush_or_raise(producer: Producer, timeout_s: float) -> None:
    """Wait until every produced record is acknowledged, or raise."""
    remaining = producer.flush(timeout_s)
    if remaining:
        raise KafkaFailure(f"{remaining} records not acknowledged within {timeout_s}s", retriable=True)


def produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    on_delivery: Callable[[KafkaError | None, Message], None],
    headers: list[tuple[str, Any]] | None = None,
) -> None:
    """Produce, waiting while librdkafka's own queue is full instead of dropping."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


class DeliveryTracker:
    """Counts delivery failures reported to `on_delivery` so a batch can fail as a whole."""

    def __init__(self) -> None:
        self._failures: list[str] = []

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(f"{message.topic()}: {error.str()}")

    def wait(self, producer: Producer, timeout_s: float) -> None:
        """Wait for every outstanding record; raise if any was not acknowledged."""
        try:
            flush_or_raise(producer, timeout_s)
        finally:
            failures, self._failures = self._failures, []
        if failures:
            raise KafkaFailure(f"{len(failures)} records not delivered, first: {failures[0]}", retriable=True)


def message_error(message: Message) -> KafkaError | None:
    """The error carried by a consumed message, ignoring end-of-partition notices."""
    error = message.error()
    if error is None or error.code() == KafkaError._PARTITION_EOF:
        return None
    return error


def record_position(message: Message) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of a consumed record; None for an error event."""
    if message_error(message) is not None:
        return None
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None or offset < 0:
        return None
    return topic, partition, offset
