"""Limits on TCP connections, held before a request reaches the app.

uvicorn keeps a connection that never sends a request for as long as its client likes and
counts it against nothing, so idle sockets alone could use up the process's file descriptors
(and then /healthz stopped answering). Two uvicorn protocol classes close that gap:

- a deadline for the request head: a connection whose request line and headers (a WebSocket
  handshake is an HTTP request too) are not complete within `handshake_timeout_s` of its
  first byte being due is closed without an answer;
- caps on open connections, in all and per client address, checked when a connection is
  accepted: beyond either, the server answers 503 {"error", "code": "too_many_connections"}
  at once, without reading the request, and closes (a client that already sent its request
  may see a reset instead). A WebSocket keeps its connection's slot until it closes.

uvicorn's own `limit_concurrency` is not used: it counts WebSockets but refuses only plain HTTP
requests, so a crowd of WebSockets would have turned away /healthz and never another WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections import Counter
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from .live.direct import EXTENSION as DIRECT_SOCKET
from .live.direct import DirectSocket
from .metrics import DashboardApiMetrics

log = logging.getLogger(__name__)

REFUSALS = {
    "server": "the server is at its connection limit: try again later or another instance",
    "address": "too many connections from this address",
}


class ConnectionGuard:
    """Slots for open connections, in all and per client address, and the head deadline."""

    def __init__(
        self,
        max_connections: int,
        max_per_address: int,
        handshake_timeout_s: float,
        metrics: DashboardApiMetrics,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.handshake_timeout_s = handshake_timeout_s
        self._metrics = metrics
        self._open: dict[asyncio.BaseTransport, str] = {}
        self._per_address: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return len(self._open)

    def admit(self, transport: asyncio.BaseTransport, address: str) -> str | None:
        """Take a slot for `transport`; or the cap it ran into ("server", "address"), counted."""
        if len(self._open) >= self.max_connections:
            refused = "server"
        elif self._per_address[address] >= self.max_per_address:
            refused = "address"
        else:
            self._open[transport] = address
            self._per_address[address] += 1
            self._metrics.open_connections.set(len(self._open))
            return None
        self._metrics.refused_connections.labels(refused).inc()
        return refused

    def release(self, transport: asyncio.BaseTransport) -> None:
        """Give back `transport`'s slot; nothing if it had none (refused, or released already)."""
        address = self._open.pop(transport, None)
        if address is None:
            return
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]  # idle addresses must not pile up either
        self._metrics.open_connections.set(len(self._open))

    def timed_out(self) -> None:
        self._metrics.handshake_timeouts.inc()

    def protocols(
        self, write_buffer_bytes: int
    ) -> tuple[type[GuardedHttpProtocol], type[GuardedWebSocketProtocol]]:
        """uvicorn's `http` and `ws` protocol classes, bound to this guard (uvicorn builds its
        protocols from a class and its own arguments, so the guard travels as a class attribute),
        WebSockets with a write buffer's high-water mark of `write_buffer_bytes`."""
        guard = self

        class Http(GuardedHttpProtocol):
            pass

        class WebSocket(GuardedWebSocketProtocol):
            pass

        Http.guard = WebSocket.guard = guard
        WebSocket.write_buffer_bytes = write_buffer_bytes
        return Http, WebSocket


def refusal(refused: str) -> bytes:
    """The whole 503 response for a connection refused at accept."""
    body = json.dumps({"error": REFUSALS[refused], "code": "too_many_connections"}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, admitted by the guard and held to its head deadline."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        refused = self.guard.admit(transport, self.client[0] if self.client else "")
        if refused is not None:
            transport.write(refusal(refused))
            transport.close()
            return
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self.guard.release(self.transport)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # The next request on a kept-alive connection gets its own deadline.
        if self._head_timer is None:
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.guard.handshake_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self.guard.timed_out()
        self.transport.close()


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, giving back the slot its HTTP upgrade was admitted with,
    and offering the app a `DirectSocket` (live/direct.py) in the scope's extensions."""

    guard: ClassVar[ConnectionGuard]
    write_buffer_bytes: ClassVar[int]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # What a client that stops reading holds here, past the kernel's send buffer: the
        # sender waits above it (pause_writing), and the updates wait in the conflatable queue.
        transport.set_write_buffer_limits(high=self.write_buffer_bytes)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][DIRECT_SOCKET] = {"socket": DirectSocket(self)}

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.guard.release(self.transport)


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the soft limit in force after.

    Each connection is a descriptor, and container runtimes often start processes with a soft
    limit far below the hard one: the connection caps mean little under a limit of 1024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft  # an infinite soft limit is refused by Linux: leave it as it is
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning(
            "could not raise the open files limit", extra={"soft": soft, "hard": hard, "error": str(exc)}
        )
        return soft
    return hard
