"""Capacity under crowds: thousands of clients at once, and thousands of sockets that never speak.

Many honest clients at once must all be served (Redis connections are pooled and waited for,
never refused), and sockets that send nothing must neither pile up nor starve the others: the
server closes them after its handshake deadline and caps connections per client address
(services/dashboard_api/connection_limits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.dashboard_api.settings import DashboardApiSettings
from tests.integration.dashboard_support import (
    WAIT_S,
    App,
    Cache,
    eventually,
    receive,
    serving,
    subscribe,
)

pytestmark = [pytest.mark.hostile, pytest.mark.timeout(120), pytest.mark.anyio]

SUBSCRIBERS = 2_000
SNAPSHOT_REQUESTS = 1_000
IDLE_SOCKETS = 3_000
# Idle sockets come from other loopback addresses, so that the per-address cap they run into
# is theirs and not that of the honest clients on 127.0.0.1.
IDLE_ADDRESS = "127.0.0.2"
CAPPED_ADDRESS = "127.0.0.3"


@pytest.fixture(autouse=True)
def _many_descriptors() -> None:
    """Both ends of thousands of sockets live in this one process."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    needed = 2 * (SUBSCRIBERS + IDLE_SOCKETS) + 1_000
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")


def _roomy(settings: DashboardApiSettings, **overrides: object) -> DashboardApiSettings:
    """The hostile suite's settings with the server's own caps above this test's crowd."""
    values = {"max_connections": 10_000, "max_connections_per_ip": 10_000, **overrides}
    return settings.model_copy(update=values)


async def test_thousands_of_subscribers_at_once_all_get_a_snapshot(
    dashboard_settings: DashboardApiSettings, cache: Cache
) -> None:
    cache.put("AAA", 1, last_price="101")
    closes: Counter[int | None] = Counter()

    async def one_subscriber(app: App) -> bool:
        try:
            async with connect(app.url(), proxy=None, open_timeout=30, close_timeout=1) as ws:
                assert (await receive(ws, 30))["type"] == "welcome"
                await ws.send('{"type": "subscribe", "instruments": ["AAA"]}')
                answer = await receive(ws, 30)
                return bool(answer["type"] == "snapshot" and answer["states"][0]["version"] == 1)
        except ConnectionClosed as exc:
            closes[exc.rcvd.code if exc.rcvd else None] += 1
            return False

    async with asyncio.timeout(80):
        async with serving(_roomy(dashboard_settings)) as app:
            started = time.monotonic()
            served = await asyncio.gather(*(one_subscriber(app) for _ in range(SUBSCRIBERS)))
            elapsed = time.monotonic() - started
            assert sum(served) == SUBSCRIBERS, f"{sum(served)} snapshots in {elapsed:.1f}s, closes {closes}"


async def test_a_thousand_snapshot_requests_at_once_all_answer_200(
    dashboard_settings: DashboardApiSettings, cache: Cache
) -> None:
    cache.put("AAA", 1, last_price="101")

    async with asyncio.timeout(80):
        async with serving(_roomy(dashboard_settings)) as app:
            started = time.monotonic()
            answers = await asyncio.gather(
                *(_get(app.port, "/api/snapshot?instruments=AAA") for _ in range(SNAPSHOT_REQUESTS))
            )
            elapsed = time.monotonic() - started
            statuses = Counter(status for status, _body in answers)
            refusals = {body for status, body in answers if status != 200}
            assert statuses == {200: SNAPSHOT_REQUESTS}, (f"{elapsed:.1f}s", statuses, refusals)


async def _get(port: int, target: str, address: str = "127.0.0.1") -> tuple[int, bytes]:
    """A bare HTTP/1.1 GET (httpx costs more CPU than the server does): status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        response = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_idle_sockets_are_closed_at_the_handshake_deadline_and_starve_no_one(
    dashboard_settings: DashboardApiSettings, cache: Cache
) -> None:
    cache.put("AAA", 1, last_price="101")

    async with asyncio.timeout(80):
        async with (
            serving(_roomy(dashboard_settings, handshake_timeout_s=1.0)) as app,
            _sockets(app.port, IDLE_SOCKETS, IDLE_ADDRESS) as idle,
        ):
            opened = time.monotonic()
            held = await app.metric("dashboard_api_open_connections")
            assert (await app.http.get("/healthz")).status_code == 200
            async with app.ws() as ws:
                await subscribe(ws, "AAA")
            # Bytes that never finish a request head do not move the deadline.
            trickle = asyncio.create_task(_trickle(app.port))
            outcomes = await asyncio.gather(*(_outcome(reader, 10) for reader, _writer in idle))
            closed_after = time.monotonic() - opened
            assert Counter(outcomes) == {"closed": IDLE_SOCKETS}, (held, Counter(outcomes))
            assert closed_after < 1.0 + 5, closed_after
            assert await asyncio.wait_for(trickle, 10) < 1.0 + 2
            assert await app.metric("dashboard_api_handshake_timeouts_total") == IDLE_SOCKETS + 1


async def test_connections_beyond_the_per_address_cap_are_refused_at_once(
    dashboard_settings: DashboardApiSettings,
) -> None:
    cap = 50

    async with asyncio.timeout(80):
        async with serving(_roomy(dashboard_settings, max_connections_per_ip=cap)) as app:
            # A WebSocket gives its slot back when it closes, not only plain HTTP connections.
            async with connect(
                app.url(), proxy=None, open_timeout=WAIT_S, local_addr=(CAPPED_ADDRESS, 0)
            ) as ws:
                assert (await receive(ws))["type"] == "welcome"
            await eventually(lambda: _open_connections(app, 1), "the WebSocket's slot to be released")
            async with _sockets(app.port, cap + 10, CAPPED_ADDRESS) as capped:
                outcomes = await asyncio.gather(*(_outcome(reader, 1.5) for reader, _writer in capped))
                assert Counter(outcomes) == {"open": cap, "refused": 10}, Counter(outcomes)
                assert (await app.http.get("/healthz")).status_code == 200  # another address
                assert await app.metric("dashboard_api_refused_connections_total", {"cap": "address"}) == 10
            await eventually(lambda: _open_connections(app, 1), "the idle sockets' slots to be released")
            assert (await _get(app.port, "/healthz", CAPPED_ADDRESS))[0] == 200


@contextlib.asynccontextmanager
async def _sockets(
    port: int, count: int, address: str
) -> AsyncIterator[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """`count` connections from `address` that never send a byte, closed on exit."""
    opened = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0)) for _ in range(count))
    )
    try:
        yield opened
    finally:
        for _reader, writer in opened:
            writer.close()


async def _outcome(reader: asyncio.StreamReader, wait_s: float) -> str:
    """What the server did with a silent connection within `wait_s`: kept it open, closed it
    without a word, or refused it with the documented 503."""
    try:
        answer = await asyncio.wait_for(reader.read(), wait_s)
    except TimeoutError:
        return "open"
    except ConnectionResetError:
        return "closed"
    if not answer:
        return "closed"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and json.loads(body)["code"] == "too_many_connections", answer
    return "refused"


async def _trickle(port: int) -> float:
    """Seconds until the server closes a connection that sends a header line every 0.2 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
    try:
        while not reader.at_eof():
            writer.write(b"X-Slow: yes\r\n")
            with contextlib.suppress(TimeoutError):
                assert await asyncio.wait_for(reader.read(1), 0.2) == b""
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def _open_connections(app: App, count: int) -> bool:
    """True once the server counts `count` open connections (the metrics request's own is one)."""
    return await app.metric("dashboard_api_open_connections") == count
