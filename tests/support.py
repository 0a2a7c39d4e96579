"""Helpers the integration and end-to-end tests share: real Kafka I/O with bounded waits. A run's
own topics, Redis prefix, schema, environment and ports are in tools/isolation.py (the bench
uses them too)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from confluent_kafka import Consumer, Message, Producer

from tapewire.settings import KafkaSettings
from tapewire.ticks import RawTick, to_proto

T = TypeVar("T")


def produce_ticks(kafka: KafkaSettings, topic: str, ticks: Iterable[RawTick]) -> int:
    """Publish ticks keyed by instrument, as the ingester does; return how many."""
    producer = Producer({**kafka.as_librdkafka_dict(), "enable.idempotence": True, "acks": "all"})
    count = 0
    for tick in ticks:
        producer.produce(topic, key=tick.instrument.encode(), value=to_proto(tick).SerializeToString())
        count += 1
    produce_raw(producer, [])
    return count


def produce_raw(producer: Producer, records: list[tuple[str, bytes | None, bytes]]) -> None:
    for topic, key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0, "records not acknowledged"


def consume_all(kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 60.0) -> list[Message]:
    """Read `topic` from the beginning until `expected` records arrived (read_committed)."""
    consumer = Consumer(
        {
            **kafka.as_librdkafka_dict(),
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    records: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    records.append(message)
    finally:
        consumer.close()
    assert len(records) >= expected, f"only {len(records)} of {expected} records arrived on {topic}"
    return records


def wait_for(condition: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy, or fail saying what never happened."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last  # type: ignore[no-any-return]
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")
