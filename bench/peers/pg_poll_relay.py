"""The legacy baseline, "the design tapewire replaces": a relay that polls PostgreSQL on a
1-second timer and pushes what changed to WebSocket clients.

    DATABASE_URL=... TAPEWIRE_PG_SCHEMA=... python -m bench.peers.pg_poll_relay --port 8765

It reads the same table history_writer keeps up to date (`instrument_state`,
one row per instrument, upserted with a growing `version`), so it sees exactly what the
durable store holds, and it is implemented plainly and fairly:

- clients send `{"subscribe": ["AAPL", ...]}` (each message adds to what they watch) and get
  `{"subscribed": [...]}` back;
- every `--interval` seconds (1.0; on a fixed schedule, so query time does not stretch the
  period) ONE query fetches the rows whose `updated_at` is after the newest one already seen
  (minus a second, for a writer transaction that started before and committed after the last
  poll: `updated_at` is its start time). The relay keeps the last version it saw of every
  instrument (read at start-up), so a re-read row is dropped without decoding, and a client
  gets what changes after it subscribed, never old state;
- a changed row nobody watches is not decoded; a watched one's `InstrumentState` is decoded
  once, turned into one JSON text message (`instrument`, `version`, `ingest_ns`, prices), and
  that message is written to every subscriber of the instrument with `websockets.broadcast`
  (no per-client encoding).

It polls even with no subscriber, so what it has seen stays current. `instrument_state` has no
index on `updated_at`, so each poll scans the table: a few milliseconds for thousands of
instruments (the relay logs the average query time when it stops).

What it cannot do by design: deliver a change sooner than the next poll, or deliver every
version (only the newest per period). So read its latencies with its delivery ratio: for an
instrument that changes less than once a period, latency is spread over 0..period (half on
average) plus the query; for one that changes many times a period, the version delivered is the
newest, only a fraction of the period old, and every version in between is never delivered.

`measure(url, instruments, seconds)` is the matching client: end-to-end latencies in ms
(receive wall time − `times.ingest_ns`) of every update received.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from google.protobuf.message import DecodeError
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from tapewire.db import connect_kwargs
from tapewire.logs import configure_logging
from tapewire.settings import PostgresSettings
from tapewire.v1 import market_pb2 as pb

log = logging.getLogger("bench.pg_poll_relay")

_CURRENT = "SELECT instrument, version, updated_at FROM instrument_state"
_CHANGED = "SELECT instrument, version, updated_at, state FROM instrument_state WHERE updated_at > %s"
# Re-read this much before the newest change seen: `updated_at` is now() of the writer's
# transaction, i.e. its start, and a transaction may commit after a poll that began later.
_LATE_COMMIT = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PollRelay:
    """Subscriptions, the last version seen per instrument, and the poll loop."""

    def __init__(self, postgres: PostgresSettings, interval_s: float = 1.0) -> None:
        self._postgres = postgres
        self._interval_s = interval_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._subscribers: dict[str, set[ServerConnection]] = defaultdict(set)
        self._seen: dict[str, int] = {}  # instrument -> the last version read
        self._newest: datetime | None = None  # the newest updated_at read; None: not started
        self.polls = 0
        self.sent = 0
        self.query_ms_total = 0.0

    async def handle(self, ws: ServerConnection) -> None:
        """One client: read subscribe messages until it leaves."""
        watching: set[str] = set()
        try:
            async for raw in ws:
                try:
                    request = json.loads(raw)
                    wanted = request["subscribe"]
                    if not isinstance(wanted, list) or not all(isinstance(i, str) for i in wanted):
                        raise TypeError("subscribe takes a list of instrument names")
                except (ValueError, KeyError, TypeError) as exc:
                    await ws.send(json.dumps({"error": f"bad request: {exc}"}))
                    continue
                for instrument in wanted:
                    watching.add(instrument)
                    self._subscribers[instrument].add(ws)
                await ws.send(json.dumps({"subscribed": sorted(watching)}))
        except ConnectionClosed:
            pass
        finally:
            for instrument in watching:
                subscribers = self._subscribers.get(instrument)
                if subscribers is not None:
                    subscribers.discard(ws)
                    if not subscribers:
                        del self._subscribers[instrument]

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every interval, on a fixed schedule, until `stop` is set."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            next_at += self._interval_s
            try:
                await self.poll_once()
            except psycopg.Error as exc:
                log.warning("poll failed", extra={"error": str(exc)})
                await self._close()
            now = loop.time()
            if now > next_at:  # overran: skip the slots missed rather than bunch polls up
                next_at += (now - next_at) // self._interval_s * self._interval_s + self._interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), next_at - now)
        await self._close()

    async def poll_once(self) -> int:
        """One query; push every changed instrument to its subscribers. Returns messages sent."""
        conn = await self._connection()
        if self._newest is None:  # start-up: what exists now is not a change
            cursor = await conn.execute(_CURRENT)
            self._newest = _EPOCH
            for instrument, version, updated_at in await cursor.fetchall():
                self._seen[instrument] = version
                self._newest = max(self._newest, updated_at)
            return 0
        started = time.perf_counter()
        cursor = await conn.execute(_CHANGED, (self._newest - _LATE_COMMIT,))
        rows = await cursor.fetchall()
        self.query_ms_total += (time.perf_counter() - started) * 1e3
        self.polls += 1
        sent = 0
        for instrument, version, updated_at, state_bytes in rows:
            self._newest = max(self._newest, updated_at)
            if version <= self._seen.get(instrument, -1):
                continue  # re-read from the late-commit window
            self._seen[instrument] = version
            subscribers = self._subscribers.get(instrument)
            if not subscribers:
                continue
            try:
                state = pb.InstrumentState.FromString(state_bytes)
            except DecodeError:
                log.error("undecodable state", extra={"instrument": instrument, "version": version})
                continue
            message = json.dumps(
                {
                    "instrument": instrument,
                    "version": version,
                    "ingest_ns": state.times.ingest_ns,
                    "last_price": state.last_price,
                    "bid_price": state.bid_price,
                    "ask_price": state.ask_price,
                }
            )
            broadcast(subscribers, message)
            sent += len(subscribers)
        self.sent += sent
        return sent

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                **connect_kwargs(self._postgres), autocommit=True, connect_timeout=5
            )
        return self._conn

    async def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None


async def serve_relay(port: int, host: str, postgres: PostgresSettings, interval_s: float) -> None:
    """Run the relay until SIGTERM or SIGINT."""
    relay = PollRelay(postgres, interval_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # No permessage-deflate, like dashboard_api by default: it compresses every message once
    # per connection, which would charge the fan-out for CPU the comparison is not about.
    async with serve(relay.handle, host, port, max_size=2**16, compression=None):
        log.info("listening", extra={"port": port, "schema": postgres.schema_name, "interval_s": interval_s})
        await relay.run(stop)
    log.info(
        "stopped",
        extra={
            "polls": relay.polls,
            "sent": relay.sent,
            "query_ms_avg": round(relay.query_ms_total / relay.polls, 3) if relay.polls else None,
        },
    )


async def measure(url: str, instruments: list[str], seconds: float) -> list[float]:
    """Subscribe to `instruments` at `url` for `seconds`; the end-to-end latency in ms (receive
    wall time − the state's `times.ingest_ns`) of every update received."""
    latencies: list[float] = []
    # max_queue=None: reading never pauses, so the closing handshake at the end is not stuck
    # behind unread updates (with a full queue it waits out close_timeout).
    async with connect(url, max_size=2**20, max_queue=None, close_timeout=2, compression=None) as ws:
        await ws.send(json.dumps({"subscribe": instruments}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            received_ns = time.time_ns()
            message = json.loads(raw)
            ingest_ns = message.get("ingest_ns")
            if isinstance(ingest_ns, int) and ingest_ns > 0:
                latencies.append((received_ns - ingest_ns) / 1e6)
    return latencies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers.pg_poll_relay",
        description="Legacy baseline: poll PostgreSQL's instrument_state every second, push changes "
        "over WebSocket. PostgreSQL from DATABASE_URL and TAPEWIRE_PG_SCHEMA.",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--interval", type=float, default=1.0, help="poll period in seconds (1.0)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging("pg_poll_relay", args.log_level)
    logging.getLogger("websockets").setLevel(logging.WARNING)  # not a line per connection
    asyncio.run(serve_relay(args.port, args.host, PostgresSettings(), args.interval))


if __name__ == "__main__":
    main()
