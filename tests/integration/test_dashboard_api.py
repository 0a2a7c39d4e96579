"""dashboard_api against the real Redis and PostgreSQL, served by uvicorn on a free port.

States are written the way cache_updater writes them: hash + instruments set + PUBLISH of the
Update in one Lua script that refuses anything not newer than what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from services.dashboard_api.settings import DashboardApiSettings
from tapewire.db import connect_kwargs
from tapewire.settings import PostgresSettings, RedisSettings
from tests.integration.dashboard_support import (
    WAIT_S,
    App,
    Cache,
    _ready,
    drain_until_pong,
    eventually,
    make_settings,
    receive,
    send,
    serving,
    subscribe,
    true,
    versions,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90), pytest.mark.anyio]

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

# REST


async def test_instruments_and_snapshot(dashboard_settings: DashboardApiSettings, cache: Cache) -> None:
    cache.put("MSFT", 3, last_price="410.5", spread="0.02", spread_bps=0.48)
    cache.put("AAPL", 7, last_price="187.42")

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app:
            response = await app.http.get("/api/instruments")
            assert (response.status_code, response.json()) == (
                200,
                {"instruments": ["AAPL", "MSFT"], "details": []},
            )

            everything = (await app.http.get("/api/snapshot")).json()
            assert versions(everything) == {"AAPL": 7, "MSFT": 3}
            assert [s["instrument"] for s in everything["states"]] == ["AAPL", "MSFT"]
            assert everything["missing"] == []
            msft = everything["states"][1]
            assert (msft["last_price"], msft["spread_bps"], msft["bid_price"], msft["bar_1s"]) == (
                "410.5",
                0.48,
                None,
                None,
            )
            assert msft["times"]["cached_ns"] > 0 and msft["times"]["sent_ns"] >= msft["times"]["cached_ns"]

            subset = (await app.http.get("/api/snapshot", params={"instruments": "MSFT,NOPE,MSFT"})).json()
            assert (versions(subset), subset["missing"]) == ({"MSFT": 3}, ["NOPE"])

            for query, code in [
                ("bad name", "invalid_instruments"),
                ("A,,B", "invalid_instruments"),
                ("", "invalid_instruments"),
                ("A,B,C,D", "too_many_instruments"),
                ("X" * 33, "invalid_instruments"),
            ]:
                response = await app.http.get("/api/snapshot", params={"instruments": query})
                assert response.status_code == 400, query
                assert response.json()["code"] == code, query
                assert response.json()["error"], query


def insert_bars(
    postgres: PostgresSettings,
    table: str,
    instrument: str,
    starts: list[datetime],
    vwap: Decimal | None = Decimal("100.250"),
) -> None:
    with psycopg.connect(**connect_kwargs(postgres), autocommit=True) as conn:
        for number, start in enumerate(starts, start=1):
            price = Decimal(100 + number)
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (instrument, start_time, open, high, low, close, volume, trade_count,"
                    " version, vwap) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(sql.Identifier(table)),
                (
                    instrument,
                    start,
                    price,
                    price + 1,
                    price - 1,
                    Decimal("100.50"),
                    Decimal("12.000"),
                    number,
                    number,
                    vwap,
                ),
            )


async def test_bars(dashboard_settings: DashboardApiSettings, postgres_settings: PostgresSettings) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    insert_bars(postgres_settings, "bars_1s", "AAPL", [start + timedelta(seconds=s) for s in range(5)])
    insert_bars(postgres_settings, "bars_1s", "MSFT", [start])
    # Without a VWAP, like the bars stored before migration 0002 added it.
    insert_bars(
        postgres_settings, "bars_1m", "AAPL", [start + timedelta(minutes=m) for m in (2, 0, 1)], vwap=None
    )

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app:
            response = await app.http.get(
                "/api/bars", params={"instrument": "AAPL", "interval": "1s", "limit": 3}
            )
            assert response.status_code == 200
            body = response.json()
            assert (body["instrument"], body["interval"]) == ("AAPL", "1s")
            assert body["bars"][0] == {
                "start_time_ns": T0 + 2 * 10**9,
                "start": "2026-01-01T00:00:02Z",
                "open": "103",
                "high": "104",
                "low": "102",
                "close": "100.5",
                "volume": "12",
                "trade_count": 3,
                "vwap": "100.25",
            }
            assert [bar["start"][-4:] for bar in body["bars"]] == [
                ":02Z",
                ":03Z",
                ":04Z",
            ]  # latest 3, oldest first

            minutes = (
                await app.http.get("/api/bars", params={"instrument": "AAPL"})
            ).json()  # 1m, 300 by default
            assert minutes["interval"] == "1m"
            assert [bar["start"] for bar in minutes["bars"]] == [
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:01:00Z",
                "2026-01-01T00:02:00Z",
            ]
            assert [bar["vwap"] for bar in minutes["bars"]] == [None, None, None]
            nothing = (
                await app.http.get("/api/bars", params={"instrument": "NOPE", "interval": "1s"})
            ).json()
            assert nothing["bars"] == []

            for params, code in [
                ({"instrument": "AAPL", "interval": "5m"}, "invalid_request"),
                ({"instrument": "AAPL", "limit": "many"}, "invalid_request"),
                ({"instrument": "AAPL", "limit": "0"}, "invalid_limit"),
                ({"instrument": "AAPL", "limit": "51"}, "invalid_limit"),
                ({"instrument": "bad name"}, "invalid_instruments"),
                ({}, "invalid_request"),
            ]:
                response = await app.http.get("/api/bars", params=params)
                assert (response.status_code, response.json()["code"]) == (400, code), params


async def test_health_ready_and_metrics(dashboard_settings: DashboardApiSettings) -> None:
    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app:
            health = await app.http.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            ready = await app.http.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
            cors = await app.http.get("/api/instruments", headers={"Origin": "https://dash.example"})
            assert cors.headers["access-control-allow-origin"] == "*"
            metrics = await app.http.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            for name in (
                "dashboard_api_ws_connections",
                "dashboard_api_ws_messages_sent_total",
                "dashboard_api_updates_received_total",
                "dashboard_api_updates_relayed_total",
                "dashboard_api_slow_consumer_disconnects_total",
                "dashboard_api_client_errors_total",
                "dashboard_api_cached_to_sent_seconds_bucket",
                "dashboard_api_relay_ready 1.0",
            ):
                assert name in metrics.text, name


async def test_client_sockets_get_the_configured_send_buffer(
    dashboard_settings: DashboardApiSettings,
) -> None:
    settings = dashboard_settings.model_copy(update={"socket_send_buffer_bytes": 65_536})

    async with asyncio.timeout(80):
        async with serving(settings) as app:
            # Accepted connections inherit the listener's buffer sizes; Linux reports twice the
            # value set (its bookkeeping overhead).
            assert app.listener.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 65_536
            async with app.ws() as ws:
                await ws.send(json.dumps({"type": "ping", "id": "p"}))
                assert (await receive(ws))["type"] == "pong"


async def test_starts_and_reports_when_the_stores_are_down(unique: str) -> None:
    # Bound but not listening: connections are refused at once.
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        port = closed_port.getsockname()[1]
        dashboard_settings = make_settings(
            RedisSettings(url=SecretStr(f"redis://127.0.0.1:{port}/0"), key_prefix=f"t{unique}:"),
            PostgresSettings(
                url=SecretStr(f"postgresql://tapewire@127.0.0.1:{port}/tapewire"), schema_name="x"
            ),
            db_timeout_s=0.5,
            subscribe_timeout_s=0.5,
        )

        async with asyncio.timeout(80):
            async with serving(dashboard_settings, wait_ready=False) as app:
                assert (await app.http.get("/healthz")).status_code == 200
                ready = await app.http.get("/readyz")
                assert ready.status_code == 503
                assert ready.json() == {
                    "status": "not ready",
                    "reasons": [
                        "redis does not answer PING",
                        "not subscribed to updates (relay reconnecting)",
                    ],
                }
                bars = await app.http.get("/api/bars", params={"instrument": "AAPL"})
                assert (bars.status_code, bars.json()["code"]) == (503, "store_unavailable")
                assert "postgresql" in bars.json()["error"]
                snapshot = await app.http.get("/api/snapshot")
                assert (snapshot.status_code, snapshot.json()["code"]) == (503, "store_unavailable")
                async with app.ws() as ws:
                    # Live updates cannot be promised without Redis: the subscribe says so.
                    await send(ws, {"type": "subscribe", "id": "s", "instruments": ["AAPL"]})
                    reply = await receive(ws)
                    assert (reply["type"], reply["code"], reply["id"]) == ("error", "unavailable", "s")


# WebSocket


async def test_snapshot_then_updates_for_subscribed_instruments_only(
    dashboard_settings: DashboardApiSettings, cache: Cache
) -> None:
    cache.put("AAPL", 1)
    cache.put("MSFT", 1)

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app, app.ws() as ws:
            cache.put("AAPL", 2)  # published before subscribing: in the snapshot, never re-sent
            snapshot = await subscribe(ws, "AAPL", "LATER")
            assert (versions(snapshot), snapshot["missing"]) == ({"AAPL": 2}, ["LATER"])
            cache.put("AAPL", 3)
            cache.put("MSFT", 2)  # not subscribed
            cache.put("LATER", 1)  # subscribed before it existed
            cache.put("AAPL", 2)  # stale: cache_updater refuses it, nothing is published
            cache.put("AAPL", 4, last_price="188")
            updates = [await receive(ws) for _ in range(3)]
            assert [(u["type"], u["instrument"], u["version"]) for u in updates] == [
                ("update", "AAPL", 3),
                ("update", "LATER", 1),
                ("update", "AAPL", 4),
            ]
            assert updates[2]["state"]["last_price"] == "188"
            assert updates[2]["state"]["version"] == 4
            times = updates[2]["state"]["times"]
            assert 0 < times["cached_ns"] <= times["sent_ns"]
            assert await drain_until_pong(ws) == []
            assert await app.metric("dashboard_api_ws_messages_sent_total", {"type": "update"}) == 3
            assert await app.metric("dashboard_api_ws_messages_sent_total", {"type": "snapshot"}) == 1
            assert await app.metric("dashboard_api_ws_connections") == 1


async def test_subscribing_midway_through_a_burst_misses_nothing_and_repeats_nothing(
    dashboard_settings: DashboardApiSettings, redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    total = 5_000
    midway = threading.Event()
    failures: list[BaseException] = []

    def publish() -> None:
        cache = Cache(redis_client, redis_settings)
        try:
            for version in range(1, total + 1):
                cache.put("RACE", version, last_price=str(version))
                if version == total // 5:
                    midway.set()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)
            midway.set()

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app, app.ws() as ws:
            publisher = threading.Thread(target=publish, name="race-publisher")
            publisher.start()
            try:
                assert await asyncio.to_thread(midway.wait, WAIT_S), "publisher never got midway"
                snapshot = await subscribe(ws, "RACE")
                start = versions(snapshot)["RACE"]
                seen = []
                while not seen or seen[-1] < total:
                    message = await receive(ws)
                    assert (message["type"], message["instrument"]) == ("update", "RACE"), message
                    seen.append(message["version"])
            finally:
                await asyncio.to_thread(publisher.join, WAIT_S * 3)
            assert not failures, failures
            assert start < total, "the burst was over before the subscription: nothing was raced"
            assert seen == list(range(start + 1, total + 1)), _describe_gap(seen, start)
            assert await drain_until_pong(ws) == []


def _describe_gap(seen: list[int], start: int) -> str:
    expected = start + 1
    for got in seen:
        if got != expected:
            return f"after snapshot {start}: expected version {expected}, got {got}"
        expected += 1
    return f"after snapshot {start}: {len(seen)} updates, last {seen[-1] if seen else None}"


async def test_unsubscribe_stops_updates(dashboard_settings: DashboardApiSettings, cache: Cache) -> None:
    cache.put("AAPL", 1)
    cache.put("MSFT", 1)

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app, app.ws() as ws:
            assert versions(await subscribe(ws, "AAPL", "MSFT")) == {"AAPL": 1, "MSFT": 1}
            await send(ws, {"type": "unsubscribe", "instruments": ["AAPL", "NEVER"]})
            assert await receive(ws) == {"type": "unsubscribed", "instruments": ["AAPL", "NEVER"]}
            cache.put("AAPL", 2)
            cache.put("MSFT", 2)
            message = await receive(ws)
            assert (message["instrument"], message["version"]) == ("MSFT", 2)
            assert await drain_until_pong(ws) == []
            # Subscribing again starts over from a fresh snapshot.
            cache.put("AAPL", 3)
            assert versions(await subscribe(ws, "AAPL")) == {"AAPL": 3}
            cache.put("AAPL", 4)
            assert (await receive(ws))["version"] == 4


async def test_bad_messages_get_error_replies_and_the_connection_stays_usable(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings, cache: Cache
) -> None:
    dashboard_settings = make_settings(
        redis_settings, postgres_settings, max_client_message_bytes=1024, max_subscriptions_per_connection=2
    )
    cache.put("AAPL", 5)

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app, app.ws() as ws:
            for frame, code in [
                ("not json", "invalid_json"),
                ("[1, 2]", "not_an_object"),
                ('{"type": "subscribe_everything"}', "unknown_type"),
                ('{"instruments": ["AAPL"]}', "unknown_type"),
                ('{"type": "subscribe"}', "invalid_instruments"),
                ('{"type": "subscribe", "instruments": "AAPL"}', "invalid_instruments"),
                ('{"type": "subscribe", "instruments": []}', "invalid_instruments"),
                ('{"type": "subscribe", "instruments": ["no spaces"]}', "invalid_instruments"),
                ('{"type": "subscribe", "instruments": ["A", "B", "C", "D"]}', "too_many_instruments"),
                ('{"type": "subscribe", "instruments": ["A", "B", "C"]}', "too_many_subscriptions"),
                (json.dumps({"type": "ping", "pad": "x" * 2000}), "message_too_large"),
            ]:
                await send(ws, frame)
                reply = await receive(ws)
                assert (reply["type"], reply["code"]) == ("error", code), frame
                assert isinstance(reply["reason"], str) and reply["reason"], frame
            await ws.send(b'{"type": "ping"}')
            assert (await receive(ws))["code"] == "invalid_protobuf"

            assert versions(await subscribe(ws, "AAPL")) == {"AAPL": 5}
            assert await drain_until_pong(ws) == []
            assert await app.metric("dashboard_api_client_errors_total", {"code": "invalid_instruments"}) == 4
            assert await app.metric("dashboard_api_ws_messages_sent_total", {"type": "error"}) == 12

            # Beyond 4 x max_client_message_bytes the frame is not even read: 1009.
            await send(ws, json.dumps({"type": "ping", "pad": "x" * 5000}))
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009


class PacedPublisher:
    """Publishes big updates of one instrument from a thread, never more than `window` versions
    ahead of what a reading client has received: only a client that does not read falls behind."""

    def __init__(self, cache: Cache, instrument: str, first: int, window: int) -> None:
        self.published: list[int] = []
        self.received = first - 1
        self.failures: list[BaseException] = []
        self._cache = cache
        self._instrument = instrument
        self._first = first
        self._window = window
        self._progress = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, name="paced-publisher")

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, WAIT_S)
        assert not self.failures, self.failures

    async def read_along(self, ws: ClientConnection) -> None:
        while True:
            message = await receive(ws)
            with self._progress:
                self.received = message["version"]
                self._progress.notify_all()

    def _publish(self) -> None:
        try:
            version = self._first
            while not self._stop.is_set():
                self._wait_for_reader(version - self._window)
                # ~60 kB of incompressible text per update fills the socket buffers quickly.
                self._cache.put(self._instrument, version, venue=os.urandom(30_000).hex())
                self.published.append(version)
                version += 1
        except BaseException as exc:  # reported by stop(), not lost in the thread
            self.failures.append(exc)

    def _wait_for_reader(self, version: int) -> None:
        with self._progress:
            if not self._progress.wait_for(lambda: self.received >= version, WAIT_S):
                raise AssertionError(f"the reading client is stuck at version {self.received}")


async def test_a_client_that_does_not_read_goes_down_the_ladder_to_4008_while_others_keep_receiving(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings, cache: Cache
) -> None:
    dashboard_settings = make_settings(
        redis_settings,
        postgres_settings,
        send_queue_size=8,
        conflation_timeout_s=0.3,
        resync_timeout_s=0.6,
    )
    cache.put("BIG", 1)
    publisher = PacedPublisher(cache, "BIG", first=2, window=4)

    async def slow_one_disconnected(app: App) -> bool:
        assert not publisher.failures, publisher.failures
        return await app.metric("dashboard_api_slow_consumer_disconnects_total") >= 1

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app:
            # The slow client: a tiny receive buffer and a one-message queue, so it pushes back early.
            slow_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            slow_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # before connect: no autotuning
            slow_socket.connect(("127.0.0.1", app.port))
            async with app.ws(sock=slow_socket, max_queue=1) as slow, app.ws() as fast:
                assert versions(await subscribe(slow, "BIG")) == {"BIG": 1}
                assert versions(await subscribe(fast, "BIG")) == {"BIG": 1}
                reader = asyncio.create_task(publisher.read_along(fast))
                publisher.start()
                try:
                    await eventually(lambda: slow_one_disconnected(app), "the slow client to be disconnected")
                    # Keep publishing a little: the fast client must not notice anything.
                    more_until = len(publisher.published) + 20
                    await eventually(lambda: true(len(publisher.published) >= more_until), "20 more updates")
                finally:
                    await publisher.stop()
                last = publisher.published[-1]
                await eventually(lambda: true(publisher.received == last), f"the fast client to get {last}")
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                assert await drain_until_pong(fast) == []

                # The slow client finds what was buffered for it, then the close frame.
                got = []
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        message = await receive(slow)
                        got.append(message["version"] if message["type"] == "update" else message["type"])
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 4008
                updates = [version for version in got if isinstance(version, int)]
                assert updates == list(range(2, 2 + len(updates))), f"in order and gap-free: {got}"
                assert len(updates) < len(publisher.published)
            assert await app.metric("dashboard_api_slow_consumer_disconnects_total") == 1
            # The ladder, one step each, in order (each step needs the one before it).
            for step in ("conflating", "resyncing", "disconnect"):
                assert await app.metric("dashboard_api_slow_client_steps_total", {"step": step}) == 1


async def test_ping_pong(dashboard_settings: DashboardApiSettings) -> None:
    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app, app.ws() as ws:
            await send(ws, {"type": "ping"})
            pong = await receive(ws)
            assert pong["type"] == "pong" and pong["server_time_ns"] > 0
            assert await app.metric("dashboard_api_ws_messages_sent_total", {"type": "pong"}) == 1


async def test_shutdown_closes_websockets_with_1001(
    dashboard_settings: DashboardApiSettings, cache: Cache
) -> None:
    cache.put("AAPL", 1)

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app, app.ws() as ws:
            await subscribe(ws, "AAPL")
            await app.stop()
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "server shutting down")


async def test_the_relay_reconnects_and_resyncs_its_clients(
    dashboard_settings: DashboardApiSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    cache: Cache,
) -> None:
    cache.put("AAPL", 1)
    relay_name = f"dashboard_api-relay:{redis_settings.updates_channel}"

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app, app.ws() as ws:
            assert versions(await subscribe(ws, "AAPL")) == {"AAPL": 1}
            (relay,) = [c for c in redis_client.client_list() if c["name"] == relay_name]
            redis_client.client_kill_filter(_id=relay["id"])
            cache.put("AAPL", 2)  # most likely published while the relay is away, so lost to it
            await eventually(
                lambda: _metric_at_least(app, "dashboard_api_relay_reconnects_total", 1),
                "the relay to notice",
            )
            await eventually(lambda: _ready(app.http), "/readyz to answer 200 again")
            cache.put("AAPL", 3)
            seen: list[tuple[str, Any]] = []
            while not seen or seen[-1] != ("update", 3):
                message = await receive(ws)
                if message["type"] == "snapshot":
                    assert message["reason"] == "resync"
                    seen.append(("resync", versions(message) or message["resumed"]))
                else:
                    seen.append(("update", message["version"]))
            # The resync resumes from the version already sent: version 2 is replayed from the
            # history (or arrived live, if the relay was back in time). Nothing repeats.
            assert seen in (
                [("resync", {"AAPL": {"from": 2, "to": 2}}), ("update", 2), ("update", 3)],
                [("update", 2), ("resync", {"AAPL": {"from": 3, "to": 2}}), ("update", 3)],
            ), seen
            assert await drain_until_pong(ws) == []


async def _metric_at_least(app: App, name: str, value: float) -> bool:
    return await app.metric(name) >= value
