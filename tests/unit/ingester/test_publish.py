"""The publisher against a fake producer: keys, values, BufferError, failures, shutdown."""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry

from services.ingester.metrics import IngesterMetrics
from services.ingester.publish import Publisher, serve_delivery_reports
from services.ingester.queue import BoundedQueue
from tapewire.ticks import RawTick, Trade, from_proto
from tapewire.v1 import market_pb2 as pb

from . import fakes
from .fakes import NOW_NS, FakeProducer

WAIT_S = 5.0


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> IngesterMetrics:
    return IngesterMetrics("test", registry)


def closed_queue(ticks: list[RawTick]) -> BoundedQueue[RawTick]:
    queue = BoundedQueue[RawTick](len(ticks) + 1, "block")
    for tick in ticks:
        queue.put(tick)
    queue.close()
    return queue


def publish_all(
    producer: FakeProducer, ticks: list[RawTick], metrics: IngesterMetrics, wall_clock_ns: int = NOW_NS
) -> Publisher:
    """Run the publisher and the delivery-report thread as the pipeline does, until the queue is drained."""
    publisher = Publisher(
        producer, "raw", closed_queue(ticks), metrics, batch_size=7, wall_clock_ns=lambda: wall_clock_ns
    )
    done = threading.Event()
    reports = threading.Thread(target=serve_delivery_reports, args=(producer, done, 0.01))
    reports.start()
    publisher.run()
    done.set()
    reports.join(WAIT_S)
    producer.flush(0)
    return publisher


def test_every_tick_is_produced_keyed_by_instrument(
    metrics: IngesterMetrics, registry: CollectorRegistry
) -> None:
    producer = FakeProducer()
    ticks: list[RawTick] = [trade("AAPL", 1), trade("MSFT", 1), trade("AAPL", 2)]
    publisher = publish_all(producer, ticks, metrics, wall_clock_ns=NOW_NS + 2_000_000)
    assert [(topic, key) for topic, key, _ in producer.sent] == [
        ("raw", b"AAPL"),
        ("raw", b"MSFT"),
        ("raw", b"AAPL"),
    ]
    assert [from_proto(pb.Tick.FromString(value), NOW_NS) for _, _, value in producer.sent] == ticks
    assert (publisher.produced, publisher.acknowledged, publisher.failed) == (3, 3, 0)
    assert registry.get_sample_value("ingester_published_total") == 3
    assert registry.get_sample_value("ingester_ack_latency_seconds_count") == 3
    # ingest at NOW_NS + 1..2 ns, acked at NOW_NS + 2 ms: every sample is just under 2 ms.
    assert registry.get_sample_value("ingester_ack_latency_seconds_bucket", {"le": "0.002"}) == 3
    assert registry.get_sample_value("ingester_ack_latency_seconds_bucket", {"le": "0.001"}) == 0


def test_a_full_librdkafka_buffer_is_waited_out_never_dropped(metrics: IngesterMetrics) -> None:
    producer = FakeProducer(capacity=3)
    ticks: list[RawTick] = [trade("AAPL", n) for n in range(1, 51)]
    publisher = publish_all(producer, ticks, metrics)
    assert producer.buffer_errors > 0
    assert [from_proto(pb.Tick.FromString(v), NOW_NS).sequence for _, _, v in producer.sent] == list(
        range(1, 51)
    )
    assert (publisher.acknowledged, publisher.unsent) == (50, 0)


def test_delivery_failures_are_counted_and_logged_not_retried(
    metrics: IngesterMetrics, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    producer = FakeProducer(error=KafkaError(KafkaError._MSG_TIMED_OUT))
    with caplog.at_level(logging.WARNING):
        publisher = publish_all(producer, [trade("AAPL", 1), trade("AAPL", 2)], metrics)
    assert (publisher.acknowledged, publisher.failed, len(producer.sent)) == (0, 2, 2)
    assert registry.get_sample_value("ingester_delivery_failures_total") == 2
    assert registry.get_sample_value("ingester_published_total") == 0
    # Throttled: a broker outage must not turn into one log line per tick.
    failures = [r for r in caplog.records if r.getMessage() == "delivery failed"]
    assert len(failures) == 1 and "timed out" in failures[0].error  # type: ignore[attr-defined]


def test_a_produce_error_counts_as_a_failure_and_the_rest_goes_on(metrics: IngesterMetrics) -> None:
    producer = FakeProducer()
    producer.raise_on_produce = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    queue = closed_queue([trade("AAPL", 1), trade("AAPL", 2)])
    publisher = Publisher(producer, "raw", queue, metrics)
    publisher.run()
    assert (publisher.failed, publisher.error, queue.depth) == (2, None, 0)


def test_a_fatal_producer_error_stops_the_publisher(metrics: IngesterMetrics) -> None:
    producer = FakeProducer()
    producer.raise_on_produce = KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    publisher = Publisher(producer, "raw", closed_queue([trade("AAPL", 1), trade("AAPL", 2)]), metrics)
    publisher.run()
    assert isinstance(publisher.error, KafkaException)
    assert publisher.unsent == 2


def test_abandon_ends_a_publisher_stuck_on_a_full_buffer(metrics: IngesterMetrics) -> None:
    producer = FakeProducer(capacity=1, acks=False)  # the broker is down
    queue = closed_queue([trade("AAPL", n) for n in range(1, 6)])
    publisher = Publisher(producer, "raw", queue, metrics, batch_size=2, buffer_full_wait_s=0.01)
    thread = threading.Thread(target=publisher.run)
    thread.start()
    while producer.buffer_errors == 0:
        thread.join(0.001)
    publisher.abandon()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert len(producer.sent) == 1
    assert (publisher.unsent, queue.depth) == (1, 3)  # the rest of its batch, and what it never took


def test_an_unexpected_error_stops_the_publisher_and_is_kept(
    metrics: IngesterMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    producer = FakeProducer()
    producer.raise_on_produce = RuntimeError("bug")
    publisher = Publisher(producer, "raw", closed_queue([trade("AAPL", 1)]), metrics)
    with caplog.at_level(logging.ERROR):
        publisher.run()
    assert isinstance(publisher.error, RuntimeError)
    assert any(r.getMessage() == "the publisher failed" for r in caplog.records)


def trade(instrument: str, sequence: int) -> Trade:
    """Ingest-stamped so that delivery latency has something to measure."""
    return fakes.trade(instrument, sequence, ingest_time_ns=NOW_NS + sequence)
