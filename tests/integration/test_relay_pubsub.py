"""The relay on its own subscription connection (pubsub.py) against the real Redis: updates
published after the confirmation arrive, and a connection killed by Redis, a reply above the
size bound or a refused login make the relay start over (sessions resync) instead of stopping
or buffering. Updates are written as cache_updater writes them (tests.integration.Cache)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import redis

from services.dashboard_api.live.encoders import Delta
from services.dashboard_api.live.pubsub import PubSubConnector
from services.dashboard_api.live.relay import Relay, confirmed
from services.dashboard_api.metrics import DashboardApiMetrics
from tapewire.keys import RedisKeys
from tapewire.settings import RedisSettings
from tapewire.v1 import alerts_pb2 as apb
from tests.integration.dashboard_support import Cache

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60), pytest.mark.anyio]

WAIT_S = 10.0


class Watcher:
    def __init__(self) -> None:
        self.versions: list[int] = []
        self.resyncs = 0

    def deliver(self, delta: Delta) -> bool:
        self.versions.append(delta.version)
        return True

    def deliver_alert(self, event: apb.AlertEvent) -> bool:
        return True

    def resync(self) -> bool:
        self.resyncs += 1
        return True


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def sample(metrics: DashboardApiMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


@asynccontextmanager
async def running(
    connector: PubSubConnector, settings: RedisSettings, metrics: DashboardApiMetrics | None = None
) -> AsyncIterator[Relay]:
    metrics = metrics or DashboardApiMetrics()
    relay = Relay(connector, RedisKeys.from_settings(settings), metrics, max_backoff_s=0.5)
    relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


def relay_name(settings: RedisSettings) -> str:
    return f"relay-test:{settings.updates_channel}"


def client_id(client: redis.Redis, name: str) -> str:
    (found,) = [c["id"] for c in client.client_list() if c["name"] == name]
    return str(found)


async def test_updates_published_after_the_confirmation_arrive_once(
    redis_settings: RedisSettings, redis_client: redis.Redis, cache: Cache
) -> None:
    connector = PubSubConnector(redis_settings.url.get_secret_value(), client_name=relay_name(redis_settings))
    channel = RedisKeys.from_settings(redis_settings).updates("AAPL")

    def subscribers() -> int:
        return int(dict(redis_client.pubsub_numsub(channel))[channel.encode()])

    async with running(connector, redis_settings) as relay:
        watcher = Watcher()
        await asyncio.wait_for(confirmed(relay.watch(watcher, ["AAPL", "MSFT"])), WAIT_S)
        assert relay.ready
        assert subscribers() == 1
        for version in (1, 2, 3):
            cache.put("AAPL", version)
        await until(lambda: watcher.versions == [1, 2, 3], "three updates")
        relay.unwatch(watcher, ["AAPL"])
        await until(lambda: subscribers() == 0, "the UNSUBSCRIBE")
        cache.put("AAPL", 4)
        cache.put("MSFT", 1)
        await until(lambda: watcher.versions == [1, 2, 3, 1], "MSFT's update only")


async def test_a_killed_connection_is_replaced_and_every_session_resyncs(
    redis_settings: RedisSettings, redis_client: redis.Redis, cache: Cache
) -> None:
    url = redis_settings.url.get_secret_value()
    name = relay_name(redis_settings)

    async with running(PubSubConnector(url, client_name=name), redis_settings) as relay:
        watcher = Watcher()
        await asyncio.wait_for(confirmed(relay.watch(watcher, ["AAPL"])), WAIT_S)
        killed = client_id(redis_client, name)
        redis_client.client_kill_filter(_id=killed)
        await until(lambda: watcher.resyncs == 1, "the resync")
        assert relay.ready
        assert client_id(redis_client, name) != killed
        cache.put("AAPL", 1)
        await until(lambda: watcher.versions == [1], "an update on the new connection")


async def test_a_message_above_the_bound_drops_the_connection_not_the_relay(
    redis_settings: RedisSettings, redis_client: redis.Redis, cache: Cache
) -> None:
    url = redis_settings.url.get_secret_value()
    name = relay_name(redis_settings)
    channel = RedisKeys.from_settings(redis_settings).updates("AAPL")

    connector = PubSubConnector(url, client_name=name, max_reply_bytes=64 * 1024)
    metrics = DashboardApiMetrics()
    async with running(connector, redis_settings, metrics) as relay:
        watcher = Watcher()
        await asyncio.wait_for(confirmed(relay.watch(watcher, ["AAPL"])), WAIT_S)
        first = client_id(redis_client, name)
        redis_client.publish(channel, b"\x0a" * (4 * 1024 * 1024))
        await until(lambda: watcher.resyncs == 1, "the resync")
        assert client_id(redis_client, name) != first
        cache.put("AAPL", 1)
        await until(lambda: watcher.versions == [1], "an update after the oversized one")
        assert sample(metrics, "dashboard_api_updates_received_total") == 1  # not the oversized one


async def test_a_user_and_password_log_in_and_a_wrong_password_keeps_retrying(
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    cache: Cache,
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = f"relay_{unique}"
    redis_client.acl_setuser(
        user,
        enabled=True,
        passwords=["+s3cret:pw"],
        channels=[f"{redis_settings.updates_channel}*"],
        commands=["+subscribe", "+unsubscribe", "+ping", "+client|setname"],
    )
    address = redis_settings.url.get_secret_value().split("://", 1)[1]

    try:
        good = PubSubConnector(f"redis://{user}:s3cret%3Apw@{address}", client_name=f"{user}-relay")
        async with running(good, redis_settings) as relay:
            watcher = Watcher()
            await asyncio.wait_for(confirmed(relay.watch(watcher, ["AAPL"])), WAIT_S)
            cache.put("AAPL", 1)
            await until(lambda: watcher.versions == [1], "an update as the ACL user")
        metrics = DashboardApiMetrics()
        bad = PubSubConnector(f"redis://{user}:wrong@{address}")
        async with running(bad, redis_settings, metrics) as relay:
            await until(lambda: sample(metrics, "dashboard_api_relay_reconnects_total") >= 2, "retries")
            assert not relay.ready
        errors = [getattr(record, "error", "") for record in caplog.records]
        assert sum("WRONGPASS" in error for error in errors) >= 2, errors
    finally:
        redis_client.acl_deluser(user)
