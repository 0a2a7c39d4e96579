"""The publisher against a fake producer: keys, values, BufferError, failures reported per
stream, survival of any one record's trouble, shutdown."""

from __future__ import annotations

import decimal
import logging
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from services.ingester.metrics import IngesterMetrics
from services.ingester.publish import Publisher, serve_delivery_reports
from services.ingester.queue import BoundedQueue
from services.ingester.receipts import Failure, StreamReceipt
from services.ingester.records import Record, encode, stamped
from tapewire import tracing
from tapewire.ticks import RawTick, Trade, from_proto
from tapewire.tracing import Tracer
from tapewire.v1 import market_pb2 as pb
from tests.support import in_memory_tracer

from . import fakes
from .fakes import NOW_NS, FakeProducer

WAIT_S = 5.0


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> IngesterMetrics:
    return IngesterMetrics("test", registry)


def closed_queue(ticks: list[RawTick], receipt: StreamReceipt | None = None) -> BoundedQueue[Record]:
    """The ticks as accepted records (of one stream, if a receipt is given), then closed."""
    queue = BoundedQueue[Record](len(ticks) + 1, "block")
    for index, tick in enumerate(ticks):
        queue.put(stamped(encode(tick, 4_096, receipt, index), tick.ingest_time_ns))
    queue.close()
    return queue


def publish_all(
    producer: FakeProducer,
    ticks: list[RawTick],
    metrics: IngesterMetrics,
    wall_clock_ns: int = NOW_NS,
    receipt: StreamReceipt | None = None,
    tracer: Tracer = tracing.DISABLED,
) -> Publisher:
    """Run the publisher and the delivery-report thread as the pipeline does, until the queue is drained."""
    queue = closed_queue(ticks, receipt)
    publisher = Publisher(
        producer, "raw", queue, metrics, batch_size=7, wall_clock_ns=lambda: wall_clock_ns, tracer=tracer
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
    assert registry.get_sample_value("ingester_delivery_failures_total", {"reason": "delivery_failed"}) == 2
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


def test_any_error_producing_one_record_fails_that_record_only(
    metrics: IngesterMetrics, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    producer = FakeProducer()
    # What an absurd tick once did in to_proto: whatever a record raises, the next one goes.
    producer.raise_for_key[b"BAD"] = decimal.Overflow("above Emax")
    receipt = StreamReceipt()
    ticks: list[RawTick] = [trade("AAPL", 1), trade("BAD", 2), trade("AAPL", 3)]
    with caplog.at_level(logging.WARNING):
        publisher = publish_all(producer, ticks, metrics, receipt=receipt)
    assert (publisher.acknowledged, publisher.failed, publisher.error) == (2, 1, None)
    outcomes = receipt.outcomes()
    assert (outcomes.published, outcomes.failed) == (2, 1)
    assert outcomes.failures == (Failure(1, "produce_error", "Overflow: above Emax"),)
    assert registry.get_sample_value("ingester_delivery_failures_total", {"reason": "produce_error"}) == 1
    assert any(r.getMessage() == "delivery failed" for r in caplog.records)


def test_each_stream_hears_of_its_own_records_outcomes(metrics: IngesterMetrics) -> None:
    producer = FakeProducer()
    producer.fail_key[b"MSFT"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    first, second = StreamReceipt(), StreamReceipt()
    queue = BoundedQueue[Record](10, "block")
    for index, (name, receipt) in enumerate([("AAPL", first), ("MSFT", second), ("AAPL", second)]):
        queue.put(encode(trade(name, index), 4_096, receipt, index))
    queue.put(encode(trade("NVDA", 9), 4_096))  # a source tick: no stream to tell
    queue.close()
    publisher = Publisher(producer, "raw", queue, metrics)
    publisher.run()
    producer.flush(0)
    assert (publisher.acknowledged, publisher.failed) == (3, 1)
    assert (first.outcomes().published, first.outcomes().failed) == (1, 0)
    assert (second.outcomes().published, second.outcomes().failed) == (1, 1)
    assert [(f.index, f.code) for f in second.outcomes().failures] == [(1, "delivery_failed")]


def test_a_delivery_callback_that_raises_does_not_stop_the_reports(metrics: IngesterMetrics) -> None:
    class Exploding(FakeProducer):
        polls = 0

        def poll(self, timeout: float) -> int:
            self.polls += 1
            if self.polls == 1:
                raise RuntimeError("a callback raised")
            return super().poll(timeout)

    producer = Exploding()
    done = threading.Event()
    reports = threading.Thread(target=serve_delivery_reports, args=(producer, done, 0.01))
    reports.start()
    while producer.polls < 3:
        reports.join(0.001)
    assert reports.is_alive()
    done.set()
    reports.join(WAIT_S)


def trade(instrument: str, sequence: int) -> Trade:
    """Ingest-stamped so that delivery latency has something to measure."""
    return fakes.trade(instrument, sequence, ingest_time_ns=NOW_NS + sequence)


def test_a_sampled_tick_starts_a_trace_and_hands_its_context_on_in_a_header(metrics: IngesterMetrics) -> None:
    producer = FakeProducer()
    exporter = InMemorySpanExporter()
    ticks = [trade("AAPL", 1), trade("MSFT", 2), trade("AAPL", 3)]
    # The head decision per tick: only the second draw falls below the ratio.
    tracer = in_memory_tracer(exporter, ratio=0.5, draws=[0.9, 0.1, 0.7])
    publish_all(producer, ticks, metrics, wall_clock_ns=NOW_NS + 5_000_000, tracer=tracer)
    assert [h is None for h in producer.headers] == [True, False, True]
    (span,) = exporter.get_finished_spans()
    ((key, value),) = producer.headers[1] or []
    assert key == "traceparent" and value == tracing.traceparent(span)  # type: ignore[arg-type]
    assert span.name == "ingester publish"
    assert span.attributes is not None and span.attributes["instrument"] == "MSFT"
    # From acceptance (the tick's ingest stamp) to the broker's acknowledgement.
    assert (span.start_time, span.end_time) == (ticks[1].ingest_time_ns, NOW_NS + 5_000_000)


def test_tracing_off_adds_no_header(metrics: IngesterMetrics) -> None:
    producer = FakeProducer()
    publish_all(producer, [trade("AAPL", 1), trade("AAPL", 2)], metrics)
    assert producer.headers == [None, None]


def test_a_sampled_tick_that_fails_ends_its_span_as_an_error(metrics: IngesterMetrics) -> None:
    producer = FakeProducer(error=KafkaError(KafkaError._MSG_TIMED_OUT))
    exporter = InMemorySpanExporter()
    publish_all(producer, [trade("AAPL", 1)], metrics, tracer=in_memory_tracer(exporter))
    (span,) = exporter.get_finished_spans()
    assert not span.status.is_ok
    assert span.status.description is not None and span.status.description.startswith("delivery_failed")
