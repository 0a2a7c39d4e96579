"""gRPC Push into the ingester's queue, on a loopback port and without Kafka: validation and
encoding at acceptance, the summary (with what became of the accepted ticks, from a publisher on
a fake producer), both queue policies with a client stream that backpressure holds up, and
shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import grpc
import grpc.aio
import pytest
from confluent_kafka import KafkaError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from services.ingester.grpc_ingress import GrpcIngress
from services.ingester.metrics import IngesterMetrics
from services.ingester.publish import Publisher, serve_delivery_reports
from services.ingester.push import MAX_REJECTIONS, PushTally
from services.ingester.queue import BoundedQueue
from services.ingester.records import Record
from services.ingester.run import new_queue
from services.ingester.settings import IngesterSettings
from tapewire.ticks import RawTick, Trade, from_proto, to_proto
from tapewire.v1 import ingest_pb2_grpc, market_pb2
from tools.isolation import free_port

from .fakes import FakeProducer, trade

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]

WAIT_S = 5.0


def test_a_tally_counts_everything_and_describes_the_first_rejections() -> None:
    tally = PushTally()
    tally.accept()
    for n in range(MAX_REJECTIONS + 5):
        tally.reject("invalid_tick", f"bad {n}")
    tally.accept()
    summary = tally.summary()
    assert (summary.accepted, summary.rejected) == (2, MAX_REJECTIONS + 5)
    assert len(summary.rejections) == MAX_REJECTIONS
    assert (summary.rejections[0].index, summary.rejections[0].reason) == (1, "bad 0")
    assert summary.rejections[-1].index == MAX_REJECTIONS


class Ingester:
    """A queue and the gRPC ingress in front of it, as `serve` wires them; nothing drains the queue
    unless `publish` starts a publisher on a fake producer."""

    def __init__(self, **overrides: object) -> None:
        values: dict[str, object] = {
            "source": "none",
            "metrics_port": 0,
            "grpc_host": "127.0.0.1",
            "grpc_port": free_port(),
            "grpc_shutdown_grace_s": 0.5,
            # Without a publisher no verdict ever comes: do not keep every summary waiting long.
            "push_ack_timeout_s": 0.2,
            **overrides,
        }
        self.settings = IngesterSettings(**values)  # type: ignore[arg-type]
        self.registry = CollectorRegistry()
        self.metrics = IngesterMetrics("none", self.registry)
        self.queue: BoundedQueue[Record] = new_queue(self.settings)
        self.ingress = GrpcIngress(self.settings, self.queue, self.metrics, None)
        self.address = f"127.0.0.1:{self.settings.grpc_port}"
        self._threads: list[threading.Thread] = []
        self._reports_done = threading.Event()

    def publish(self, producer: FakeProducer) -> None:
        """Drain the queue into `producer`, delivery reports and all, as the pipeline does."""
        publisher = Publisher(producer, "raw", self.queue, self.metrics, idle_wait_s=0.01)
        self._threads = [
            threading.Thread(target=publisher.run),
            threading.Thread(target=serve_delivery_reports, args=(producer, self._reports_done, 0.01)),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.ingress.stop()
        self.queue.close()
        self._reports_done.set()
        for thread in self._threads:
            thread.join(WAIT_S)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def ingester(request: pytest.FixtureRequest) -> Iterator[Ingester]:
    running = Ingester(**getattr(request, "param", {}))
    running.ingress.start()
    yield running
    running.stop()


def decoded(records: list[Record] | None) -> list[RawTick]:
    return [from_proto(market_pb2.Tick.FromString(r.value()), time.time_ns()) for r in records or []]


def pushed(tick: RawTick, ingest_time_ns: int = 0) -> market_pb2.Tick:
    message = to_proto(tick)
    message.ingest_time_ns = ingest_time_ns
    return message


def crossed_quote() -> market_pb2.Tick:
    message = pushed(trade("BAD", 1))
    message.kind = market_pb2.TICK_KIND_QUOTE
    message.bid_price, message.ask_price, message.bid_size, message.ask_size = "2", "1", "1", "1"
    return message


def test_valid_ticks_are_queued_stamped_and_invalid_ones_described(ingester: Ingester) -> None:
    sent = [
        pushed(trade("AAPL", 1), ingest_time_ns=123),  # a client's ingest time is ignored
        market_pb2.Tick(instrument="bad symbol!", kind=market_pb2.TICK_KIND_TRADE, price="1", size="1"),
        pushed(trade("MSFT", 7)),
        crossed_quote(),
        market_pb2.Tick(),
    ]
    before = time.time_ns()
    with grpc.insecure_channel(ingester.address) as channel:
        summary = ingest_pb2_grpc.IngestStub(channel).Push(iter(sent), timeout=WAIT_S)

    assert (summary.accepted, summary.rejected) == (2, 3)
    assert (summary.published, summary.failed, summary.unconfirmed) == (0, 0, 2)  # nothing drains
    assert [(r.index, r.code) for r in summary.rejections] == [
        (1, "invalid_tick"),
        (3, "invalid_tick"),
        (4, "invalid_tick"),
    ]
    assert "instrument" in summary.rejections[0].reason and "crossed" in summary.rejections[1].reason
    queued = decoded(ingester.queue.get_batch(10, 0))
    assert [(t.instrument, t.sequence) for t in queued] == [("AAPL", 1), ("MSFT", 7)]
    assert all(before <= t.ingest_time_ns <= time.time_ns() for t in queued)
    assert isinstance(queued[0], Trade) and queued[0].price == Decimal("10.5")
    assert ingester.metric("ingester_ticks_accepted_total", source="grpc") == 2
    assert ingester.metric("ingester_invalid_records_total", source="grpc", reason="invalid_tick") == 3
    assert (ingester.ingress.accepted, ingester.ingress.rejected) == (2, 3)


def oversized(sequence: int) -> market_pb2.Tick:
    """Valid, and about 160 bytes as a record: every field at its longest."""
    message = pushed(trade("AAPL", sequence))
    message.instrument, message.venue = "X" * 32, "V" * 32
    message.price = message.size = "9" * 15 + "." + "9" * 15
    return message


@pytest.mark.parametrize("ingester", [{"max_record_bytes": 100, "push_ack_timeout_s": 5}], indirect=True)
def test_a_tick_too_large_to_publish_is_rejected_at_acceptance(ingester: Ingester) -> None:
    producer = FakeProducer()
    ingester.publish(producer)
    sent = [pushed(trade("AAPL", 1)), oversized(2), pushed(trade("AAPL", 3))]
    with grpc.insecure_channel(ingester.address) as channel:
        summary = ingest_pb2_grpc.IngestStub(channel).Push(iter(sent), timeout=WAIT_S)
    assert (summary.accepted, summary.rejected, summary.published, summary.failed) == (2, 1, 2, 0)
    assert [(r.index, r.code) for r in summary.rejections] == [(1, "too_large")]
    assert "exceeds the ingester's limit of 100" in summary.rejections[0].reason
    assert [key for _, key, _ in producer.sent] == [b"AAPL", b"AAPL"]
    assert ingester.metric("ingester_invalid_records_total", source="grpc", reason="too_large") == 1


@pytest.mark.parametrize("ingester", [{"push_ack_timeout_s": 5}], indirect=True)
def test_the_summary_says_which_accepted_ticks_were_published_and_which_failed(ingester: Ingester) -> None:
    producer = FakeProducer()
    producer.fail_key[b"MSFT"] = KafkaError(KafkaError._MSG_TIMED_OUT)
    ingester.publish(producer)
    sent = [pushed(trade(name, n)) for n, name in enumerate(["AAPL", "MSFT", "AAPL", "MSFT", "NVDA"])]
    with grpc.insecure_channel(ingester.address) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        summary = stub.Push(iter([*sent[:3], market_pb2.Tick(), *sent[3:]]), timeout=WAIT_S)
        other = stub.Push(iter([pushed(trade("AAPL", 9))]), timeout=WAIT_S)
    assert (summary.accepted, summary.rejected) == (5, 1)
    assert (summary.published, summary.failed, summary.dropped, summary.unconfirmed) == (3, 2, 0, 0)
    # Indexes are positions in the stream, counting the rejected tick at 3.
    assert [(f.index, f.code) for f in summary.failures] == [(1, "delivery_failed"), (4, "delivery_failed")]
    assert "timed out" in summary.failures[0].reason.lower()
    assert (other.accepted, other.published, other.failed) == (1, 1, 0)  # each stream its own


@pytest.mark.parametrize("ingester", [{"push_ack_timeout_s": 0.3}], indirect=True)
def test_the_wait_for_verdicts_is_bounded(ingester: Ingester) -> None:
    ingester.publish(FakeProducer(acks=False))  # the broker never answers
    started = time.monotonic()
    with grpc.insecure_channel(ingester.address) as channel:
        summary = ingest_pb2_grpc.IngestStub(channel).Push(
            iter([pushed(trade("AAPL", n)) for n in range(3)]), timeout=WAIT_S
        )
    assert 0.3 <= time.monotonic() - started < 3
    assert (summary.accepted, summary.published, summary.failed, summary.unconfirmed) == (3, 0, 0, 3)


@pytest.mark.parametrize("ingester", [{"queue_size": 2, "queue_policy": "block"}], indirect=True)
async def test_a_full_queue_holds_the_stream_back_without_stalling_other_calls(ingester: Ingester) -> None:
    async with grpc.aio.insecure_channel(ingester.address) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        held = stub.Push(iter([pushed(trade("A", n)) for n in range(1, 6)]))
        await wait_for(lambda: ingester.queue.waiting_for_room > 0, "the push to wait for room")
        assert not held.done()
        # Meanwhile the server still answers everyone else.
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        other = await stub.Push(iter([market_pb2.Tick()]))
        assert (other.accepted, other.rejected) == (0, 1)
        assert ingester.metric("ingester_grpc_push_streams") == 1
        drained: list[Record] = []
        while len(drained) < 5:  # the publisher's part
            drained += await asyncio.to_thread(ingester.queue.get_batch, 10, 0.05) or []
        assert [t.sequence for t in decoded(drained)] == [1, 2, 3, 4, 5]
        summary = await held
    assert (summary.accepted, summary.rejected) == (5, 0)
    assert ingester.queue.dropped == 0


@pytest.mark.parametrize("ingester", [{"queue_size": 2, "queue_policy": "drop_oldest"}], indirect=True)
def test_drop_oldest_never_holds_a_stream_back_and_counts_the_drops(ingester: Ingester) -> None:
    with grpc.insecure_channel(ingester.address) as channel:
        summary = ingest_pb2_grpc.IngestStub(channel).Push(
            iter([pushed(trade("A", n)) for n in range(1, 6)]), timeout=WAIT_S
        )
    # The stream hears of its own ticks displaced by the policy; the last two wait for a publisher.
    assert (summary.accepted, summary.dropped, summary.unconfirmed) == (5, 3, 2)
    assert [t.sequence for t in decoded(ingester.queue.get_batch(10, 0))] == [4, 5]
    assert ingester.metric("ingester_queue_dropped_total") == 3


async def test_a_stream_cut_off_by_a_closed_queue_says_how_much_was_accepted(ingester: Ingester) -> None:
    async with grpc.aio.insecure_channel(ingester.address) as channel:
        call = ingest_pb2_grpc.IngestStub(channel).Push()
        await call.write(pushed(trade("A", 1)))
        await wait_for(lambda: ingester.queue.depth == 1, "the first tick to be queued")
        ingester.queue.close()
        await call.write(pushed(trade("A", 2)))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        error = caught.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "the first 1 ticks of this stream were accepted" in (error.details() or "")


@pytest.mark.parametrize(
    "ingester", [{"queue_size": 1, "queue_policy": "block", "grpc_shutdown_grace_s": 0.3}], indirect=True
)
async def test_stop_cancels_a_held_stream_after_the_grace_period(ingester: Ingester) -> None:
    async with grpc.aio.insecure_channel(ingester.address) as channel:
        held = ingest_pb2_grpc.IngestStub(channel).Push(iter([pushed(trade("A", n)) for n in range(1, 4)]))
        await wait_for(lambda: ingester.queue.waiting_for_room > 0, "the push to wait for room")
        started = time.monotonic()
        await asyncio.to_thread(ingester.ingress.stop)
        stopped_after = time.monotonic() - started
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await held
        code = caught.value.code()
    assert code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert 0.2 <= stopped_after < 3
    assert not ingester.ingress.failed
    # The worker that waited for room gives up within a slice, leaving the queue as it was.
    deadline = time.monotonic() + WAIT_S
    while ingester.queue.waiting_for_room and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ingester.queue.waiting_for_room == 0 and ingester.queue.depth == 1


def test_a_taken_port_fails_start_with_a_clear_error() -> None:
    first = Ingester()
    first.ingress.start()
    try:
        second = Ingester(grpc_port=first.settings.grpc_port)
        with pytest.raises(
            Exception, match=f"cannot listen for gRPC on 127.0.0.1:{first.settings.grpc_port}"
        ):
            second.ingress.start()
        second.ingress.stop()
    finally:
        first.ingress.stop()


def test_stop_is_idempotent_and_safe_from_several_threads(ingester: Ingester) -> None:
    threads = [threading.Thread(target=ingester.ingress.stop) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive()
    ingester.ingress.stop()
    assert not ingester.ingress.failed


async def wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)
