"""The pipeline wired with a fake producer: end of input, shutdown deadlines, failures."""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from services.ingester.metrics import IngesterMetrics
from services.ingester.queue import BoundedQueue
from services.ingester.records import Record, encode
from services.ingester.run import InvalidRecords, Pipeline, build_source, new_queue
from services.ingester.settings import IngesterSettings
from services.ingester.sources.idle import IdleSource
from services.ingester.sources.replay import REASONS
from tapewire.ticks import RawTick, from_proto
from tapewire.v1 import market_pb2 as pb

from .fakes import NOW_NS, EndlessSource, FakeProducer, ListSource, trade

WAIT_S = 5.0


def settings(**overrides: object) -> IngesterSettings:
    return IngesterSettings(**{"metrics_port": 0, "shutdown_timeout_s": 2.0, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> IngesterMetrics:
    return IngesterMetrics("test", registry, REASONS)


def stop_when(condition: Callable[[], bool], stop: threading.Event) -> threading.Thread:
    """Set `stop` once `condition()` holds (polled every millisecond, for at most WAIT_S)."""

    def watch() -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition() and time.monotonic() < deadline:
            stop.wait(0.001)
        stop.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_the_pipeline_ends_by_itself_when_the_source_does(
    metrics: IngesterMetrics, registry: CollectorRegistry
) -> None:
    producer = FakeProducer()
    ticks: list[RawTick] = [trade(name, n) for n in range(1, 101) for name in ("AAPL", "MSFT")]
    before = time.time_ns()
    result = Pipeline(settings(), ListSource(ticks), producer, metrics).run(threading.Event())
    assert (result.accepted, result.published, result.left, result.exit_code) == (200, 200, 0, 0)
    published = [from_proto(pb.Tick.FromString(value), NOW_NS) for _, _, value in producer.sent]
    assert [(t.instrument, t.sequence) for t in published] == [(t.instrument, t.sequence) for t in ticks]
    assert all(before <= t.ingest_time_ns <= time.time_ns() for t in published)
    assert registry.get_sample_value("ingester_ticks_accepted_total", {"source": "test"}) == 200
    assert registry.get_sample_value("ingester_queue_depth") == 0


def test_a_replay_counts_its_invalid_lines(metrics: IngesterMetrics, registry: CollectorRegistry) -> None:
    lines = b'{"instrument":"A","kind":"trade","price":"1","size":"1"}\n{oops\n\n{"instrument":"A"}\n'
    config = settings(source="replay", replay_path="-", replay_speed=0)
    invalid = InvalidRecords(metrics)
    source = build_source(config, io.BytesIO(lines), invalid)
    result = Pipeline(config, source, FakeProducer(), metrics, invalid).run(threading.Event())
    assert (result.accepted, result.invalid, result.published, result.exit_code) == (1, 2, 1, 0)
    assert (
        registry.get_sample_value("ingester_invalid_records_total", {"source": "test", "reason": "bad_json"})
        == 1
    )
    assert (
        registry.get_sample_value(
            "ingester_invalid_records_total", {"source": "test", "reason": "missing_field"}
        )
        == 1
    )


def test_an_invalid_record_is_one_clear_warning(
    metrics: IngesterMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(source="replay", replay_path="-", replay_speed=0)
    invalid = InvalidRecords(metrics)
    source = build_source(config, io.BytesIO(b"\n\n[1]\n"), invalid)
    with caplog.at_level(logging.WARNING):
        Pipeline(config, source, FakeProducer(), metrics, invalid).run(threading.Event())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "replay record 3 skipped (not_an_object): expected a JSON object, got list"
    ]
    assert (warnings[0].line, warnings[0].reason) == (3, "not_an_object")  # type: ignore[attr-defined]


def test_stop_with_the_broker_down_ends_within_the_timeout_and_reports_what_is_left(
    metrics: IngesterMetrics, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    producer = FakeProducer(capacity=5, acks=False)
    pipeline = Pipeline(
        settings(queue_size=10, shutdown_timeout_s=0.3), EndlessSource(trade("A", 1)), producer, metrics
    )
    stop = threading.Event()
    stop_when(
        lambda: producer.buffer_errors > 0 and registry.get_sample_value("ingester_queue_depth") == 10, stop
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        result = pipeline.run(stop)
    assert time.monotonic() - started < 0.3 + 1.0
    # Nothing was acknowledged, so every accepted tick is accounted for as left: in our queue (10),
    # in the publisher's hands (the rest of the batch it could not produce) or in the producer (5).
    assert result.left == result.accepted >= 15
    assert result.exit_code == 1
    assert any(r.getMessage() == "shutdown timed out with ticks undelivered" for r in caplog.records)


def test_drop_oldest_keeps_the_source_running_and_counts_drops(
    metrics: IngesterMetrics, registry: CollectorRegistry
) -> None:
    producer = FakeProducer(capacity=5, acks=False)
    pipeline = Pipeline(
        settings(queue_size=10, queue_policy="drop_oldest", shutdown_timeout_s=0.1),
        EndlessSource(trade("A", 1)),
        producer,
        metrics,
    )
    stop = threading.Event()
    stop_when(lambda: (registry.get_sample_value("ingester_queue_dropped_total") or 0) >= 1000, stop)
    result = pipeline.run(stop)
    assert result.dropped >= 1000
    assert result.dropped == registry.get_sample_value("ingester_queue_dropped_total")
    assert result.accepted == result.dropped + result.left  # nothing was acknowledged


def test_a_failing_source_ends_the_run_with_an_error_after_draining(metrics: IngesterMetrics) -> None:
    producer = FakeProducer()
    source = ListSource([trade("A", 1), trade("A", 2)], error=RuntimeError("feed disconnected"))
    result = Pipeline(settings(), source, producer, metrics).run(threading.Event())
    assert (result.published, result.failed, result.exit_code) == (2, True, 1)


def test_delivery_failures_make_a_non_zero_exit(metrics: IngesterMetrics) -> None:
    from confluent_kafka import KafkaError

    producer = FakeProducer(error=KafkaError(KafkaError._MSG_TIMED_OUT))
    result = Pipeline(settings(), ListSource([trade("A", 1)]), producer, metrics).run(threading.Event())
    assert (result.published, result.delivery_failures, result.exit_code) == (0, 1, 1)


def test_a_source_tick_that_cannot_be_published_is_refused_and_the_rest_goes_on(
    metrics: IngesterMetrics, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    absurd = dataclasses.replace(trade("A", 2), price=Decimal("1e999999999"))  # to_proto overflows
    ticks: list[RawTick] = [trade("A", 1), absurd, trade("A", 3)]
    producer = FakeProducer()
    with caplog.at_level(logging.WARNING):
        result = Pipeline(settings(), ListSource(ticks), producer, metrics).run(threading.Event())
    assert (result.accepted, result.invalid, result.published, result.exit_code) == (2, 1, 2, 0)
    assert (
        registry.get_sample_value(
            "ingester_invalid_records_total", {"source": "test", "reason": "unencodable"}
        )
        == 1
    )
    assert any(r.getMessage() == "a tick of the source was refused" for r in caplog.records)


def test_healthy_while_the_publisher_runs(metrics: IngesterMetrics) -> None:
    pipeline = Pipeline(settings(), EndlessSource(trade("A", 1)), FakeProducer(), metrics)
    assert not pipeline.healthy()
    stop = threading.Event()
    seen: list[bool] = []

    def healthy_seen() -> bool:
        seen.append(pipeline.healthy())
        return seen[-1]

    stop_when(healthy_seen, stop)
    pipeline.run(stop)
    assert seen[-1] is True
    assert not pipeline.healthy()


class FakeIngress:
    """Stands in for the gRPC service: records whether the queue was still open when it was stopped."""

    def __init__(self, queue: BoundedQueue[Record], accepted: int = 0, rejected: int = 0) -> None:
        self._queue = queue
        self.accepted = accepted
        self.rejected = rejected
        self.failed = False
        self.stops: list[bool] = []  # queue closed at each stop?

    def stop(self) -> None:
        self.stops.append(self._queue.closed)


def test_with_no_source_the_pipeline_runs_until_stopped_and_stops_the_ingress_first(
    metrics: IngesterMetrics,
) -> None:
    config = settings(source="none")
    queue = new_queue(config)
    ingress = FakeIngress(queue, accepted=3, rejected=1)
    pipeline = Pipeline(
        config,
        build_source(config, None, InvalidRecords(metrics)),
        FakeProducer(),
        metrics,
        queue=queue,
        ingress=ingress,
    )
    stop = threading.Event()
    for n in range(3):  # what pushes would have queued
        queue.put(encode(trade("A", n + 1), config.max_record_bytes))
    stop_when(lambda: queue.depth == 0, stop)
    result = pipeline.run(stop)
    assert ingress.stops and ingress.stops[0] is False  # stopped while the queue was still open
    assert queue.closed
    assert (result.accepted, result.invalid, result.published, result.exit_code) == (3, 1, 3, 0)
    assert (result.grpc_accepted, result.grpc_rejected) == (3, 1)


def test_when_the_source_ends_the_ingress_is_stopped_before_the_queue_closes(
    metrics: IngesterMetrics,
) -> None:
    config = settings()
    queue = new_queue(config)
    ingress = FakeIngress(queue)
    result = Pipeline(
        config, ListSource([trade("A", 1)]), FakeProducer(), metrics, queue=queue, ingress=ingress
    ).run(threading.Event())
    assert ingress.stops[0] is False
    assert (result.accepted, result.published, result.exit_code) == (1, 1, 0)


def test_a_failed_ingress_ends_the_run_with_an_error(metrics: IngesterMetrics) -> None:
    config = settings(source="none")
    queue = new_queue(config)
    ingress = FakeIngress(queue)
    pipeline = Pipeline(config, IdleSource(), FakeProducer(), metrics, queue=queue, ingress=ingress)
    assert not pipeline.healthy()  # nothing started yet
    ingress.failed = True
    result = pipeline.run(threading.Event())  # returns by itself: the ingress failed
    assert result.failed and result.exit_code == 1
