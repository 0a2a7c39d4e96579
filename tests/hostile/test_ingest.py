"""Ticks pushed over gRPC that cannot be published, against the real ingester and Kafka:
"accepted" means "published" (or reported failed), the rest is refused with a reason, and
the ingester keeps serving."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from services.ingester.run import serve
from services.ingester.settings import IngesterSettings
from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.v1 import ingest_pb2_grpc, market_pb2
from tests.integration.test_ingest_grpc import grpc_ingester, running, trade
from tests.support import consume_all

pytestmark = [pytest.mark.hostile, pytest.mark.integration, pytest.mark.timeout(90)]

# Well above a plain tick's record (about 50 bytes), well below one with every field at its longest.
MAX_RECORD_BYTES = 100


def oversized(sequence: int) -> market_pb2.Tick:
    """Valid under every rule, and about 160 bytes as a record."""
    tick = trade("AAPL", sequence)
    tick.instrument, tick.venue = "X" * 32, "V" * 32
    tick.price = tick.size = "9" * 15 + "." + "9" * 15
    return tick


def absurd(sequence: int, price: str) -> market_pb2.Tick:
    tick = trade("AAPL", sequence)
    tick.price = price
    return tick


def test_ticks_that_cannot_be_published_are_refused_and_the_rest_is_published(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    stream = [
        trade("AAPL", 1),
        trade("MSFT", 2),
        oversized(3),
        trade("AAPL", 4),
        absurd(5, "1e999999999"),  # accepted once, then killed the publisher thread
        absurd(6, "1e999998"),  # accepted once, then a 1 MB record librdkafka refused
        trade("MSFT", 7),
    ]
    settings = grpc_ingester(kafka_settings, topics, max_record_bytes=MAX_RECORD_BYTES, push_ack_timeout_s=30)
    with running(settings) as channel:  # it also checks the exit code is 0: nothing was lost
        stub = ingest_pb2_grpc.IngestStub(channel)
        summary = stub.Push(iter(stream), timeout=60)
        again = stub.Push(iter([trade("NVDA", 8)]), timeout=60)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)

    assert (summary.accepted, summary.rejected) == (4, 3)
    assert (summary.published, summary.failed, summary.dropped, summary.unconfirmed) == (4, 0, 0, 0)
    assert [(r.index, r.code) for r in summary.rejections] == [
        (2, "too_large"),
        (4, "invalid_tick"),
        (5, "invalid_tick"),
    ]
    assert f"limit of {MAX_RECORD_BYTES}" in summary.rejections[0].reason
    assert (again.accepted, again.published) == (1, 1)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    records = consume_all(kafka_settings, topics.raw, expected=5)
    sequences = sorted(market_pb2.Tick.FromString(m.value() or b"").sequence for m in records)
    assert sequences == [1, 2, 4, 7, 8]


def test_ticks_the_broker_refuses_are_reported_failed_to_their_stream(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    # The broker takes no record batch over 16 bytes on this topic: every delivery fails, after
    # acceptance, which is what a summary must now say instead of "accepted" alone.
    limit_topic_records(kafka_settings, topics.raw, max_message_bytes=16)
    settings = grpc_ingester(kafka_settings, topics, push_ack_timeout_s=30)
    with running_to_the_end(settings) as (channel, codes):
        stub = ingest_pb2_grpc.IngestStub(channel)
        summary = stub.Push(iter([trade("AAPL", n) for n in range(1, 4)]), timeout=60)
        again = stub.Push(iter([trade("MSFT", 4)]), timeout=60)

    assert (summary.accepted, summary.published, summary.failed, summary.unconfirmed) == (3, 0, 3, 0)
    assert [(f.index, f.code) for f in summary.failures] == [(n, "delivery_failed") for n in range(3)]
    assert "too large" in summary.failures[0].reason.lower()
    assert (again.accepted, again.failed) == (1, 1)  # still serving, still telling the truth
    assert codes == [1]  # ticks were lost: the exit code says so


def limit_topic_records(kafka: KafkaSettings, topic: str, max_message_bytes: int) -> None:
    admin = AdminClient(dict(kafka.as_librdkafka_dict()))
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes",
                str(max_message_bytes),
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


@contextmanager
def running_to_the_end(settings: IngesterSettings) -> Iterator[tuple[grpc.Channel, list[int]]]:
    """`serve` on a thread and a channel to it; the exit code is in the list once the block ends."""
    stop, codes = threading.Event(), list[int]()
    thread = threading.Thread(
        target=lambda: codes.append(serve(settings, stop, CollectorRegistry())), daemon=True
    )
    thread.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{settings.grpc_port}")
    try:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30
        )
        yield channel, codes
    finally:
        channel.close()
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "the ingester did not stop"
