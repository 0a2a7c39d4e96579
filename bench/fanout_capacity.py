"""Fan-out capacity: delivered updates/s per server core and latency, dashboard_api against peers.

    python -m bench.fanout_capacity --connections 100,1000 --repetitions 1 --seconds 10

For each contender and connection count, one trial:

1. the server starts on a free port with Redis names of its own: dashboard_api (through
   tools.suite.Suite, as `make run` starts it; alerts and gRPC off, so it needs no Kafka), the
   python-socketio peer (bench/peers/socketio_server.py: AsyncRedisManager, a room per
   instrument) or Centrifugo (bench/peers/centrifugo.py: Redis engine, HTTP publish API);
2. a publisher process gets ready: for dashboard_api it writes each state to Redis exactly as
   cache_updater does (services/cache_updater/apply.py's `prepare` and Lua script, in one
   pipeline per tick, history included, so versions go up by one and the relay sees real
   updates; every instrument is seeded at version 1 first); for the peers it sends the same
   state, as JSON (the JSON dashboard_api sends, of about the same size), through the peer's own
   publish path: a write-only AsyncRedisManager emit to the instrument's room, or Centrifugo's
   /api/batch;
3. N WebSocket connections are opened from a few client processes and each subscribes to
   `per_client` of `instruments` instruments, spread so that every instrument has the same
   number of watchers (when N * per_client is a multiple of instruments);
4. the publisher sends `offered_rate` states/s in all (round-robin over the instruments), each
   stamped with its publish wall time in ns (`times.cached_ns` of the state); after a warm-up,
   for `seconds`, the clients count the updates they receive and the latency receive time -
   publish time, while ProcessSampler reads the CPU seconds and peak RSS of the server, of each
   client process, of the publisher and of Redis.

The clients are a minimal WebSocket client on asyncio Protocols (uvloop): frames are parsed
from the byte stream and the publish stamp is read from the text without decoding the JSON, so
that a Python client costs a few microseconds per update. Each contender's client speaks its
real protocol: tapewire's protocol v1 (JSON encoding, `batch=true`: several updates may share a
frame, as several Centrifugo replies may), Socket.IO 5 over Engine.IO 4 (WebSocket
transport, no polling), Centrifugo's JSON protocol (several replies may share one frame,
newline-separated, and each counts). The three servers on one machine share its cores with
the clients, the publisher and Redis: the result says when the clients or the machine were
saturated, in which case the delivered rate is a floor, not the server's capacity.

Per trial: delivered updates/s (sum over clients, received in the window), the expected rate
(states published in the window x watchers), server CPU cores (CPU seconds / window), delivered
updates/s per server core, latency p50/p99/p99.9/max, peak RSS, client and publisher CPU.
`run()` gives medians over repetitions and, per connection count, the ratios dashboard_api /
socketio and dashboard_api / centrifugo of each repetition (contenders run back to back, in an
order that rotates per repetition), and their medians.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import hashlib
import json
import logging
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import redis
import uvloop

from bench.fdlimit import raise_fd_limit
from bench.measure import ProcessSampler, median, summarize_ms, usage_to_json
from bench.ready import NotReady, wait_http_ok
from services.cache_updater.apply import StateScript, cache_stamp, prepare
from services.dashboard_api.rest import views
from tapewire.keys import RedisKeys
from tapewire.v1 import market_pb2 as pb
from tools.isolation import free_port

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / ".local" / "bench" / "logs"
CONTENDERS = ("dashboard_api", "socketio", "centrifugo")
HOST = "127.0.0.1"
WARMUP_S = 2.0
DRAIN_S = 1.5
TICK_S = 0.005
EMIT_CONCURRENCY = 8
HISTORY_LENGTH = 1000  # REDIS_HISTORY_LENGTH's default: cache_updater appends every state
# A client process using this much of a core was busy enough to delay what it reads.
CLIENT_SATURATED_CORES = 0.85
# Delivering at least this share of what was offered counts as keeping up.
KEPT_UP = 0.98
# Processes outside the trial using this many cores made it noisy.
NOISY_CORES = 0.25
TARGET_PER_CORE = 40_000.0
TARGET_P99_MS = 50.0
TARGET_VS_SOCKETIO = 3.0
TARGET_VS_CENTRIFUGO = 1.0


# --------------------------------------------------------------------------------------------
# The minimal WebSocket client (RFC 6455, client side, no extensions)
# --------------------------------------------------------------------------------------------

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_STAMP = b'"cached_ns":'
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked as RFC 6455 requires of clients."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65_536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + mask + _unmask(payload, mask)


def _unmask(payload: bytes, mask: bytes) -> bytes:
    size = len(payload)
    if not size:
        return b""
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")


def publish_stamp(payload: bytes, start: int = 0) -> tuple[int, int]:
    """The publish time (ns) in the first `"cached_ns":` at or after `start`, and where it ends;
    (0, -1) when there is none."""
    at = payload.find(_STAMP, start)
    if at < 0:
        return 0, -1
    begin = at + len(_STAMP)
    if payload[begin : begin + 1] == b" ":
        begin += 1
    end = begin
    while end < len(payload) and 48 <= payload[end] <= 57:
        end += 1
    return (int(payload[begin:end]) if end > begin else 0), end


@dataclass
class ClientStats:
    """What one client process saw; latencies only for updates received inside the window."""

    window: tuple[int, int] = (2**63 - 1, 2**63 - 1)
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    in_window: int = 0
    in_window_bytes: int = 0  # of the updates' messages (a Centrifugo line, a Socket.IO packet)
    total: int = 0
    conflated_notices: int = 0
    conflated_dropped: int = 0
    server_closes: dict[int, int] = field(default_factory=dict)
    lost: int = 0  # connections that ended without us closing them
    errors: list[str] = field(default_factory=list)

    def update(self, published_ns: int, now_ns: int, size: int) -> None:
        self.total += 1
        start, end = self.window
        if start <= now_ns <= end:
            self.in_window += 1
            self.in_window_bytes += size
            self.latencies_ms.append((now_ns - published_ns) / 1e6)

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text[:300])


class WsClient(asyncio.Protocol):
    """One connection: handshake, frame parsing and control frames; `on_message` per message."""

    PATH = "/"

    def __init__(self, host: str, port: int, path: str, instruments: list[str], stats: ClientStats) -> None:
        self.host, self.port, self.path = host, port, path
        self.instruments = instruments
        self.stats = stats
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._key = base64.b64encode(os.urandom(16))
        self._buffer = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] | None = None
        self._closing = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but are one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self._key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        self._buffer += data
        if not self._upgraded and not self._handshake():
            return
        self._frames(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc!r}"))
        elif not self._closing:
            self.stats.lost += 1

    # -- frames -----------------------------------------------------------------------------

    def _handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        accept = base64.b64encode(hashlib.sha1(self._key + _WS_GUID).digest()).decode()
        if not head.startswith("HTTP/1.1 101") or accept not in head:
            self._fail(f"handshake refused: {head.splitlines()[0] if head else '?'}")
            return False
        self._upgraded = True
        self.on_open()
        return True

    def _frames(self, now: int) -> None:
        buffer = self._buffer
        size = len(buffer)
        pos = 0
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                header = 10
            mask = b""
            if second & 0x80:  # servers do not mask, but read it right if one does
                mask = bytes(buffer[pos + header : pos + header + 4])
                header += 4
            if size - pos < header + length:
                break
            payload = bytes(buffer[pos + header : pos + header + length])
            pos += header + length
            if mask:
                payload = _unmask(payload, mask)
            self._frame(first & 0x80, first & 0x0F, payload, now)
        if pos:
            del buffer[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes, now: int) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            if fin:
                self.on_message(payload, now)
            else:
                self._fragments = [payload]
        elif opcode == OP_CONT and self._fragments is not None:
            self._fragments.append(payload)
            if fin:
                message, self._fragments = b"".join(self._fragments), None
                self.on_message(message, now)
        elif opcode == OP_PING:
            self._write(ws_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.stats.server_closes[code] = self.stats.server_closes.get(code, 0) + 1
            if not self._closing:
                self._write(ws_frame(OP_CLOSE, payload[:2]))
            self._fail(f"closed by the server: {code} {payload[2:].decode(errors='replace')}")

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_text(self, text: str) -> None:
        self._write(ws_frame(OP_TEXT, text.encode()))

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        elif not self._closing:
            self.stats.error(reason)
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ws_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    # -- per protocol -----------------------------------------------------------------------

    def on_open(self) -> None:
        """The WebSocket is open."""

    def on_message(self, payload: bytes, now: int) -> None:
        raise NotImplementedError

    def keepalive(self) -> None:
        """Something the server counts as activity (for idle timeouts); most need nothing."""

    def _count(self, payload: bytes, now: int) -> None:
        """Each stamp in `payload` is one update (a frame may hold several), sharing its size."""
        stamps = []
        end = 0
        while True:
            published, end = publish_stamp(payload, end)
            if end < 0:
                break
            if published:
                stamps.append(published)
        for published in stamps:
            self.stats.update(published, now, len(payload) // len(stamps))


class TapewireClient(WsClient):
    """docs/websocket.md: welcome, subscribe, snapshot, then updates (JSON encoding), several per
    frame when they queue up (`batch=true`, as the dashboard connects)."""

    PATH = "/ws?encoding=json&batch=true"

    def on_message(self, payload: bytes, now: int) -> None:
        if payload.startswith(b'{"type":"update'):  # an update, or an `updates` frame of several
            self._count(payload, now)
        elif payload.startswith(b'{"type":"welcome"'):
            self.send_text(json.dumps({"type": "subscribe", "id": "s", "instruments": self.instruments}))
        elif payload.startswith(b'{"type":"snapshot"'):
            self._ready()
        elif payload.startswith(b'{"type":"conflated"'):
            message = json.loads(payload)
            self.stats.conflated_notices += 1
            self.stats.conflated_dropped += int(message.get("dropped", 0))
        elif payload.startswith(b'{"type":"error"'):
            self._fail(payload.decode(errors="replace"))

    def keepalive(self) -> None:
        self.send_text('{"type":"ping"}')


class SocketioClient(WsClient):
    """Engine.IO 4 over a WebSocket: open (0), namespace connect (40), an acked `subscribe`
    event (421 → 431), pings (2) answered with pongs (3), and `update` events (42)."""

    PATH = "/socket.io/?EIO=4&transport=websocket"

    def on_message(self, payload: bytes, now: int) -> None:
        if payload.startswith(b'42["update"'):
            self._count(payload, now)
        elif payload == b"2":
            self.send_text("3")
        elif payload.startswith(b"431"):
            ack = json.loads(payload[3:])
            if ack and isinstance(ack[0], dict) and ack[0].get("subscribed") == len(self.instruments):
                self._ready()
            else:
                self._fail(f"subscribe refused: {payload[:200]!r}")
        elif payload.startswith(b"40"):
            self.send_text("421" + json.dumps(["subscribe", self.instruments], separators=(",", ":")))
        elif payload.startswith(b"0"):
            self.send_text("40")
        elif payload.startswith(b"44") or payload.startswith(b"1"):
            self._fail(f"socket.io refused: {payload[:200]!r}")


class CentrifugoClient(WsClient):
    """Centrifugo's JSON protocol: connect, one subscribe per channel, pushes; an empty
    command `{}` is the server's ping and is answered with `{}`."""

    PATH = "/connection/websocket"

    def __init__(self, host: str, port: int, path: str, instruments: list[str], stats: ClientStats) -> None:
        super().__init__(host, port, path, instruments, stats)
        self._acks = 0

    def on_open(self) -> None:
        self.send_text('{"id":1,"connect":{}}')

    def on_message(self, payload: bytes, now: int) -> None:
        for line in payload.split(b"\n"):
            if line.startswith(b'{"push"'):
                self._count(line, now)
            elif line == b"{}":
                self.send_text("{}")
            elif b'"error"' in line:
                self._fail(f"centrifugo error: {line[:200]!r}")
            elif line.startswith(b'{"id":1,'):
                self.send_text(
                    "\n".join(
                        json.dumps({"id": index + 2, "subscribe": {"channel": name}})
                        for index, name in enumerate(self.instruments)
                    )
                )
            elif line.startswith(b'{"id":'):
                self._acks += 1
                if self._acks == len(self.instruments):
                    self._ready()


CLIENTS: dict[str, type[WsClient]] = {
    "dashboard_api": TapewireClient,
    "socketio": SocketioClient,
    "centrifugo": CentrifugoClient,
}


@dataclass(frozen=True)
class ClientSpec:
    contender: str
    host: str
    port: int
    path: str
    subscriptions: list[list[str]]  # one list of instruments per connection
    connect_concurrency: int = 50
    keepalive_s: float = 50.0


def client_process(conn: Connection, spec: ClientSpec) -> None:
    """A client process: its share of the connections, steered by the parent over `conn`."""
    raise_fd_limit()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    uvloop.run(_client_main(conn, spec))


async def _client_main(conn: Connection, spec: ClientSpec) -> None:
    loop = asyncio.get_running_loop()
    stats = ClientStats()
    factory = CLIENTS[spec.contender]
    gate = asyncio.Semaphore(spec.connect_concurrency)
    clients: list[WsClient] = []

    async def open_one(instruments: list[str]) -> bool:
        async with gate:
            for attempt in range(3):
                client = factory(spec.host, spec.port, spec.path, instruments, stats)
                try:
                    async with asyncio.timeout(20):
                        await loop.create_connection(lambda c=client: c, spec.host, spec.port)  # type: ignore[misc]
                        await client.ready
                except (OSError, TimeoutError) as exc:
                    client.abort()
                    stats.error(f"connect attempt {attempt + 1}: {exc!r}")
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                clients.append(client)
                return True
        return False

    connect_started = time.monotonic()
    opened = await asyncio.gather(*(open_one(s) for s in spec.subscriptions))
    connect_s = time.monotonic() - connect_started
    gc.collect()
    gc.freeze()  # what was set up stays; the collector only looks at what the updates allocate
    conn.send(("ready", sum(opened), len(opened) - sum(opened), list(stats.errors), connect_s))
    keepalive = asyncio.create_task(_keepalive(clients, spec.keepalive_s))
    try:
        await _obey(conn, stats)
    finally:
        keepalive.cancel()
        for client in clients:
            client.close()
        await asyncio.sleep(0.2)
        for client in clients:
            client.abort()
    with contextlib.suppress(OSError):
        conn.send(("bye",))


async def _obey(conn: Connection, stats: ClientStats) -> None:
    """The parent's commands: the measuring window, a report, stop (or the parent is gone)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            command = await loop.run_in_executor(None, conn.recv)
        except (EOFError, OSError):
            return
        if command[0] == "window":
            stats.window = (command[1], command[2])
        elif command[0] == "report":
            conn.send(("report", stats))
        elif command[0] == "stop":
            return


async def _keepalive(clients: Sequence[WsClient], every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        for client in clients:
            client.keepalive()


# --------------------------------------------------------------------------------------------
# The publisher
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublisherSpec:
    contender: str
    redis_url: str
    instruments: list[str]
    rate: int
    key_prefix: str = ""
    updates_channel: str = ""
    socketio_channel: str = ""
    centrifugo_url: str = ""
    centrifugo_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class PublisherReport:
    published: int = 0
    in_window: int = 0
    max_behind_ms: float = 0.0  # how far the publisher fell behind its schedule
    errors: list[str] = field(default_factory=list)
    logged_errors: int = 0


def make_state(instrument: str, version: int, now_ns: int) -> pb.InstrumentState:
    """A state as the processor makes it: every field set, prices moving with the version."""
    cents = 10_000 + (version * 7) % 500
    price = f"{cents // 100}.{cents % 100:02d}"
    bid = f"{(cents - 1) // 100}.{(cents - 1) % 100:02d}"
    ask = f"{(cents + 1) // 100}.{(cents + 1) % 100:02d}"
    second = now_ns - now_ns % 1_000_000_000
    state = pb.InstrumentState(
        instrument=instrument,
        venue="BENCH",
        version=version,
        last_sequence=version,
        last_price=price,
        last_size="100",
        last_trade_time_ns=now_ns,
        bid_price=bid,
        bid_size="300",
        ask_price=ask,
        ask_size="200",
        mid=price,
        spread="0.02",
        spread_bps=2.0 * 10_000 / cents,
        session_day=now_ns // 86_400_000_000_000,
        session_open="100.00",
        session_high="104.99",
        session_low="99.01",
        session_volume=str(100 * version),
        session_turnover=f"{version * cents}.00",
        trade_count=version,
        vwap="101.23",
        change=f"{(cents - 10_000) // 100}.{(cents - 10_000) % 100:02d}",
        change_pct=(cents - 10_000) / 100.0,
        bar_1s=pb.Bar(
            start_time_ns=second, open=price, high=price, low=price, close=price, volume="100", trade_count=1
        ),
        bar_1m=pb.Bar(
            start_time_ns=second - second % 60_000_000_000,
            open="100.00",
            high="104.99",
            low="99.01",
            close=price,
            volume=str(100 * version),
            trade_count=version,
        ),
    )
    state.times.exchange_ns = now_ns
    state.times.ingest_ns = now_ns
    state.times.processed_ns = now_ns
    return state


class _Schedule:
    """`rate` states/s from `start_ns`, round-robin over the instruments."""

    def __init__(self, rate: int, start_ns: int, instruments: list[str], first_version: int) -> None:
        self.rate = rate
        self.start_ns = start_ns
        self.instruments = instruments
        self.versions = dict.fromkeys(instruments, first_version - 1)
        self.sent = 0
        self.report = PublisherReport()

    def due(self, now_ns: int) -> list[tuple[str, int]]:
        target = self.rate * max(0, now_ns - self.start_ns) // 1_000_000_000
        batch = []
        for index in range(self.sent, target):
            instrument = self.instruments[index % len(self.instruments)]
            self.versions[instrument] += 1
            batch.append((instrument, self.versions[instrument]))
        self.sent = max(self.sent, target)
        return batch

    def published(self, count: int, stamp_ns: int, window: tuple[int, int], now_ns: int) -> None:
        self.report.published += count
        if window[0] <= stamp_ns <= window[1]:
            self.report.in_window += count
        if count:
            # The first of this batch was due at start + sent_before / rate.
            due_ns = self.start_ns + (self.sent - count) * 1_000_000_000 // self.rate
            self.report.max_behind_ms = max(self.report.max_behind_ms, (now_ns - due_ns) / 1e6)


class _ErrorLog(logging.Handler):
    """Keeps what the publisher's libraries log at ERROR (python-socketio's failed publishes)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.messages) < 10:
            detail = getattr(record, "redis_exception", "")
            self.messages.append(f"{record.getMessage()} {detail}".strip()[:300])


_PUBLISHER_ERRORS = _ErrorLog()


def publisher_process(conn: Connection, spec: PublisherSpec) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger().addHandler(_PUBLISHER_ERRORS)
    if spec.contender == "dashboard_api":
        _publish_tapewire(conn, spec)
    else:
        uvloop.run(_publish_peer(conn, spec))


def _publish_tapewire(conn: Connection, spec: PublisherSpec) -> None:
    """cache_updater's write path: prepare() and the APPLY_STATES script, one pipeline per tick."""
    client = redis.Redis.from_url(spec.redis_url)
    keys = RedisKeys(prefix=spec.key_prefix, channel=spec.updates_channel, alerts_channel="")
    script = StateScript(client)

    def apply(batch: list[tuple[str, int]], cached_ns: int) -> None:
        stamp = cache_stamp(cached_ns)
        changes = []
        for instrument, version in batch:
            state = make_state(instrument, version, cached_ns)
            changes.append(prepare(state, state.SerializeToString(), keys, stamp, HISTORY_LENGTH))
        pipe = client.pipeline(transaction=False)
        script.queue(changes, pipe)
        if sum(StateScript.applied(pipe.execute())) != len(batch):
            raise RuntimeError("a state was not applied: versions out of step")

    # Seed version 1 of every instrument so that the clients' snapshots hold a state.
    apply([(instrument, 1) for instrument in spec.instruments], time.time_ns())
    conn.send(("ready",))
    _, start_ns, window_start, window_end, end_ns = conn.recv()
    schedule = _Schedule(spec.rate, start_ns, spec.instruments, first_version=2)
    window = (window_start, window_end)
    _sleep_until(start_ns)
    while (now := time.time_ns()) < end_ns:
        batch = schedule.due(now)
        if batch:
            stamp = time.time_ns()
            apply(batch, stamp)
            schedule.published(len(batch), stamp, window, time.time_ns())
        time.sleep(TICK_S)
    client.close()
    conn.send(("done", schedule.report))


async def _publish_peer(conn: Connection, spec: PublisherSpec) -> None:
    import aiohttp

    from bench.peers.socketio_server import EVENT_UPDATE, publisher

    loop = asyncio.get_running_loop()
    session = aiohttp.ClientSession()
    manager = publisher(spec.redis_url, spec.socketio_channel) if spec.contender == "socketio" else None

    async def emit(batch: list[tuple[str, int]], stamp: int) -> None:
        states = [(instrument, make_state(instrument, version, stamp)) for instrument, version in batch]
        for _, state in states:
            state.times.cached_ns = stamp
        if manager is not None:
            # A few emits in flight at once (each is one PUBLISH on a pooled connection): enough
            # to keep up, without a connection per state when a tick's batch is large.
            for first in range(0, len(states), EMIT_CONCURRENCY):
                await asyncio.gather(
                    *(
                        manager.emit(EVENT_UPDATE, views.state_to_json(state), room=instrument, namespace="/")
                        for instrument, state in states[first : first + EMIT_CONCURRENCY]
                    )
                )
            return
        body = (
            '{"commands":['
            + ",".join(
                f'{{"publish":{{"channel":"{instrument}","data":{views.dumps(views.state_to_json(state))}}}}}'
                for instrument, state in states
            )
            + "]}"
        )
        async with session.post(spec.centrifugo_url, data=body, headers=spec.centrifugo_headers) as reply:
            text = await reply.text()
            if reply.status != 200 or '"error"' in text:
                raise RuntimeError(f"centrifugo publish: {reply.status} {text[:300]}")

    # One publish before the clients come, so that connections and scripts are warm.
    await emit([(spec.instruments[0], 0)], time.time_ns())
    conn.send(("ready",))
    _, start_ns, window_start, window_end, end_ns = await loop.run_in_executor(None, conn.recv)
    schedule = _Schedule(spec.rate, start_ns, spec.instruments, first_version=1)
    window = (window_start, window_end)
    await asyncio.sleep(max(0.0, (start_ns - time.time_ns()) / 1e9))
    while (now := time.time_ns()) < end_ns:
        batch = schedule.due(now)
        if batch:
            stamp = time.time_ns()
            await emit(batch, stamp)
            schedule.published(len(batch), stamp, window, time.time_ns())
        await asyncio.sleep(TICK_S)
    await session.close()
    if manager is not None:
        with contextlib.suppress(Exception):
            await manager.redis.aclose()
    schedule.report.errors = _PUBLISHER_ERRORS.messages
    schedule.report.logged_errors = _PUBLISHER_ERRORS.count
    conn.send(("done", schedule.report))


def _sleep_until(ns: int) -> None:
    delay = (ns - time.time_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


# --------------------------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    contender: str
    pid: int
    port: int
    publisher: PublisherSpec
    stop: Callable[[], object]
    cleanup_pattern: str  # Redis keys to delete afterwards


def _wait_http(url: str, timeout_s: float, alive: Callable[[], bool]) -> None:
    try:
        wait_http_ok(url, timeout_s, alive)
    except NotReady as error:
        raise RuntimeError(f"{error}: see {LOG_DIR}") from error


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from tools.devstack import env_vars

    return env_vars()["DATABASE_URL"]


def start_server(contender: str, redis_url: str, instruments: list[str], rate: int) -> RunningServer:
    unique = uuid.uuid4().hex[:10]
    port = free_port()
    if contender == "dashboard_api":
        from tools.suite import Suite

        prefix, channel = f"bench{unique}:", f"bench{unique}_updates"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        suite = Suite(env={}, log_dir=LOG_DIR, services=())
        process = suite.start_service(
            "dashboard_api",
            {
                "REDIS_URL": redis_url,
                "REDIS_KEY_PREFIX": prefix,
                "REDIS_UPDATES_CHANNEL": channel,
                "REDIS_ALERTS_CHANNEL": f"bench{unique}_alerts",
                "DATABASE_URL": _database_url(),
                "DASHBOARD_API_HOST": HOST,
                "DASHBOARD_API_PORT": str(port),
                # Live updates only: no Kafka (alerts) and no gRPC listener.
                "DASHBOARD_API_ALERTS_ENABLED": "false",
                "DASHBOARD_API_GRPC_ENABLED": "false",
                # Every bench client comes from one address: lift the per-address cap.
                "DASHBOARD_API_MAX_CONNECTIONS": "20000",
                "DASHBOARD_API_MAX_CONNECTIONS_PER_IP": "20000",
            },
        )
        try:
            _wait_http(f"http://{HOST}:{port}/readyz", 30, lambda: process.poll() is None)
        except BaseException:
            suite.stop(timeout_s=5)
            raise
        return RunningServer(
            contender,
            process.pid,
            port,
            PublisherSpec(
                contender, redis_url, instruments, rate, key_prefix=prefix, updates_channel=channel
            ),
            lambda: suite.stop(timeout_s=15),
            f"{prefix}*",
        )
    if contender == "socketio":
        channel = f"bench{unique}_socketio"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = (LOG_DIR / "socketio_server.log").open("ab")
        argv = [sys.executable, "-m", "bench.peers.socketio_server", "--host", HOST, "--port", str(port)]
        sio = subprocess.Popen(
            [*argv, "--redis-url", redis_url, "--channel", channel],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def stop_socketio() -> None:
            _terminate(sio)
            log.close()

        try:
            _wait_http(f"http://{HOST}:{port}/health", 30, lambda: sio.poll() is None)
        except BaseException:
            stop_socketio()
            raise

        return RunningServer(
            contender,
            sio.pid,
            port,
            PublisherSpec(contender, redis_url, instruments, rate, socketio_channel=channel),
            stop_socketio,
            f"bench{unique}*",
        )
    if contender == "centrifugo":
        from bench.peers import centrifugo

        prefix = f"bench{unique}"
        server = centrifugo.start(redis_url, prefix, host=HOST, port=port, log_dir=LOG_DIR)
        return RunningServer(
            contender,
            server.pid,
            port,
            PublisherSpec(
                contender,
                redis_url,
                instruments,
                rate,
                centrifugo_url=server.publish_url,
                centrifugo_headers=server.api_headers,
            ),
            server.stop,
            f"{prefix}*",
        )
    raise ValueError(f"unknown contender {contender!r}: one of {', '.join(CONTENDERS)}")


def _terminate(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _delete_keys(redis_url: str, pattern: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def _redis_pid(redis_url: str) -> int | None:
    """Redis's pid when it runs on this machine (to sample its CPU too), else None."""
    client = redis.Redis.from_url(redis_url)
    try:
        pid = int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return None
    return pid if "redis" in comm else None


def _busy_cores() -> tuple[float, float]:
    """(busy, total) jiffies of every core so far, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    total = sum(fields[:8])
    return total - idle, total


# --------------------------------------------------------------------------------------------
# One trial
# --------------------------------------------------------------------------------------------


def instrument_names(count: int) -> list[str]:
    return [f"SYM{i:04d}" for i in range(count)]


def subscriptions(connections: int, names: list[str], per_client: int) -> list[list[str]]:
    """Connection i watches `per_client` consecutive instruments from i * per_client on (mod the
    count): every instrument gets the same number of watchers when the product divides evenly."""
    count = len(names)
    return [[names[(i * per_client + k) % count] for k in range(per_client)] for i in range(connections)]


def default_client_processes(connections: int) -> int:
    return max(1, min(connections, 4, max(2, math.ceil(connections / 500))))


@contextmanager
def _processes(
    targets: list[tuple[Callable[..., None], Any]], name: str
) -> Iterator[list[tuple[Connection, int]]]:
    """Start one spawned process per (function, spec), each with a pipe; stop them all after.
    Yields (pipe, pid) per process."""
    context = multiprocessing.get_context("spawn")
    started: list[tuple[Connection, int]] = []
    processes = []
    try:
        for index, (target, spec) in enumerate(targets):
            parent, child = context.Pipe()
            process = context.Process(target=target, args=(child, spec), name=f"{name}-{index}", daemon=True)
            process.start()
            child.close()
            processes.append(process)
            started.append((parent, process.pid or 0))
        yield started
    finally:
        for pipe, _ in started:
            pipe.close()  # a process still waiting for a command ends on EOF
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()


def _receive(pipe: Connection, timeout_s: float, what: str) -> Any:
    if not pipe.poll(timeout_s):
        raise RuntimeError(f"no answer from {what} within {timeout_s}s")
    return pipe.recv()


def trial(
    contender: str,
    connections: int,
    redis_url: str,
    seconds: float,
    offered_rate: int,
    instruments: int = 100,
    per_client: int = 10,
    client_processes: int | None = None,
) -> dict[str, Any]:
    """One contender at one connection count: see the module doc."""
    started = time.monotonic()
    names = instrument_names(instruments)
    subs = subscriptions(connections, names, per_client)
    watchers = {name: 0 for name in names}
    for sub in subs:
        for name in sub:
            watchers[name] += 1
    mean_watchers = sum(watchers.values()) / len(watchers)
    processes = min(connections, client_processes or default_client_processes(connections))
    server = start_server(contender, redis_url, names, offered_rate)
    timings = {"server_start_s": round(time.monotonic() - started, 2)}
    try:
        path = CLIENTS[contender].PATH
        specs = [
            ClientSpec(contender, HOST, server.port, path, subs[index::processes])
            for index in range(processes)
        ]
        targets: list[tuple[Callable[..., None], Any]] = [(publisher_process, server.publisher)]
        targets += [(client_process, spec) for spec in specs]
        with _processes(targets, f"bench-{contender}") as started_processes:
            publisher_pipe = started_processes[0][0]
            client_pipes = [pipe for pipe, _ in started_processes[1:]]
            _receive(publisher_pipe, 30, "the publisher")
            ready = [_receive(pipe, 120, "a client process") for pipe in client_pipes]
            timings["connect_s"] = round(max(r[4] for r in ready), 2)
            connected = sum(r[1] for r in ready)
            failed = sum(r[2] for r in ready)
            if connected == 0:
                raise RuntimeError(f"no client connected: {[e for r in ready for e in r[3]][:3]}")
            start_ns = time.time_ns() + 200_000_000
            window = (start_ns + int(WARMUP_S * 1e9), start_ns + int((WARMUP_S + seconds) * 1e9))
            end_ns = window[1] + 300_000_000
            for pipe in client_pipes:
                pipe.send(("window", *window))
            publisher_pipe.send(("go", start_ns, window[0], window[1], end_ns))
            pids = {"server": server.pid, "publisher": started_processes[0][1]}
            pids.update({f"client-{i}": pid for i, (_, pid) in enumerate(started_processes[1:])})
            if (redis_pid := _redis_pid(redis_url)) is not None:
                pids["redis"] = redis_pid
            _sleep_until(window[0])
            sampler = ProcessSampler(pids, interval_s=0.25).start()
            machine_before = _busy_cores()
            _sleep_until(window[1])
            usage = sampler.stop()
            machine_after = _busy_cores()
            wall_s = sampler.wall_s
            done = _receive(publisher_pipe, 30 + seconds, "the publisher")
            publisher_report: PublisherReport = done[1]
            time.sleep(DRAIN_S)
            reports: list[ClientStats] = []
            for pipe in client_pipes:
                pipe.send(("report",))
            for pipe in client_pipes:
                reports.append(_receive(pipe, 60, "a client process")[1])
            for pipe in client_pipes:
                pipe.send(("stop",))
            for pipe in client_pipes:
                with contextlib.suppress(RuntimeError, EOFError):
                    _receive(pipe, 15, "a client process")
    finally:
        server.stop()
        _delete_keys(redis_url, server.cleanup_pattern)
    timings["total_s"] = round(time.monotonic() - started, 2)
    return _trial_result(
        contender,
        connections,
        processes,
        (connected, failed),
        seconds,
        offered_rate,
        (min(watchers.values()), mean_watchers, max(watchers.values())),
        publisher_report,
        reports,
        usage_to_json(usage, wall_s),
        (machine_after[0] - machine_before[0]) / max(1.0, machine_after[1] - machine_before[1]),
        timings,
    )


def _trial_result(
    contender: str,
    connections: int,
    processes: int,
    opened: tuple[int, int],
    seconds: float,
    offered_rate: int,
    watchers: tuple[int, float, int],
    publisher: PublisherReport,
    reports: list[ClientStats],
    usage: dict[str, dict[str, float]],
    machine_busy: float,
    timings: dict[str, float],
) -> dict[str, Any]:
    latencies: list[float] = []
    for report in reports:
        latencies.extend(report.latencies_ms)
    received = sum(report.in_window for report in reports)
    delivered = received / seconds
    published_per_s = publisher.in_window / seconds
    expected = published_per_s * watchers[1]
    server_cores = usage["server"]["cores"]
    client_cores = [v["cores"] for k, v in usage.items() if k.startswith("client-")]
    cpu_count = os.cpu_count() or 1
    closes: dict[str, int] = {}
    for report in reports:
        for code, count in report.server_closes.items():
            closes[str(code)] = closes.get(str(code), 0) + count
    clients_saturated = bool(client_cores) and max(client_cores) >= CLIENT_SATURATED_CORES
    machine_saturated = machine_busy >= 0.95
    # Whatever else ran on the machine meanwhile (another benchmark, a build): noise.
    other_cores = machine_busy * cpu_count - sum(v["cores"] for v in usage.values())
    return {
        "contender": contender,
        "connections": connections,
        "connected": opened[0],
        "failed_connections": opened[1],
        "client_processes": processes,
        "watchers_per_instrument": {"min": watchers[0], "mean": watchers[1], "max": watchers[2]},
        "offered_rate": offered_rate,
        "published_per_s": round(published_per_s, 1),
        "publisher_max_behind_ms": round(publisher.max_behind_ms, 1),
        "publisher_errors": publisher.logged_errors,
        "publisher_error_samples": publisher.errors,
        "expected_deliveries_per_s": round(expected, 1),
        "delivered_per_s": round(delivered, 1),
        "delivery_ratio": round(delivered / expected, 4) if expected else math.nan,
        # Delivered what was offered: otherwise the server (or the clients) ran out of CPU, the
        # delivered rate is its capacity and the latency only says how long it was behind.
        "kept_up": bool(expected) and delivered >= KEPT_UP * expected,
        "server_cores": server_cores,
        "delivered_per_server_core": round(delivered / server_cores, 1) if server_cores > 0 else math.nan,
        "latency_ms": {k: round(v, 3) for k, v in summarize_ms(latencies).items()},
        "update_message_bytes": round(sum(r.in_window_bytes for r in reports) / received, 1)
        if received
        else math.nan,
        "server_peak_rss_mb": usage["server"]["peak_rss_mb"],
        "client_cores": round(sum(client_cores), 3),
        "client_max_process_cores": round(max(client_cores), 3) if client_cores else math.nan,
        "publisher_cores": usage.get("publisher", {}).get("cores", math.nan),
        "redis_cores": usage.get("redis", {}).get("cores", math.nan),
        "machine_busy_cores": round(machine_busy * cpu_count, 3),
        "other_cores": round(max(0.0, other_cores), 3),
        "machine_cores": cpu_count,
        "clients_saturated": clients_saturated,
        "machine_saturated": machine_saturated,
        "conflated_notices": sum(r.conflated_notices for r in reports),
        "conflated_dropped": sum(r.conflated_dropped for r in reports),
        "server_closes": closes,
        "connections_lost": sum(r.lost for r in reports),
        "client_errors": [e for r in reports for e in r.errors][:10],
        "usage": usage,
        "timings_s": timings,
    }


# --------------------------------------------------------------------------------------------
# Repetitions, medians and ratios
# --------------------------------------------------------------------------------------------

MEDIAN_FIELDS = (
    "delivered_per_s",
    "expected_deliveries_per_s",
    "delivery_ratio",
    "published_per_s",
    "server_cores",
    "delivered_per_server_core",
    "server_peak_rss_mb",
    "client_cores",
    "client_max_process_cores",
    "publisher_cores",
    "redis_cores",
    "machine_busy_cores",
    "other_cores",
    "conflated_dropped",
    "connections_lost",
    "update_message_bytes",
)
LATENCY_FIELDS = ("p50", "p99", "p99.9", "max")
RATIO_FIELDS = ("delivered_per_server_core", "delivered_per_s")


def run(
    redis_url: str,
    connections: list[int],
    repetitions: int,
    seconds: float,
    offered_rate: int,
    instruments: int = 100,
    per_client: int = 10,
    *,
    contenders: Sequence[str] = CONTENDERS,
    client_processes: int | None = None,
    deliveries_per_s: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every contender at every connection count, `repetitions` times: medians and ratios.

    `deliveries_per_s`, when given, replaces `offered_rate` at each connection count by the
    rate that offers that many deliveries per second (states/s x watchers per instrument), so
    that 100 and 5,000 connections are offered the same fan-out work.

    Within a repetition the contenders run back to back at each connection count, in an order
    that rotates from one repetition to the next; a ratio is taken within a repetition, and
    the median of those is reported (with each repetition's value)."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        raise ValueError(f"unknown contenders {sorted(unknown)}: choose from {', '.join(CONTENDERS)}")
    fd_limit = raise_fd_limit()
    notes: list[str] = []
    if fd_limit < max(connections, default=0) + 512:
        notes.append(f"RLIMIT_NOFILE is {fd_limit}: too low for {max(connections)} connections per server")
    centrifugo_version = None
    if "centrifugo" in contenders:
        from bench.peers import centrifugo

        started = time.monotonic()
        try:
            centrifugo.install()
            centrifugo_version = centrifugo.VERSION
            say(f"centrifugo {centrifugo_version} ready ({time.monotonic() - started:.1f}s)")
        except (centrifugo.CentrifugoError, OSError, subprocess.SubprocessError) as exc:
            contenders = [c for c in contenders if c != "centrifugo"]
            notes.append(f"centrifugo left out: {exc}")
            say(notes[-1])
    trials: list[dict[str, Any]] = []
    for repetition in range(repetitions):
        shift = repetition % len(contenders)
        order = [*contenders[shift:], *contenders[:shift]]
        for count in connections:
            rate = offered_rate
            if deliveries_per_s:
                rate = max(1, round(deliveries_per_s * instruments / (count * per_client)))
            for contender in order:
                try:
                    result = trial(
                        contender,
                        count,
                        redis_url,
                        seconds,
                        rate,
                        instruments,
                        per_client,
                        client_processes,
                    )
                except Exception as exc:  # one failed trial must not lose the others
                    result = {"contender": contender, "connections": count, "error": repr(exc)}
                result["repetition"] = repetition
                trials.append(result)
                say(_progress_line(result))
    outcome: dict[str, Any] = _no_nan(
        {
            "parameters": {
                "connections": connections,
                "repetitions": repetitions,
                "seconds": seconds,
                "warmup_s": WARMUP_S,
                "offered_rate": offered_rate,
                "deliveries_per_s": deliveries_per_s,
                "instruments": instruments,
                "per_client": per_client,
                "contenders": list(contenders),
            },
            "environment": _environment(fd_limit, centrifugo_version),
            "notes": notes,
            "summary": _summary(trials, connections, contenders),
            "ratios": _ratios(trials, connections, repetitions, contenders),
            "targets": _targets(trials, connections, repetitions, contenders),
            "trials": trials,
        }
    )
    return outcome


def _no_nan(value: Any) -> Any:
    """NaN (no data) as None, so that the result is valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(item) for item in value]
    return value


def _progress_line(result: dict[str, Any]) -> str:
    head = f"rep {result['repetition']} {result['contender']:>13} {result['connections']:>5} conns: "
    if "error" in result:
        return head + f"FAILED {result['error']}"
    latency = result["latency_ms"]
    flags = [name for name in ("clients_saturated", "machine_saturated") if result.get(name)]
    if not result.get("kept_up"):
        flags.insert(0, "behind")
    if result.get("other_cores", 0.0) >= NOISY_CORES:
        flags.append(f"other processes {result['other_cores']:.2f} cores")
    return head + (
        f"{result['delivered_per_s']:>9.0f}/s of {result['expected_deliveries_per_s']:.0f}, "
        f"server {result['server_cores']:.2f} cores -> {result['delivered_per_server_core']:.0f}/s per core, "
        f"p50 {latency['p50']:.1f} p99 {latency['p99']:.1f} max {latency['max']:.1f} ms, "
        f"rss {result['server_peak_rss_mb']:.0f} MiB, clients {result['client_cores']:.2f} cores"
        f"{' [' + ', '.join(flags) + ']' if flags else ''} ({result['timings_s']['total_s']:.0f}s)"
    )


def _ok(trials: list[dict[str, Any]], contender: str, count: int) -> list[dict[str, Any]]:
    return [
        t for t in trials if t["contender"] == contender and t["connections"] == count and "error" not in t
    ]


def _summary(
    trials: list[dict[str, Any]], connections: list[int], contenders: Sequence[str]
) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for count in connections:
        row: dict[str, Any] = {}
        for contender in contenders:
            runs = _ok(trials, contender, count)
            if not runs:
                row[contender] = {"trials": 0}
                continue
            medians: dict[str, Any] = {"trials": len(runs)}
            for name in MEDIAN_FIELDS:
                medians[name] = round(median([float(t[name]) for t in runs]), 3)
            medians["latency_ms"] = {
                name: round(median([float(t["latency_ms"][name]) for t in runs]), 3)
                for name in LATENCY_FIELDS
            }
            medians["kept_up_in"] = sum(1 for t in runs if t["kept_up"])
            medians["clients_saturated_in"] = sum(1 for t in runs if t["clients_saturated"])
            medians["machine_saturated_in"] = sum(1 for t in runs if t["machine_saturated"])
            row[contender] = medians
        summary[str(count)] = row
    return summary


def _per_repetition(
    trials: list[dict[str, Any]], contender: str, count: int, repetitions: int
) -> list[dict[str, Any] | None]:
    found: list[dict[str, Any] | None] = [None] * repetitions
    for t in _ok(trials, contender, count):
        found[t["repetition"]] = t
    return found


def _ratios(
    trials: list[dict[str, Any]], connections: list[int], repetitions: int, contenders: Sequence[str]
) -> dict[str, dict[str, Any]]:
    ratios: dict[str, dict[str, Any]] = {}
    if "dashboard_api" not in contenders:
        return ratios
    for count in connections:
        ours = _per_repetition(trials, "dashboard_api", count, repetitions)
        row: dict[str, Any] = {}
        for peer in (c for c in contenders if c != "dashboard_api"):
            theirs = _per_repetition(trials, peer, count, repetitions)
            entry: dict[str, Any] = {}
            for name in RATIO_FIELDS:
                values = [
                    round(a[name] / b[name], 3) if a and b and b[name] else math.nan
                    for a, b in zip(ours, theirs, strict=True)
                ]
                entry[name] = {"median": round(median(values), 3), "per_repetition": values}
            row[f"dashboard_api/{peer}"] = entry
        ratios[str(count)] = row
    return ratios


def _targets(
    trials: list[dict[str, Any]], connections: list[int], repetitions: int, contenders: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The issue's targets per connection count, from the medians and median ratios."""
    summary = _summary(trials, connections, contenders)
    ratios = _ratios(trials, connections, repetitions, contenders)
    targets: dict[str, dict[str, Any]] = {}
    for count in connections:
        ours = summary[str(count)].get("dashboard_api", {})
        if not ours.get("trials"):
            continue
        row: dict[str, Any] = {
            "per_core": ours["delivered_per_server_core"],
            "per_core_ok": ours["delivered_per_server_core"] >= TARGET_PER_CORE,
            "p99_ms": ours["latency_ms"]["p99"],
            "p99_ok": ours["latency_ms"]["p99"] <= TARGET_P99_MS,
        }
        for peer, goal in (("socketio", TARGET_VS_SOCKETIO), ("centrifugo", TARGET_VS_CENTRIFUGO)):
            ratio = ratios.get(str(count), {}).get(f"dashboard_api/{peer}")
            if ratio is not None:
                value = ratio["delivered_per_server_core"]["median"]
                row[f"vs_{peer}"] = value
                row[f"vs_{peer}_ok"] = value >= goal
        targets[str(count)] = row
    return targets


def _environment(fd_limit: int, centrifugo_version: str | None) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    packages: dict[str, str] = {}
    for name in ("python-socketio", "python-engineio", "aiohttp", "uvicorn", "uvloop", "websockets", "redis"):
        with contextlib.suppress(PackageNotFoundError):
            packages[name] = version(name)
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "packages": packages,
        "centrifugo": centrifugo_version,
        "rlimit_nofile": fd_limit,
    }


def _redis_url_default() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    from tools.devstack import env_vars

    return env_vars()["REDIS_URL"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else the devstack one")
    parser.add_argument("--connections", default="100,1000", help="comma-separated (default 100,1000)")
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per trial")
    parser.add_argument("--offered-rate", type=int, default=400, help="states/s published in all")
    parser.add_argument(
        "--deliveries-per-s",
        type=int,
        default=None,
        help="instead of --offered-rate: offer this many deliveries/s at every connection count",
    )
    parser.add_argument("--instruments", type=int, default=100)
    parser.add_argument("--per-client", type=int, default=10, help="instruments each connection watches")
    parser.add_argument("--client-processes", type=int, default=None)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--no-trials", action="store_true", help="leave the per-trial details out")
    args = parser.parse_args(argv)
    result = run(
        args.redis_url or _redis_url_default(),
        [int(n) for n in args.connections.split(",") if n.strip()],
        args.repetitions,
        args.seconds,
        args.offered_rate,
        args.instruments,
        args.per_client,
        contenders=[c.strip() for c in args.contenders.split(",") if c.strip()],
        client_processes=args.client_processes,
        deliveries_per_s=args.deliveries_per_s,
    )
    if args.no_trials:
        result.pop("trials")
    text = json.dumps(result, indent=2, default=str)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    # Run as bench.fanout_capacity, not __main__: the spawned processes then find every
    # function and class under the same module name.
    from bench import fanout_capacity

    sys.exit(fanout_capacity.main())
