"""The alert command path against the real Kafka, and the alert store against the real Redis.

A few tests use a fake producer where only a fake can be told exactly when to refuse
(librdkafka's buffer full, a record refused outright); the delivery failures are real, from
a producer pointed at a port where no broker listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from redis.asyncio import Redis

from services.dashboard_api.alerts import requests as alert_requests
from services.dashboard_api.alerts.commands import (
    SHUTDOWN_REASON,
    UNCONFIRMED_REASON,
    AlertCommandMetrics,
    AlertCommands,
    Busy,
    DeliveryCallback,
    open_producer,
)
from services.dashboard_api.alerts.store import AlertStore
from tapewire.errors import StoreUnavailable
from tapewire.keys import RedisKeys
from tapewire.settings import KafkaSettings, RedisSettings, TopicSettings
from tapewire.v1 import alerts_pb2 as apb
from tests.support import consume_all
from tools.isolation import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60), pytest.mark.anyio]

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


class Failures:
    """Collects on_failed reports: alert_id -> reason."""

    def __init__(self) -> None:
        self.reported: dict[str, str] = {}

    def __call__(self, alert_id: str, reason: str) -> None:
        self.reported[alert_id] = reason


def sample(metrics_registry: CollectorRegistry, result: str) -> float:
    value = metrics_registry.get_sample_value("dashboard_api_alert_commands_total", {"result": result})
    return value or 0.0


def commands_for(producer: Any, topic: str, registry: CollectorRegistry, **options: Any) -> AlertCommands:
    return AlertCommands(producer, topic, AlertCommandMetrics(registry), clock=lambda: T0, **options)


# ---- to the commands topic -----------------------------------------------------------------


async def test_creates_and_cancels_reach_the_commands_topic_keyed_by_instrument(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    registry = CollectorRegistry()
    failures = Failures()
    ids: list[str] = []

    async with asyncio.timeout(40):
        commands = commands_for(open_producer(kafka_settings), topics.commands, registry)
        commands.start()
        ids.append(commands.submit_create("ann", "AAPL", "above", alert_requests_price("190.50"), failures))
        ids.append(commands.submit_create("ann", "AAPL", "below", "180", failures))
        ids.append(commands.submit_create("bob", "ES.FUT", "above", "6000.25", failures))
        commands.submit_cancel("ann", ids[0], "AAPL", failures)
        await commands.stop(timeout_s=20)

    assert len(set(ids)) == 3
    assert all(uuid.UUID(alert_id).version == 4 for alert_id in ids)
    records = consume_all(kafka_settings, topics.commands, 4)
    by_key: dict[bytes | None, list[apb.AlertCommand]] = {}
    for record in sorted(records, key=lambda r: (r.partition(), r.offset())):
        by_key.setdefault(record.key(), []).append(apb.AlertCommand.FromString(record.value() or b""))
    assert set(by_key) == {b"AAPL", b"ES.FUT"}
    # One partition per instrument, so AAPL's commands are read back in the order submitted.
    first, second, cancel = by_key[b"AAPL"]
    assert first == apb.AlertCommand(
        create=apb.Alert(
            alert_id=ids[0],
            user_id="ann",
            instrument="AAPL",
            direction=apb.ALERT_DIRECTION_ABOVE,
            price="190.5",
            created_ns=T0,
        ),
        issued_ns=T0,
    )
    assert second.create.alert_id == ids[1]
    assert second.create.direction == apb.ALERT_DIRECTION_BELOW
    assert second.create.price == "180"
    assert cancel == apb.AlertCommand(
        cancel=apb.CancelAlert(alert_id=ids[0], user_id="ann", instrument="AAPL"), issued_ns=T0
    )
    (futures,) = by_key[b"ES.FUT"]
    assert (futures.create.user_id, futures.create.price) == ("bob", "6000.25")
    assert failures.reported == {}
    assert (sample(registry, "queued"), sample(registry, "delivered"), sample(registry, "failed")) == (
        4,
        4,
        0,
    )
    assert registry.get_sample_value("dashboard_api_alert_command_queue_depth") == 0
    assert registry.get_sample_value("dashboard_api_alert_command_ack_seconds_count") == 4


def alert_requests_price(text: str) -> Any:
    """A price as the session has it: parsed by alert_requests."""
    price = alert_requests.parse_price(text)
    assert not isinstance(price, alert_requests.ClientError)
    return price


async def test_a_full_queue_answers_busy_and_queues_nothing_more(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    registry = CollectorRegistry()
    accepted: list[str] = []

    async with asyncio.timeout(40):
        commands = commands_for(open_producer(kafka_settings), topics.commands, registry, queue_size=2)
        accepted.append(commands.submit_create("ann", "AAPL", "above", "1"))
        commands.submit_cancel("ann", accepted[0], "AAPL")
        assert commands.depth == 2
        with pytest.raises(Busy):
            commands.submit_create("ann", "MSFT", "above", "1")
        with pytest.raises(Busy):
            commands.submit_cancel("ann", accepted[0], "AAPL")
        assert commands.depth == 2
        assert registry.get_sample_value("dashboard_api_alert_command_queue_depth") == 2
        # Once workers run, what was queued goes out.
        commands.start()
        await commands.stop(timeout_s=20)

    records = consume_all(kafka_settings, topics.commands, 2)
    kinds = [apb.AlertCommand.FromString(r.value() or b"").WhichOneof("command") for r in records]
    assert sorted(kinds) == ["cancel", "create"]
    assert (sample(registry, "queued"), sample(registry, "busy"), sample(registry, "delivered")) == (2, 2, 2)


async def test_commands_after_stop_are_busy(kafka_settings: KafkaSettings, topics: TopicSettings) -> None:
    async with asyncio.timeout(40):
        commands = commands_for(open_producer(kafka_settings), topics.commands, CollectorRegistry())
        commands.start()
        await commands.stop(timeout_s=5)
        with pytest.raises(Busy, match="shutting down"):
            commands.submit_create("ann", "AAPL", "above", "1")
        await commands.stop(timeout_s=5)  # a second stop does nothing


def dead_broker(delivery_timeout_ms: int) -> Any:
    """A producer whose broker never answers: every record times out."""
    return open_producer(
        KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"), delivery_timeout_ms=delivery_timeout_ms
    )


async def test_a_delivery_failure_after_the_ack_reaches_on_failed() -> None:
    registry = CollectorRegistry()
    failures = Failures()
    reported = asyncio.Event()

    def on_failed(alert_id: str, reason: str) -> None:
        failures(alert_id, reason)
        reported.set()

    async with asyncio.timeout(40):
        commands = commands_for(dead_broker(delivery_timeout_ms=500), "tt_commands", registry)
        commands.start()
        alert_id = commands.submit_create("ann", "AAPL", "above", "1", on_failed)
        await asyncio.wait_for(reported.wait(), 20)
        assert list(failures.reported) == [alert_id]
        assert "timed out" in failures.reported[alert_id].lower()
        await commands.stop(timeout_s=1)
    assert (sample(registry, "queued"), sample(registry, "delivered"), sample(registry, "failed")) == (
        1,
        0,
        1,
    )


async def test_stop_reports_what_it_could_not_deliver_in_time() -> None:
    registry = CollectorRegistry()
    failures = Failures()

    async with asyncio.timeout(40):
        commands = commands_for(dead_broker(delivery_timeout_ms=30_000), "tt_commands", registry, workers=1)
        commands.start()
        in_flight = commands.submit_create("ann", "AAPL", "above", "1", failures)
        queued = commands.submit_create("ann", "AAPL", "above", "2", failures)
        await asyncio.sleep(0.1)  # the worker took the first and waits for its acknowledgement
        await commands.stop(timeout_s=0.3)
        assert failures.reported == {in_flight: UNCONFIRMED_REASON, queued: SHUTDOWN_REASON}
    assert sample(registry, "failed") == 2
    assert registry.get_sample_value("dashboard_api_alert_command_queue_depth") == 0


async def test_stop_without_start_reports_everything_queued() -> None:
    failures = Failures()

    async with asyncio.timeout(40):
        commands = commands_for(FakeProducer(), "tt_commands", CollectorRegistry())
        first = commands.submit_create("ann", "AAPL", "above", "1", failures)
        commands.submit_cancel("ann", first, "AAPL", failures)
        await commands.stop(timeout_s=5)
        assert failures.reported == {first: SHUTDOWN_REASON}  # the cancel carries the same alert id


class FakeProducer:
    """Refuses with BufferError `full` times, or with KafkaException when `refuse` is set;
    acknowledges from `poll` (on the report thread), failing the keys listed in `fail`."""

    def __init__(self, full: int = 0, refuse: KafkaError | None = None, fail: frozenset[bytes] = frozenset()):
        self.full = full
        self.refuse = refuse
        self.fail = fail
        self.produced: list[bytes] = []
        self._waiting: list[tuple[bytes, DeliveryCallback]] = []
        self._lock = threading.Lock()

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: DeliveryCallback) -> None:
        if self.refuse is not None:
            raise KafkaException(self.refuse)
        if self.full > 0:
            self.full -= 1
            raise BufferError("Local: Queue full")
        with self._lock:
            self.produced.append(value)
            self._waiting.append((key, on_delivery))

    def poll(self, timeout: float) -> int:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for key, on_delivery in waiting:
            error = KafkaError(KafkaError._MSG_TIMED_OUT) if key in self.fail else None
            on_delivery(error, None)  # type: ignore[arg-type]
        if not waiting:
            threading.Event().wait(min(timeout, 0.01))
        return len(waiting)


async def test_a_full_librdkafka_buffer_is_waited_out() -> None:
    registry = CollectorRegistry()
    producer = FakeProducer(full=5)

    async with asyncio.timeout(40):
        commands = commands_for(producer, "tt_commands", registry, buffer_full_wait_s=0.001)
        commands.start()
        for price in ("1", "2", "3"):
            commands.submit_create("ann", "AAPL", "above", price)
        await commands.stop(timeout_s=5)
    # Nothing lost, and submitted order kept although the first produce had to wait.
    assert [apb.AlertCommand.FromString(v).create.price for v in producer.produced] == ["1", "2", "3"]
    assert sample(registry, "delivered") == 3


async def test_a_record_refused_outright_is_reported() -> None:
    failures = Failures()

    async with asyncio.timeout(40):
        producer = FakeProducer(refuse=KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        commands = commands_for(producer, "tt_commands", CollectorRegistry())
        commands.start()
        alert_id = commands.submit_create("ann", "AAPL", "above", "1", failures)
        await commands.stop(timeout_s=5)
        assert failures.reported[alert_id].startswith("kafka refused the command:")


async def test_per_record_failures_only_hit_their_own_alerts_and_a_bad_callback_is_contained() -> None:
    failures = Failures()

    def broken(_alert_id: str, _reason: str) -> None:
        raise RuntimeError("the session is gone")

    async with asyncio.timeout(40):
        producer = FakeProducer(fail=frozenset({b"MSFT"}))
        commands = commands_for(producer, "tt_commands", CollectorRegistry())
        commands.start()
        ok = commands.submit_create("ann", "AAPL", "above", "1", failures)
        lost = commands.submit_create("ann", "MSFT", "above", "1", failures)
        commands.submit_create("ann", "MSFT", "above", "2", broken)
        await commands.stop(timeout_s=5)
        assert ok not in failures.reported
        assert failures.reported == {lost: KafkaError(KafkaError._MSG_TIMED_OUT).str()}


# ---- the alert store -----------------------------------------------------------------------


def alert_event(
    user_id: str, created_ns: int, status: apb.AlertStatus = apb.ALERT_STATUS_ACTIVE, instrument: str = "AAPL"
) -> apb.AlertEvent:
    alert = apb.Alert(
        alert_id=str(uuid.uuid4()),
        user_id=user_id,
        instrument=instrument,
        direction=apb.ALERT_DIRECTION_ABOVE,
        price="190.5",
        created_ns=created_ns,
    )
    return apb.AlertEvent(alert=alert, status=status, event_ns=created_ns + 1)


def write(client: redis.Redis, keys: RedisKeys, user_id: str, *events: apb.AlertEvent) -> None:
    client.hset(
        keys.alerts(user_id), mapping={event.alert.alert_id: event.SerializeToString() for event in events}
    )


@contextlib.asynccontextmanager
async def store_for(redis_settings: RedisSettings) -> AsyncIterator[AlertStore]:
    client = Redis.from_url(redis_settings.url.get_secret_value())
    try:
        yield AlertStore(client, RedisKeys.from_settings(redis_settings))
    finally:
        await client.aclose()


async def test_alert_store_lists_counts_and_finds(
    redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    keys = RedisKeys.from_settings(redis_settings)
    newest = alert_event("ann", T0 + 3, instrument="MSFT")
    oldest = alert_event("ann", T0 + 1)
    triggered = alert_event("ann", T0 + 2, apb.ALERT_STATUS_TRIGGERED)
    cancelled = alert_event("ann", T0 + 4, apb.ALERT_STATUS_CANCELLED)
    someone_elses = alert_event("bob", T0)
    write(redis_client, keys, "ann", newest, oldest, triggered, cancelled)
    write(redis_client, keys, "bob", someone_elses)
    # Garbage and an event filed under the wrong user are left out, not fatal.
    redis_client.hset(keys.alerts("ann"), "garbage", b"\xff\xff\xff")
    misfiled = alert_event("bob", T0 + 5)
    write(redis_client, keys, "ann", misfiled)

    async with asyncio.timeout(40), store_for(redis_settings) as store:
        assert await store.list("ann") == [oldest, triggered, newest, cancelled]
        assert await store.list("bob") == [someone_elses]
        assert await store.list("nobody") == []
        assert await store.active_count("ann") == 2
        assert await store.active_count("bob") == 1
        assert await store.active_count("nobody") == 0

        assert await store.find("ann", newest.alert.alert_id) == newest
        assert await store.find("ann", someone_elses.alert.alert_id) is None
        assert await store.find("ann", misfiled.alert.alert_id) is None
        assert await store.find("ann", "garbage") is None
        assert await store.find("nobody", str(uuid.uuid4())) is None

        # What cancel does with it: the instrument routes the command; anything else is not found.
        found = alert_requests.cancellable(
            await store.find("ann", newest.alert.alert_id), "ann", newest.alert.alert_id
        )
        assert isinstance(found, apb.Alert)
        assert found.instrument == "MSFT"
        for event in (triggered, cancelled):
            refused = alert_requests.cancellable(
                await store.find("ann", event.alert.alert_id), "ann", event.alert.alert_id
            )
            assert isinstance(refused, alert_requests.ClientError)
            assert refused.code == alert_requests.ALERT_NOT_FOUND


async def test_alert_store_says_unavailable_when_redis_is_down(unique: str) -> None:
    down = RedisSettings(url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"), key_prefix=f"t{unique}:")

    async with asyncio.timeout(40), store_for(down) as store:
        with pytest.raises(StoreUnavailable):
            await store.list("ann")
        with pytest.raises(StoreUnavailable):
            await store.active_count("ann")
        with pytest.raises(StoreUnavailable):
            await store.find("ann", str(uuid.uuid4()))
