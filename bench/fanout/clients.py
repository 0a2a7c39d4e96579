"""The minimal WebSocket client (RFC 6455, client side, no extensions), one class per
contender's protocol: each counts the updates it receives and their latency in a ClientStats."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from array import array
from dataclasses import dataclass, field
from typing import cast

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
