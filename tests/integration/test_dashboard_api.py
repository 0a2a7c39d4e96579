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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.dashboard_api.server import build_server
from services.dashboard_api.settings import DashboardApiSettings
from tapewire.db import connect_kwargs
from tapewire.keys import RedisKeys
from tapewire.settings import PostgresSettings, RedisSettings
from tapewire.v1 import market_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

WAIT_S = 10.0
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

# What cache_updater does for one state, atomically: apply only if newer, then announce it.
APPLY_LUA = """
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 's', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


class Cache:
    """Writes states into Redis exactly as cache_updater would."""

    def __init__(self, client: redis.Redis, redis_settings: RedisSettings) -> None:
        self._keys = RedisKeys.from_settings(redis_settings)
        self._apply = client.register_script(APPLY_LUA)

    def put(self, instrument: str, version: int, **fields: Any) -> bool:
        fields.setdefault("venue", "XTST")
        state = pb.InstrumentState(instrument=instrument, version=version, **fields)
        state.times.cached_ns = time.time_ns()
        update = pb.Update(state=state)
        keys = [self._keys.state(instrument), self._keys.instruments]
        args = [version, state.SerializeToString(), instrument, self._keys.updates(instrument)]
        return bool(self._apply(keys=keys, args=[*args, update.SerializeToString()]))


@dataclass
class App:
    http: httpx.AsyncClient
    port: int
    stop: Callable[[], Awaitable[None]]

    async def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        response = await self.http.get("/metrics")
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and (labels is None or sample.labels == labels):
                    return sample.value
        raise AssertionError(f"metric {name} {labels or ''} not exposed")

    def ws(self, **options: Any) -> connect:
        return connect(f"ws://127.0.0.1:{self.port}/ws", proxy=None, open_timeout=WAIT_S, **options)


@contextlib.asynccontextmanager
async def serving(settings: DashboardApiSettings, wait_ready: bool = True) -> AsyncIterator[App]:
    """The app under uvicorn on a free port of 127.0.0.1, stopped (as on SIGTERM) on exit."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = build_server(settings)
    task = asyncio.create_task(server.serve(sockets=[listener]))

    async def stop() -> None:
        server.should_exit = True
        await asyncio.wait_for(asyncio.shield(task), WAIT_S)

    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S, trust_env=False
        ) as http:
            await eventually(lambda: _started(server, task), "uvicorn to start")
            if wait_ready:
                await eventually(lambda: _ready(http), "/readyz to answer 200")
            yield App(http, port, stop)
    finally:
        await stop()
        listener.close()


async def _started(server: Any, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # raises what stopped it
    return bool(server.started)


async def _ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `check` for things that announce themselves no other way (a server, a metric)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


async def receive(ws: ClientConnection, timeout_s: float = WAIT_S) -> dict[str, Any]:
    try:
        text = await asyncio.wait_for(ws.recv(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"no message within {timeout_s}s") from None
    message: dict[str, Any] = json.loads(text)
    return message


async def send(ws: ClientConnection, message: dict[str, Any] | str) -> None:
    await ws.send(message if isinstance(message, str) else json.dumps(message))


async def subscribe(ws: ClientConnection, *instruments: str) -> dict[str, Any]:
    await send(ws, {"type": "subscribe", "instruments": list(instruments)})
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot", snapshot
    return snapshot


async def drain_until_pong(ws: ClientConnection) -> list[dict[str, Any]]:
    """Everything the server sent before answering a ping: proves nothing else was queued."""
    await send(ws, {"type": "ping"})
    seen = []
    while (message := await receive(ws))["type"] != "pong":
        seen.append(message)
    return seen


def versions(snapshot: dict[str, Any]) -> dict[str, int]:
    return {state["instrument"]: state["version"] for state in snapshot["states"]}


def run(scenario: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, 80))


@pytest.fixture
def settings(redis_settings: RedisSettings, postgres_settings: PostgresSettings) -> DashboardApiSettings:
    return make_settings(redis_settings, postgres_settings)


def make_settings(redis: RedisSettings, postgres: PostgresSettings, **overrides: Any) -> DashboardApiSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "max_instruments_per_request": 3,
        "max_bars_limit": 50,
        "close_timeout_s": 5.0,
        "shutdown_grace_s": 5.0,
        **overrides,
    }
    return DashboardApiSettings(redis=redis, postgres=postgres, **values)


@pytest.fixture
def cache(redis_client: redis.Redis, redis_settings: RedisSettings) -> Cache:
    return Cache(redis_client, redis_settings)


# REST


def test_instruments_and_snapshot(settings: DashboardApiSettings, cache: Cache) -> None:
    cache.put("MSFT", 3, last_price="410.5", spread="0.02", spread_bps=0.48)
    cache.put("AAPL", 7, last_price="187.42")

    async def scenario() -> None:
        async with serving(settings) as app:
            response = await app.http.get("/api/instruments")
            assert (response.status_code, response.json()) == (200, {"instruments": ["AAPL", "MSFT"]})

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

    run(scenario())


def insert_bars(postgres: PostgresSettings, table: str, instrument: str, starts: list[datetime]) -> None:
    with psycopg.connect(**connect_kwargs(postgres), autocommit=True) as conn:
        for number, start in enumerate(starts, start=1):
            price = Decimal(100 + number)
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (instrument, start_time, open, high, low, close, volume, trade_count,"
                    " version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
                ),
            )


def test_bars(settings: DashboardApiSettings, postgres_settings: PostgresSettings) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    insert_bars(postgres_settings, "bars_1s", "AAPL", [start + timedelta(seconds=s) for s in range(5)])
    insert_bars(postgres_settings, "bars_1s", "MSFT", [start])
    insert_bars(postgres_settings, "bars_1m", "AAPL", [start + timedelta(minutes=m) for m in (2, 0, 1)])

    async def scenario() -> None:
        async with serving(settings) as app:
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

    run(scenario())


def test_health_ready_and_metrics(settings: DashboardApiSettings) -> None:
    async def scenario() -> None:
        async with serving(settings) as app:
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

    run(scenario())


def test_starts_and_reports_when_the_stores_are_down(unique: str) -> None:
    # Bound but not listening: connections are refused at once.
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        port = closed_port.getsockname()[1]
        settings = make_settings(
            RedisSettings(url=SecretStr(f"redis://127.0.0.1:{port}/0"), key_prefix=f"t{unique}:"),
            PostgresSettings(
                url=SecretStr(f"postgresql://tapewire@127.0.0.1:{port}/tapewire"), schema_name="x"
            ),
            db_timeout_s=0.5,
        )

        async def scenario() -> None:
            async with serving(settings, wait_ready=False) as app:
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
                    await send(ws, {"type": "subscribe", "instruments": ["AAPL"]})
                    with pytest.raises(ConnectionClosed) as closed:
                        await receive(ws)
                    assert closed.value.rcvd is not None
                    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                        1013,
                        "state store unavailable",
                    )

        run(scenario())


# WebSocket


def test_snapshot_then_updates_for_subscribed_instruments_only(
    settings: DashboardApiSettings, cache: Cache
) -> None:
    cache.put("AAPL", 1)
    cache.put("MSFT", 1)

    async def scenario() -> None:
        async with serving(settings) as app, app.ws() as ws:
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

    run(scenario())


def test_subscribing_midway_through_a_burst_misses_nothing_and_repeats_nothing(
    settings: DashboardApiSettings, redis_client: redis.Redis, redis_settings: RedisSettings
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

    async def scenario() -> None:
        async with serving(settings) as app, app.ws() as ws:
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

    run(scenario())


def _describe_gap(seen: list[int], start: int) -> str:
    expected = start + 1
    for got in seen:
        if got != expected:
            return f"after snapshot {start}: expected version {expected}, got {got}"
        expected += 1
    return f"after snapshot {start}: {len(seen)} updates, last {seen[-1] if seen else None}"


def test_unsubscribe_stops_updates(settings: DashboardApiSettings, cache: Cache) -> None:
    cache.put("AAPL", 1)
    cache.put("MSFT", 1)

    async def scenario() -> None:
        async with serving(settings) as app, app.ws() as ws:
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

    run(scenario())


def test_bad_messages_get_error_replies_and_the_connection_stays_usable(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings, cache: Cache
) -> None:
    settings = make_settings(
        redis_settings, postgres_settings, max_client_message_bytes=1024, max_subscriptions_per_connection=2
    )
    cache.put("AAPL", 5)

    async def scenario() -> None:
        async with serving(settings) as app, app.ws() as ws:
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
            assert (await receive(ws))["code"] == "binary_not_supported"

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

    run(scenario())


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


def test_a_client_that_does_not_read_is_closed_with_4008_while_others_keep_receiving(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings, cache: Cache
) -> None:
    settings = make_settings(redis_settings, postgres_settings, send_queue_size=8)
    cache.put("BIG", 1)
    publisher = PacedPublisher(cache, "BIG", first=2, window=4)

    async def slow_one_disconnected(app: App) -> bool:
        assert not publisher.failures, publisher.failures
        return await app.metric("dashboard_api_slow_consumer_disconnects_total") >= 1

    async def scenario() -> None:
        async with serving(settings) as app:
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
                    await eventually(lambda: _true(len(publisher.published) >= more_until), "20 more updates")
                finally:
                    await publisher.stop()
                last = publisher.published[-1]
                await eventually(lambda: _true(publisher.received == last), f"the fast client to get {last}")
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                assert await drain_until_pong(fast) == []

                # The slow client finds what was buffered for it, then the close frame.
                got = []
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        got.append((await receive(slow))["version"])
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4008, "slow consumer")
                assert got == list(range(2, 2 + len(got))), "what it did get is in order and gap-free"
                assert len(got) < len(publisher.published)
            assert await app.metric("dashboard_api_slow_consumer_disconnects_total") == 1

    run(scenario())


async def _true(condition: bool) -> bool:
    return condition


def test_ping_pong(settings: DashboardApiSettings) -> None:
    async def scenario() -> None:
        async with serving(settings) as app, app.ws() as ws:
            await send(ws, {"type": "ping"})
            assert await receive(ws) == {"type": "pong"}
            assert await app.metric("dashboard_api_ws_messages_sent_total", {"type": "pong"}) == 1

    run(scenario())


def test_shutdown_closes_websockets_with_1001(settings: DashboardApiSettings, cache: Cache) -> None:
    cache.put("AAPL", 1)

    async def scenario() -> None:
        async with serving(settings) as app, app.ws() as ws:
            await subscribe(ws, "AAPL")
            await app.stop()
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "server shutting down")

    run(scenario())


def test_the_relay_reconnects_and_resyncs_its_clients(
    settings: DashboardApiSettings, redis_settings: RedisSettings, redis_client: redis.Redis, cache: Cache
) -> None:
    cache.put("AAPL", 1)
    relay_name = f"dashboard_api-relay:{redis_settings.updates_channel}"

    async def scenario() -> None:
        async with serving(settings) as app, app.ws() as ws:
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
            seen = []
            while not seen or seen[-1] != ("update", 3):
                message = await receive(ws)
                if message["type"] == "snapshot":
                    seen.append(("snapshot", versions(message)["AAPL"]))
                else:
                    seen.append(("update", message["version"]))
            # Version 2 arrives one way or the other (the resync snapshot, or an update if the relay
            # was back in time), and nothing goes backwards.
            assert seen in (
                [("snapshot", 2), ("update", 3)],
                [("snapshot", 1), ("update", 2), ("update", 3)],
                [("update", 2), ("snapshot", 2), ("update", 3)],
            ), seen
            assert await drain_until_pong(ws) == []

    run(scenario())


async def _metric_at_least(app: App, name: str, value: float) -> bool:
    return await app.metric(name) >= value
