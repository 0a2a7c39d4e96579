"""dashboard_api served by uvicorn on a free port, against the real Redis and PostgreSQL, and
the client side of its protocol, for the integration tests.

States are written exactly as cache_updater writes them: its own Lua script (hash, instruments
set, history stream and PUBLISH, atomically, only if newer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from services.cache_updater.apply import StateScript, cache_stamp, prepare
from services.cache_updater.scripts import run_pipeline
from services.dashboard_api.server import build_server
from services.dashboard_api.settings import DashboardApiSettings
from tapewire.keys import RedisKeys
from tapewire.settings import PostgresSettings, RedisSettings
from tapewire.v1 import market_pb2 as pb

WAIT_S = 10.0


class Cache:
    """Writes states into Redis exactly as cache_updater does."""

    def __init__(self, client: redis.Redis, redis_settings: RedisSettings, history_length: int = 100) -> None:
        self._keys = RedisKeys.from_settings(redis_settings)
        self._client = client
        self._script = StateScript(self._keys)
        self._history_length = history_length

    def put(self, instrument: str, version: int, **fields: Any) -> bool:
        fields.setdefault("venue", "XTST")
        state = pb.InstrumentState(instrument=instrument, version=version, **fields)
        state.times.ingest_ns = state.times.ingest_ns or time.time_ns()
        stamp = cache_stamp(time.time_ns())
        change = prepare(state, state.SerializeToString(), self._keys, stamp, self._history_length)
        calls, results = run_pipeline(
            self._client, [self._script.script], lambda pipe: self._script.queue([change], pipe)
        )
        return StateScript.applied(results[:calls]) == [1]


@dataclass
class App:
    http: httpx.AsyncClient
    port: int
    grpc_port: int | None
    stop: Callable[[], Awaitable[None]]
    listener: socket.socket

    async def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        response = await self.http.get("/metrics")
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and (labels is None or sample.labels == labels):
                    return sample.value
        raise AssertionError(f"metric {name} {labels or ''} not exposed")

    def url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws{'?' + query if query else ''}"

    @contextlib.asynccontextmanager
    async def ws(self, query: str = "", **options: Any) -> AsyncIterator[ClientConnection]:
        """A connected client past the `welcome` message."""
        async with connect(self.url(query), proxy=None, open_timeout=WAIT_S, **options) as ws:
            welcome = await receive(ws)
            assert welcome["type"] == "welcome", welcome
            yield ws

    def raw_ws(self, query: str = "", **options: Any) -> Any:
        """A connection as the server left it (welcome unread, or closed at once)."""
        return connect(self.url(query), proxy=None, open_timeout=WAIT_S, **options)


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
            yield App(http, port, settings.grpc_port if settings.grpc_enabled else None, stop, listener)
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


async def send(ws: ClientConnection, message: dict[str, Any] | str | bytes) -> None:
    await ws.send(message if isinstance(message, str | bytes) else json.dumps(message))


async def subscribe(ws: ClientConnection, *instruments: str, **fields: Any) -> dict[str, Any]:
    await send(ws, {"type": "subscribe", "instruments": list(instruments), **fields})
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


def make_settings(redis: RedisSettings, postgres: PostgresSettings, **overrides: Any) -> DashboardApiSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "max_instruments_per_request": 3,
        "max_bars_limit": 50,
        "close_timeout_s": 5.0,
        "shutdown_grace_s": 5.0,
        "grpc_enabled": False,
        "alerts_enabled": False,
        **overrides,
    }
    return DashboardApiSettings(redis=redis, postgres=postgres, **values)


async def true(condition: bool) -> bool:
    """`condition` as the awaitable `eventually` polls."""
    return condition
