"""Protocol v1 (docs/websocket.md) against the real Redis: resume, throttles, liveness, limits,
encodings, auth, admin endpoints, gRPC and several instances."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import jwt
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tapewire.auth import AuthSettings
from tapewire.settings import PostgresSettings, RedisSettings
from tapewire.v1 import dashboard_pb2, dashboard_pb2_grpc, stream_pb2
from tests.integration.dashboard_support import (
    Cache,
    eventually,
    make_settings,
    receive,
    send,
    serving,
    subscribe,
    true,
    versions,
)
from tools.isolation import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.anyio]

SECRET = "test-secret-that-is-long-enough-for-hs256"


class Publisher:
    """Publishes versions of some instruments from a thread at about `rate` per second each."""

    def __init__(self, cache: Cache, instruments: list[str], first: int = 1, rate: float = 500) -> None:
        self.next = dict.fromkeys(instruments, first)
        self._cache = cache
        self._pause = 1.0 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self.failures: list[BaseException] = []

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self.failures, self.failures

    def last(self, instrument: str) -> int:
        return self.next[instrument] - 1

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for instrument, version in self.next.items():
                    self._cache.put(instrument, version, last_price=str(100 + version % 50))
                    self.next[instrument] = version + 1
                time.sleep(self._pause)
        except BaseException as exc:  # reported on exit
            self.failures.append(exc)


class Follower:
    """A client's view: the last version per instrument, and every rule broken."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.problems: list[str] = []
        self.updates = 0

    def apply(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "snapshot":
            for state in message["states"]:
                self.last[state["instrument"]] = state["version"]
            for name, span in message["resumed"].items():
                if span["from"] != self.last.get(name, 0) + 1:
                    self.problems.append(f"resumed {name} at {span['from']}, had {self.last.get(name)}")
        elif kind == "update":
            self.updates += 1
            name, version = message["instrument"], message["version"]
            if version != self.last.get(name, 0) + 1:
                self.problems.append(f"{name}: v{version} after v{self.last.get(name)}")
            self.last[name] = version
        elif kind in ("error", "conflated"):
            self.problems.append(str(message))

    async def read(self, ws: ClientConnection, count: int) -> None:
        target = self.updates + count
        while self.updates < target:
            self.apply(await receive(ws))


def token(sub: str, roles: list[str] | None = None, secret: str = SECRET, expires_in: int = 300) -> str:
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + expires_in}
    if roles is not None:
        claims["roles"] = roles
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def publisher_cache(redis_client: redis.Redis, redis_settings: RedisSettings) -> Cache:
    return Cache(redis_client, redis_settings, history_length=100_000)


# -- resume -----------------------------------------------------------------------------------


async def test_resume_after_a_forced_disconnect_under_load_has_no_gap_and_no_repeat(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings, publisher_cache: Cache
) -> None:
    settings = make_settings(redis_settings, postgres_settings)
    follower = Follower()

    with Publisher(publisher_cache, ["R1", "R2"]):
        async with asyncio.timeout(80):
            async with serving(settings) as app:
                for round_ in range(3):
                    async with app.ws() as ws:
                        since = dict(follower.last)
                        follower.apply(await subscribe(ws, "R1", "R2", since=since or None))
                        await follower.read(ws, 300)
                        listing = (await app.http.get("/admin/connections")).json()
                        (connection,) = listing["connections"]
                        # An operator's disconnect: the client is cut off mid-stream.
                        cut = await app.http.post(
                            f"/admin/connections/{connection['connection_id']}/disconnect"
                        )
                        assert cut.status_code == 200
                        with pytest.raises(ConnectionClosed) as closed:
                            while True:
                                follower.apply(await receive(ws))
                        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4010, round_
                    await asyncio.sleep(0.2)  # versions go by while it is away
    assert follower.problems == []
    assert follower.updates >= 900


async def test_resume_on_another_instance_and_each_instance_subscribes_only_to_its_clients(
    redis_settings: RedisSettings,
    postgres_settings: PostgresSettings,
    publisher_cache: Cache,
    redis_client: redis.Redis,
) -> None:
    settings = make_settings(redis_settings, postgres_settings)
    follower = Follower()
    channel = f"{redis_settings.updates_channel}:"

    def subscribers(instrument: str) -> int:
        ((_, count),) = redis_client.pubsub_numsub(channel + instrument)
        return int(count)

    with Publisher(publisher_cache, ["S1", "S2"]):
        async with asyncio.timeout(80):
            async with serving(settings) as first, serving(settings) as second:
                async with first.ws() as ws:
                    follower.apply(await subscribe(ws, "S1"))
                    await follower.read(ws, 200)
                    assert (subscribers("S1"), subscribers("S2")) == (1, 0)
                    assert (await first.http.get("/admin/connections")).json()["relay"]["channels"] == 1
                    assert (await second.http.get("/admin/connections")).json()["relay"]["channels"] == 0
                await asyncio.sleep(0.2)
                async with second.ws() as ws:
                    follower.apply(await subscribe(ws, "S1", since={"S1": follower.last["S1"]}))
                    await follower.read(ws, 200)
                    await eventually(
                        lambda: true(subscribers("S1") == 1), "the first instance to unsubscribe"
                    )
    assert follower.problems == []


async def test_resume_beyond_the_history_gets_a_fresh_state_and_says_so(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings, redis_client: redis.Redis
) -> None:
    settings = make_settings(redis_settings, postgres_settings)
    short = Cache(redis_client, redis_settings, history_length=5)
    for version in range(1, 301):
        short.put("H", version)

    async with asyncio.timeout(80):
        async with serving(settings) as app, app.ws() as ws:
            snapshot = await subscribe(ws, "H", "NEW", since={"H": 10, "NEW": 0})
            assert snapshot["gaps"] == ["H"]
            assert versions(snapshot) == {"H": 300}
            assert snapshot["resumed"] == {"NEW": {"from": 1, "to": 0}}
            # Within reach of the (approximately trimmed) history: replayed exactly.
            snapshot = await subscribe(ws, "H", since={"H": 298})
            # H was at 300 on this connection already: nothing to replay, nothing goes back.
            assert snapshot["resumed"] == {"H": {"from": 301, "to": 300}} and snapshot["gaps"] == []

        async with serving(settings) as app, app.ws() as ws:
            snapshot = await subscribe(ws, "H", since={"H": 298})
            assert snapshot["resumed"] == {"H": {"from": 299, "to": 300}}
            assert [(await receive(ws))["version"] for _ in range(2)] == [299, 300]
            assert await app.metric("dashboard_api_replayed_updates_total") == 2


# -- throttles, liveness and limits -----------------------------------------------------------


async def test_max_rate_throttles_per_instrument_and_the_latest_state_wins(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings, publisher_cache: Cache
) -> None:
    settings = make_settings(redis_settings, postgres_settings)

    with Publisher(publisher_cache, ["T"], rate=200) as publisher:
        async with serving(settings) as app, app.ws() as ws:
            await subscribe(ws, "T", max_rate=4)
            started = time.monotonic()
            seen = []
            while time.monotonic() - started < 2.0:
                message = await receive(ws)
                assert message["type"] == "update", message
                seen.append(message["version"])
            count = len(seen)
        published = publisher.last("T")
    assert 4 <= count <= 11, seen  # ~4 per second over 2 s, plus the first
    assert seen == sorted(set(seen)), "increasing, never repeated"
    assert published > 100 and seen[-1] > published - 100, "the latest state wins"


async def test_heartbeat_and_idle_timeout(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings
) -> None:
    settings = make_settings(redis_settings, postgres_settings, heartbeat_s=0.2, idle_timeout_s=1.0)

    async with asyncio.timeout(80):
        async with serving(settings) as app, app.ws() as ws:
            heartbeat = await receive(ws)
            assert heartbeat["type"] == "heartbeat" and heartbeat["server_time_ns"] > 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    assert (await receive(ws))["type"] == "heartbeat"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4009
            # A client that pings stays.
            async with app.ws() as pinging:
                for _ in range(8):
                    await send(pinging, {"type": "ping"})
                    await asyncio.sleep(0.25)
                await send(pinging, {"type": "ping", "id": "last"})
                while (message := await receive(pinging))["type"] != "pong" or message.get("id") != "last":
                    pass


async def test_rate_limit_then_close_for_abuse(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings
) -> None:
    settings = make_settings(
        redis_settings, postgres_settings, max_messages_per_second=5, max_errors_per_minute=10
    )

    async with asyncio.timeout(80):
        async with serving(settings) as app, app.ws() as ws:
            for _ in range(30):
                await send(ws, {"type": "ping"})
            codes = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    message = await receive(ws)
                    codes.append(message.get("code", message["type"]))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert codes.count("pong") == 10  # the burst: twice the rate
            # Replies still queued when the connection is closed are not sent.
            assert 1 <= codes.count("rate_limited") <= 11
            assert await app.metric("dashboard_api_client_errors_total", {"code": "rate_limited"}) == 11


# -- encodings --------------------------------------------------------------------------------


async def test_protobuf_frames_and_compression_are_negotiated(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings, cache: Cache
) -> None:
    settings = make_settings(redis_settings, postgres_settings, ws_per_message_deflate=True)
    cache.put("P", 1, last_price="10.5")

    async with asyncio.timeout(80):
        async with serving(settings) as app:
            async with app.raw_ws(subprotocols=["tapewire.v1.protobuf"], compression="deflate") as ws:
                assert ws.subprotocol == "tapewire.v1.protobuf"
                assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
                welcome = stream_pb2.ServerMessage.FromString(await ws.recv())
                assert welcome.welcome.encoding == "protobuf"
                request = stream_pb2.ClientMessage(request_id="p1")
                request.subscribe.instruments.append("P")
                await ws.send(request.SerializeToString())
                reply = stream_pb2.ServerMessage.FromString(await ws.recv())
                assert reply.snapshot.request_id == "p1"
                assert [(s.instrument, s.version, s.last_price) for s in reply.snapshot.states] == [
                    ("P", 1, "10.5")
                ]
                cache.put("P", 2)
                update = stream_pb2.ServerMessage.FromString(await ws.recv())
                assert update.update.state.version == 2 and update.update.state.times.sent_ns > 0
                await ws.send(b"\xff\xff")  # JSON text still works; garbage binary is refused
                error = stream_pb2.ServerMessage.FromString(await ws.recv())
                assert error.error.code == "invalid_protobuf"
            async with app.raw_ws("encoding=xml") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


# -- auth and admin ---------------------------------------------------------------------------


@pytest.fixture
def auth_settings(redis_settings: RedisSettings, postgres_settings: PostgresSettings) -> Iterator[Any]:
    yield make_settings(
        redis_settings,
        postgres_settings,
        auth=AuthSettings(hs256_secret=SecretStr(SECRET)),
        grpc_enabled=True,
        grpc_host="127.0.0.1",
        grpc_port=free_port(),
    )


async def test_auth_refuses_the_unauthenticated_everywhere(auth_settings: Any, cache: Cache) -> None:
    cache.put("A", 1)

    async with asyncio.timeout(80):
        async with serving(auth_settings) as app:
            for query, headers in [
                ("", None),
                ("token=garbage", None),
                (f"token={token('alice', secret='another-secret-of-sufficient-length!')}", None),
                (f"token={token('alice', expires_in=-60)}", None),
                ("", {"Authorization": "Basic abc"}),
            ]:
                async with app.raw_ws(query, additional_headers=headers) as ws:
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.recv()
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001, query
            async with app.ws(f"token={token('alice')}") as ws:
                assert versions(await subscribe(ws, "A")) == {"A": 1}
            async with app.ws(additional_headers={"Authorization": f"Bearer {token('bob')}"}) as ws:
                assert versions(await subscribe(ws, "A")) == {"A": 1}

            assert (await app.http.get("/api/instruments")).status_code == 401
            user = {"Authorization": f"Bearer {token('alice')}"}
            admin = {"Authorization": f"Bearer {token('root', ['admin'])}"}
            assert (await app.http.get("/api/instruments", headers=user)).json() == {
                "instruments": ["A"],
                "details": [],
            }
            assert (await app.http.get("/admin/connections", headers=user)).status_code == 403
            assert (await app.http.get("/admin/connections", headers=admin)).status_code == 200
            for path in ("/healthz", "/readyz", "/metrics"):
                assert (await app.http.get(path)).status_code == 200, path
            assert await app.metric("dashboard_api_auth_failures_total", {"transport": "ws"}) == 5

            assert app.grpc_port is not None
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
                stub = dashboard_pb2_grpc.DashboardStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.ListInstruments(dashboard_pb2.ListInstrumentsRequest())
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                listed = await stub.ListInstruments(
                    dashboard_pb2.ListInstrumentsRequest(),
                    metadata=[("authorization", f"Bearer {token('a')}")],
                )
                assert list(listed.instruments) == ["A"]
                health = health_pb2_grpc.HealthStub(channel)
                reply = await health.Check(health_pb2.HealthCheckRequest(service="tapewire.v1.Dashboard"))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_admin_pause_resume_and_drain(dashboard_settings: Any, publisher_cache: Cache) -> None:
    follower = Follower()

    with Publisher(publisher_cache, ["D"], rate=200):
        async with asyncio.timeout(80):
            async with serving(dashboard_settings) as app:
                async with app.ws() as ws:
                    follower.apply(await subscribe(ws, "D"))
                    await follower.read(ws, 50)
                    assert (await app.http.post("/admin/relay/pause")).json() == {"paused": True}
                    await asyncio.sleep(0.3)
                    # Drain what was on its way before the pause, then nothing comes.
                    with pytest.raises(AssertionError, match="no message"):
                        while True:
                            follower.apply(await receive(ws, timeout_s=0.5))
                    assert (await app.http.post("/admin/relay/resume")).json() == {"paused": False}
                    # The pause is caught up from history: no gap.
                    await follower.read(ws, 100)
                    drain = await app.http.post("/admin/drain", params={"period_s": 0})
                    assert drain.status_code == 202
                    with pytest.raises(ConnectionClosed) as closed:
                        while True:
                            follower.apply(await receive(ws))
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
                assert (await app.http.get("/readyz")).status_code == 503
                async with app.raw_ws() as refused:
                    with pytest.raises(ConnectionClosed) as closed:
                        await refused.recv()
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    assert follower.problems == []


# -- gRPC -------------------------------------------------------------------------------------


async def test_grpc_subscribe_resumes_like_the_websocket(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings, cache: Cache
) -> None:
    settings = make_settings(
        redis_settings, postgres_settings, grpc_enabled=True, grpc_host="127.0.0.1", grpc_port=free_port()
    )
    for version in range(1, 11):
        cache.put("G", version)

    async with asyncio.timeout(80):
        async with (
            serving(settings) as app,
            grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
        ):
            stub = dashboard_pb2_grpc.DashboardStub(channel)
            snapshot = await stub.GetSnapshot(dashboard_pb2.GetSnapshotRequest(instruments=["G", "NONE"]))
            assert [s.version for s in snapshot.states] == [10] and list(snapshot.missing) == ["NONE"]
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.GetSnapshot(dashboard_pb2.GetSnapshotRequest(instruments=["no spaces"]))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            call = stub.Subscribe(stream_pb2.SubscribeRequest(instruments=["G"], since={"G": 7}))
            first = await call.read()
            assert first.WhichOneof("kind") == "snapshot"
            span = first.snapshot.resumed["G"]
            assert (span.from_version, span.to_version) == (8, 10)
            got = [(await call.read()).update.state.version for _ in range(3)]
            cache.put("G", 11)
            got.append((await call.read()).update.state.version)
            assert got == [8, 9, 10, 11]
            call.cancel()

            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            responses = reflection.ServerReflectionInfo(iter([request]))
            async for response in responses:
                names = {service.name for service in response.list_services_response.service}
                assert "tapewire.v1.Dashboard" in names
                break
