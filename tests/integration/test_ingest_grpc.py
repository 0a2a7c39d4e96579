"""gRPC `tapewire.v1.Ingest/Push` against the real broker: the ingester serving on a port of the
test's own, fed by the generated stub, publishing to the test's own raw topic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.ingester.run import serve
from services.ingester.settings import IngesterSettings
from tapewire.auth import AuthSettings
from tapewire.reference.master import read_master
from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.v1 import ingest_pb2, ingest_pb2_grpc, market_pb2, reference_pb2
from tests.support import consume_all
from tools.isolation import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "integration-test-secret-at-least-32-bytes"
BASE_NS = time.time_ns() - 3_600 * 10**9
INSTRUMENTS = ["AAPL", "MSFT", "NVDA", "BRK.B"]


def trade(instrument: str, sequence: int, ingest_time_ns: int = 0) -> market_pb2.Tick:
    return market_pb2.Tick(
        instrument=instrument,
        venue="XNAS",
        kind=market_pb2.TICK_KIND_TRADE,
        price=f"{100 + sequence % 10}.25",
        size="100",
        sequence=sequence,
        exchange_time_ns=BASE_NS + sequence,
        ingest_time_ns=ingest_time_ns,
    )


def quote(instrument: str, sequence: int) -> market_pb2.Tick:
    return market_pb2.Tick(
        instrument=instrument,
        kind=market_pb2.TICK_KIND_QUOTE,
        bid_price="99.99",
        bid_size="300",
        ask_price="100.01",
        ask_size="0",
        sequence=sequence,
        exchange_time_ns=BASE_NS + sequence,
    )


INVALID = [
    market_pb2.Tick(instrument="bad symbol!", kind=market_pb2.TICK_KIND_TRADE, price="1", size="1"),
    market_pb2.Tick(
        instrument="AAPL", kind=market_pb2.TICK_KIND_TRADE, price="-1", size="1", exchange_time_ns=BASE_NS
    ),
    market_pb2.Tick(
        instrument="AAPL", kind=market_pb2.TICK_KIND_TRADE, price="1", size="1", exchange_time_ns=1
    ),
    market_pb2.Tick(),
]


def grpc_ingester(kafka: KafkaSettings, topics: TopicSettings, **values: object) -> IngesterSettings:
    """An ingester fed only over gRPC, on a free loopback port, writing to the test's topic."""
    return IngesterSettings(  # type: ignore[arg-type]
        kafka=kafka,
        topics=topics,
        source="none",
        metrics_port=0,
        startup_timeout_s=20,
        grpc_host="127.0.0.1",
        grpc_port=free_port(),
        grpc_shutdown_grace_s=1,
        **values,
    )


@contextmanager
def running(settings: IngesterSettings) -> Iterator[grpc.Channel]:
    """`serve` on a thread, a channel to it once it answers health checks; then stop, exit code 0."""
    stop, codes = threading.Event(), list[int]()
    thread = threading.Thread(
        target=lambda: codes.append(serve(settings, stop, CollectorRegistry())), daemon=True
    )
    thread.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{settings.grpc_port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        yield channel
    finally:
        channel.close()
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "the ingester did not stop"
    assert codes == [0]


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def token(secret: str = SECRET, exp_in_s: int = 300) -> str:
    return jwt.encode({"sub": "feed-adapter", "exp": int(time.time()) + exp_in_s}, secret, algorithm="HS256")


def test_pushed_ticks_are_published_keyed_by_instrument_and_stamped(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    names = [INSTRUMENTS[n % len(INSTRUMENTS)] for n in range(40)]
    valid = [trade(name, n + 1) if n % 2 else quote(name, n + 1) for n, name in enumerate(names)]
    valid[0].ingest_time_ns = 42  # a client's ingest time is ignored
    stream = valid[:10] + INVALID[:2] + valid[10:30] + INVALID[2:] + valid[30:]
    before = time.time_ns()

    with running(grpc_ingester(kafka_settings, topics)) as channel:
        summary = ingest_pb2_grpc.IngestStub(channel).Push(iter(stream), timeout=30)
        second = ingest_pb2_grpc.IngestStub(channel).Push(iter([trade("SPY", 1)]), timeout=30)

    assert (summary.accepted, summary.rejected) == (40, 4)
    # The summary waited for Kafka's acknowledgements: every accepted tick was published.
    assert (summary.published, summary.failed, summary.dropped, summary.unconfirmed) == (40, 0, 0, 0)
    assert [r.index for r in summary.rejections] == [10, 11, 32, 33]
    assert all(r.code == "invalid_tick" and r.reason for r in summary.rejections)
    assert (second.accepted, second.rejected, second.published) == (1, 0, 1)
    messages = consume_all(kafka_settings, topics.raw, expected=41)
    assert len(messages) == 41
    ticks = [market_pb2.Tick.FromString(m.value() or b"") for m in messages]
    assert all(m.key() == t.instrument.encode() for m, t in zip(messages, ticks, strict=True))
    assert all(before <= t.ingest_time_ns <= time.time_ns() for t in ticks)
    by_instrument: dict[str, list[int]] = {}
    for tick in ticks:
        by_instrument.setdefault(tick.instrument, []).append(tick.sequence)
    expected: dict[str, list[int]] = {"SPY": [1]}
    for tick in valid:
        expected.setdefault(tick.instrument, []).append(tick.sequence)
    assert by_instrument == expected  # every tick once, in stream order per instrument


def test_with_auth_configured_only_a_valid_token_may_push(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    settings = grpc_ingester(kafka_settings, topics, auth=AuthSettings(hs256_secret=SecretStr(SECRET)))
    with running(settings) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        for metadata in (
            (),
            bearer("not-a-jwt"),
            bearer(token(secret="x" * 40)),
            bearer(token(exp_in_s=-60)),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Push(iter([trade("AAPL", 1)]), metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            assert "authorization: Bearer" in caught.value.details()  # type: ignore[attr-defined]
        summary = stub.Push(iter([trade("AAPL", 2)]), metadata=bearer(token()), timeout=10)
        assert (summary.accepted, summary.rejected) == (1, 0)
        # Health and reflection need no token.
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="tapewire.v1.Ingest"), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert "tapewire.v1.Ingest" in listed_services(channel)

    records = consume_all(kafka_settings, topics.raw, expected=1)
    assert [market_pb2.Tick.FromString(m.value() or b"").sequence for m in records] == [2]


def instrument(symbol: str, tick_size: str = "0.01") -> reference_pb2.Instrument:
    return reference_pb2.Instrument(
        symbol=symbol,
        name=f"{symbol} Corp",
        asset_class="equity",
        currency="USD",
        venue="XNAS",
        tick_size=tick_size,
        calendar=reference_pb2.TradingCalendar(
            timezone="America/New_York", hours="09:30-16:00", days=[1, 2, 3, 4, 5]
        ),
    )


def test_put_instruments_publishes_the_valid_entries_and_needs_the_admin_role(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    settings = grpc_ingester(kafka_settings, topics, auth=AuthSettings(hs256_secret=SecretStr(SECRET)))
    request = ingest_pb2.PutInstrumentsRequest(
        instruments=[instrument("AAA"), instrument("BBB", tick_size="0"), instrument("CCC", tick_size="0.25")]
    )
    admin = jwt.encode(
        {"sub": "ops", "roles": ["admin"], "exp": int(time.time()) + 300}, SECRET, algorithm="HS256"
    )
    with running(settings) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.PutInstruments(request, metadata=bearer(token()), timeout=10)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        reply = stub.PutInstruments(request, metadata=bearer(admin), timeout=30)

    assert reply.published == 2
    assert [(r.index, r.code) for r in reply.rejections] == [(1, "invalid_instrument")]
    assert reply.rejections[0].reason.startswith("tick_size '0' must be a positive decimal")
    entries = {entry.symbol: entry for entry in read_master(kafka_settings, topics.instruments)}
    assert sorted(entries) == ["AAA", "CCC"]
    assert entries["CCC"].decimals == 2  # unset (0) is the tick size's own
    assert entries["AAA"].calendar.hours_text() == "09:30-16:00"


def listed_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    return {service.name for reply in replies for service in reply.list_services_response.service}


def test_python_m_services_ingester_serves_grpc_only_and_stops_cleanly_on_sigterm(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "TAPEWIRE_TOPIC_RAW": topics.raw,
        "TAPEWIRE_TOPIC_PARTITIONS": str(topics.partitions),
        "INGESTER_SOURCE": "none",
        "INGESTER_METRICS_PORT": "0",
        "INGESTER_GRPC_HOST": "127.0.0.1",
        "INGESTER_GRPC_PORT": str(port),
    }
    env = {name: value for name, value in env.items() if not name.startswith("AUTH_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.ingester"], env=env, cwd=ROOT, stderr=subprocess.PIPE
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30
            )
            summary = ingest_pb2_grpc.IngestStub(channel).Push(
                iter([trade("AAPL", n) for n in range(1, 21)] + INVALID[:1]), timeout=30
            )
        assert (summary.accepted, summary.rejected) == (20, 1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr.decode()
    logs = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    summary_log = next(entry for entry in logs if entry["msg"] == "ingester stopped")
    assert (summary_log["grpc_accepted"], summary_log["grpc_rejected"], summary_log["published"]) == (
        20,
        1,
        20,
    )
    assert any(entry["msg"].startswith("auth is off") for entry in logs)
    assert len(consume_all(kafka_settings, topics.raw, expected=20)) == 20
