"""Helpers the integration and end-to-end tests share: real Kafka I/O with bounded waits. A run's
own topics, Redis prefix, schema, environment and ports are in tools/isolation.py (the bench
uses them too)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import httpx
from confluent_kafka import Consumer, Message, Producer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tapewire.settings import KafkaSettings
from tapewire.ticks import RawTick, to_proto
from tapewire.tracing import Tracer
from tools.suite import Suite

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


@contextlib.contextmanager
def viewer(port: str | int, instruments: list[str]) -> Iterator[list[int]]:
    """A WebSocket client of dashboard_api subscribed to `instruments`, reading on a thread;
    yields [frames received so far]. dashboard_api subscribes in Redis only to what its clients
    watch, so without one it relays nothing."""
    frames = [0]
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
        assert json.loads(ws.recv(10))["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "instruments": instruments}))

        def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                for _frame in ws:
                    frames[0] += 1

        reader = threading.Thread(target=read, name="viewer")
        reader.start()
        yield frames
    reader.join(10)


def in_memory_tracer(
    exporter: InMemorySpanExporter, ratio: float = 1.0, draws: Iterable[float] = ()
) -> Tracer:
    """A tracer whose finished spans land in `exporter`; its head decisions draw from `draws`
    (then 0.0, always below a ratio above zero)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    values = iter(draws)
    return Tracer(provider.get_tracer("test"), ratio, provider.shutdown, draw=lambda: next(values, 0.0))


def answers(url: str) -> bool:
    """True when `url` answers 200 (False while the server is not up yet)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_and_show(suite: Suite) -> dict[str, int]:
    """Stop `suite` and print each process's log tail (pytest shows it on failure); the exit codes."""
    codes = suite.stop()
    for name in suite.processes:
        print(f"--- {name} log (exit {codes.get(name)}) ---\n{suite.log_tail(name)}")
    return codes
