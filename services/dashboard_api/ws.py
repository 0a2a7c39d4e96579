"""The /ws endpoint: one `Connection` per client, a bounded queue and one sender task each.

Snapshot then deltas, without a race. On subscribe the connection first registers its interest
with the relay (so updates start queueing) and then queues a snapshot request behind them. When
the sender reaches the request it reads the states from Redis, sends them and remembers each
version. From then on it sends a queued update only when its version is above the last one
sent for that instrument. cache_updater writes a state and publishes its update atomically, so
an update is either already in the snapshot (and dropped here) or published after the read
(and queued, since interest came first): the client sees every version after the snapshot's
exactly once.

A client that does not read lets its queue fill; it is then closed with 4008 rather than
letting memory grow. Everything else a client can get wrong earns an error reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from tapewire.errors import StoreUnavailable

from . import protocol, views
from .deps import ServicesDep
from .fanout import Delta, Relay
from .metrics import DashboardApiMetrics
from .states import StateStore

log = logging.getLogger(__name__)

router = APIRouter()

CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_SLOW_CONSUMER = 4008


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    send_queue_size: int
    max_subscriptions: int
    close_timeout_s: float
    frames: protocol.Limits


@dataclass(frozen=True, slots=True)
class _SnapshotRequest:
    instruments: tuple[str, ...]
    resync: bool = False


@dataclass(frozen=True, slots=True)
class _Forget:
    instruments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Reply:
    kind: str
    text: str


_Outgoing = Delta | _SnapshotRequest | _Forget | _Reply


class Connection:
    """One client. The relay calls `deliver`/`resync`; `run()` serves it until it is gone."""

    def __init__(
        self,
        websocket: WebSocket,
        relay: Relay,
        states: StateStore,
        metrics: DashboardApiMetrics,
        limits: ConnectionLimits,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._ws = websocket
        self._relay = relay
        self._states = states
        self._metrics = metrics
        self._limits = limits
        self._clock = clock
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue(maxsize=limits.send_queue_size)
        # Sender side: the version last sent per instrument, present once its snapshot went out.
        self._sent: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._client_gone = False
        self.finished = asyncio.Event()
        client = websocket.client
        self.peer = f"{client.host}:{client.port}" if client else "?"

    # Called by the relay, synchronously, never awaiting the client.

    def deliver(self, delta: Delta) -> bool:
        return self._enqueue(delta)

    def resync(self, instruments: tuple[str, ...]) -> bool:
        return self._enqueue(_SnapshotRequest(instruments, resync=True))

    def request_close(self, code: int, reason: str) -> None:
        if not self._stop.is_set():
            self._close = (code, reason)
            self._stop.set()

    async def run(self) -> None:
        tasks = (
            asyncio.create_task(self._receive_loop(), name=f"ws-receive {self.peer}"),
            asyncio.create_task(self._send_loop(), name=f"ws-send {self.peer}"),
        )
        try:
            await self._stop.wait()
        finally:
            self._relay.index.remove_all(self)
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.error("connection task failed", extra={"peer": self.peer}, exc_info=outcome)
                    self._close = self._close or (CLOSE_INTERNAL_ERROR, "internal error")
            if self._close is not None and not self._client_gone:
                await self._close_socket(*self._close)
            self.finished.set()

    async def _receive_loop(self) -> None:
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    self._client_gone = True
                    return
                frame = message.get("text")
                self._handle(frame if frame is not None else message.get("bytes") or b"")
        finally:
            self._stop.set()

    def _handle(self, frame: str | bytes) -> None:
        command = protocol.parse_frame(frame, self._limits.frames)
        if isinstance(command, protocol.ClientError):
            self._reply_error(command)
        elif isinstance(command, protocol.Subscribe):
            self._subscribe(command.instruments)
        elif isinstance(command, protocol.Unsubscribe):
            self._relay.index.remove(self, command.instruments)
            self._enqueue(_Forget(command.instruments))
        else:
            self._enqueue(_Reply("pong", views.pong_message()))

    def _subscribe(self, instruments: tuple[str, ...]) -> None:
        watched = self._relay.index.instruments_of(self)
        added = sum(1 for instrument in instruments if instrument not in watched)
        limit = self._limits.max_subscriptions
        if len(watched) + added > limit:
            reason = (
                f"at most {limit} subscriptions per connection: {len(watched)} active, {added} more asked"
            )
            self._reply_error(protocol.ClientError(protocol.TOO_MANY_SUBSCRIPTIONS, reason))
            return
        # Interest first, then the snapshot request behind it: see the module docstring.
        self._relay.index.add(self, instruments)
        self._enqueue(_SnapshotRequest(instruments))

    def _reply_error(self, error: protocol.ClientError) -> None:
        self._metrics.client_errors.labels(error.code).inc()
        log.info("client error", extra={"peer": self.peer, "code": error.code, "reason": error.reason})
        self._enqueue(_Reply("error", views.error_message(error.code, error.reason)))

    def _enqueue(self, item: _Outgoing) -> bool:
        if self._stop.is_set():
            return False
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._metrics.slow_consumer_disconnects.inc()
            log.warning("slow consumer, closing", extra={"peer": self.peer, "queue": self._queue.maxsize})
            self.request_close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return False
        return True

    async def _send_loop(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, Delta):
                    await self._send_delta(item)
                elif isinstance(item, _SnapshotRequest):
                    await self._send_snapshot(item.instruments, item.resync)
                elif isinstance(item, _Forget):
                    for instrument in item.instruments:
                        self._sent.pop(instrument, None)
                    await self._send("unsubscribed", views.unsubscribed_message(item.instruments))
                else:
                    await self._send(item.kind, item.text)
        except WebSocketDisconnect:
            self._client_gone = True
        finally:
            self._stop.set()

    async def _send_delta(self, delta: Delta) -> None:
        last = self._sent.get(delta.instrument)
        if last is None or delta.version <= last:
            return  # not snapshotted yet, unsubscribed, or already covered by the snapshot
        self._sent[delta.instrument] = delta.version
        await self._send("update", delta.text)

    async def _send_snapshot(self, instruments: tuple[str, ...], resync: bool = False) -> None:
        """Send the current states. A resync (after the relay lost Redis) leaves out what the
        client already has at the same or a newer version: Redis may have come back empty or
        behind, and a client must never see a version go back."""
        try:
            found = await self._states.read(instruments)
        except StoreUnavailable as exc:
            log.warning("snapshot failed, closing", extra={"peer": self.peer, "error": str(exc)})
            self.request_close(CLOSE_TRY_AGAIN_LATER, "state store unavailable")
            return
        states = [s for s in found.states if not (resync and s.version <= self._sent.get(s.instrument, 0))]
        missing = [name for name in found.missing if not (resync and self._sent.get(name, 0) > 0)]
        for state in states:
            self._sent[state.instrument] = state.version
        for instrument in missing:
            self._sent[instrument] = 0
        await self._send("snapshot", views.snapshot_message(states, missing, self._clock()))

    async def _send(self, kind: str, text: str) -> None:
        await self._ws.send_text(text)
        self._metrics.sent_by_type[kind].inc()

    async def _close_socket(self, code: int, reason: str) -> None:
        # A client that does not read cannot take a close frame either: wait a bounded time.
        try:
            await asyncio.wait_for(self._ws.close(code, reason), self._limits.close_timeout_s)
        except TimeoutError:
            log.info("close frame not written in time", extra={"peer": self.peer, "code": code})
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away meanwhile


class Connections:
    """The open connections, so that shutdown can close them all (1001)."""

    def __init__(self, metrics: DashboardApiMetrics) -> None:
        self._metrics = metrics
        self._open: set[Connection] = set()

    def __len__(self) -> int:
        return len(self._open)

    async def serve(self, connection: Connection) -> None:
        self._open.add(connection)
        self._metrics.connections.inc()
        log.info("client connected", extra={"peer": connection.peer})
        try:
            await connection.run()
        finally:
            self._open.discard(connection)
            self._metrics.connections.dec()
            log.info("client disconnected", extra={"peer": connection.peer})

    async def close_all(self, reason: str, timeout_s: float) -> None:
        """Close every connection with 1001 (going away); wait up to `timeout_s` for them."""
        closing = list(self._open)
        if not closing:
            return
        log.info("closing websockets", extra={"count": len(closing)})
        for connection in closing:
            connection.request_close(CLOSE_GOING_AWAY, reason)
        waits = [asyncio.create_task(connection.finished.wait()) for connection in closing]
        _, pending = await asyncio.wait(waits, timeout=timeout_s)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, services: ServicesDep) -> None:
    await websocket.accept()
    settings = services.settings
    limits = ConnectionLimits(
        send_queue_size=settings.send_queue_size,
        max_subscriptions=settings.max_subscriptions_per_connection,
        close_timeout_s=settings.close_timeout_s,
        frames=protocol.Limits(settings.max_client_message_bytes, settings.max_instruments_per_request),
    )
    connection = Connection(websocket, services.relay, services.states, services.metrics, limits)
    await services.connections.serve(connection)
