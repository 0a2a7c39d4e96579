"""The /ws endpoint: negotiate, authenticate, then one `Session` with a receive loop in front.

The receive loop holds the client to its limits (docs/websocket.md): frame size, message
rate, errors per minute and the idle timeout. The session does everything else.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from tapewire.auth import Principal, Unauthorized, is_valid_user_id
from tapewire.v1 import stream_pb2

from ..rest.deps import AppContext, AppContextDep
from . import protocol
from .direct import EXTENSION as DIRECT_SOCKET
from .direct import DirectSocket
from .encoders import ENCODERS, Frame
from .limits import ErrorBudget, TokenBucket
from .session import (
    CLOSE_IDLE,
    CLOSE_INTERNAL_ERROR,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    PROTOCOL_VERSION,
    Session,
    SessionInfo,
    SessionLimits,
)

log = logging.getLogger(__name__)

router = APIRouter()

SUBPROTOCOLS = {f"tapewire.v{PROTOCOL_VERSION}.{name}": name for name in ENCODERS}


def direct_socket(websocket: WebSocket) -> DirectSocket | None:
    """The connection's DirectSocket, when the server offers one (see live/direct.py)."""
    extension = websocket.scope.get("extensions", {}).get(DIRECT_SOCKET)
    return extension.get("socket") if extension else None


class WebSocketTransport:
    """The sender's writes: straight to the socket when the server allows, else the ASGI send."""

    def __init__(self, websocket: WebSocket, direct: DirectSocket | None) -> None:
        self._ws = websocket
        self._direct = direct

    async def send(self, frame: Frame) -> None:
        direct = self._direct
        if direct is not None:
            if not direct.writable:
                await direct.wait_writable()
            direct.write((frame,))
        elif isinstance(frame, str):
            await self._ws.send_text(frame)
        else:
            await self._ws.send_bytes(frame)


@dataclass(frozen=True, slots=True)
class Negotiated:
    encoding: str
    subprotocol: str | None  # the one to echo
    batch: bool  # the client takes several updates per frame (`Updates`)


_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def negotiate(websocket: WebSocket) -> Negotiated | str:
    """What the client asked for, or the reason the request cannot be served."""
    offered = [name for name in websocket.scope.get("subprotocols", []) if name in SUBPROTOCOLS]
    asked = websocket.query_params.get("encoding")
    if asked is not None and asked not in ENCODERS:
        return f"unknown encoding {asked[:20]!r}: use json or protobuf"
    batch = _FLAGS.get(websocket.query_params.get("batch", "false"))
    if batch is None:
        return "batch must be true or false"
    if offered:
        return Negotiated(SUBPROTOCOLS[offered[0]], offered[0], batch)
    return Negotiated(asked or "json", None, batch)


def authenticate(websocket: WebSocket, services: AppContext) -> Principal:
    """Who the client is; raises Unauthorized when auth is on and the token does not do."""
    verifier = services.verifier
    if verifier is None:
        user = websocket.query_params.get("user")
        if user is not None and not is_valid_user_id(user):
            raise Unauthorized("invalid user: 1-128 printable characters, no spaces")
        return Principal(user or "anonymous", frozenset(), is_admin=True)
    header = websocket.headers.get("authorization")
    if header:
        return verifier.verify_header(header)
    return verifier.verify(websocket.query_params.get("token") or "")


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, services: AppContextDep) -> None:
    negotiated = negotiate(websocket)
    await websocket.accept(subprotocol=negotiated.subprotocol if isinstance(negotiated, Negotiated) else None)
    if isinstance(negotiated, str):
        await _refuse(websocket, services, CLOSE_POLICY_VIOLATION, negotiated)
        return
    if services.sessions.draining:
        await _refuse(websocket, services, CLOSE_TRY_AGAIN_LATER, "instance draining: connect to another")
        return
    try:
        principal = authenticate(websocket, services)
    except Unauthorized as exc:
        services.metrics.auth_failures.labels("ws").inc()
        await _refuse(websocket, services, CLOSE_UNAUTHORIZED, f"unauthorized: {exc.reason}")
        return
    await Connection(websocket, services, principal, negotiated).run()


async def _refuse(websocket: WebSocket, services: AppContext, code: int, reason: str) -> None:
    services.metrics.closes.labels(str(code)).inc()
    await websocket.close(code, reason[:120])


def session_limits(services: AppContext, batch: bool = False) -> SessionLimits:
    """The limits of one session; `batch`: the client takes `Updates` frames."""
    settings = services.settings
    return SessionLimits(
        send_queue_size=settings.send_queue_size,
        max_subscriptions=settings.max_subscriptions_per_connection,
        conflation_timeout_s=settings.conflation_timeout_s,
        stalled_socket_s=settings.stalled_socket_s,
        resync_timeout_s=settings.resync_timeout_s,
        heartbeat_s=settings.heartbeat_s,
        max_replay_updates=settings.max_replay_updates,
        subscribe_timeout_s=settings.subscribe_timeout_s,
        max_batch=settings.max_batch if batch else 1,
    )


class Connection:
    """One WebSocket client: its session, its receive loop and the socket's close."""

    def __init__(
        self, websocket: WebSocket, services: AppContext, principal: Principal, negotiated: Negotiated
    ) -> None:
        settings = services.settings
        encoder = ENCODERS[negotiated.encoding]
        self._ws = websocket
        self._services = services
        client = websocket.client
        direct = self._direct = direct_socket(websocket)
        self._session = Session(
            SessionInfo(
                connection_id=secrets.token_hex(8),
                user_id=principal.user_id,
                transport="ws",
                encoding=encoder.name,
                peer=f"{client.host}:{client.port}" if client else "?",
            ),
            principal,
            WebSocketTransport(websocket, direct),
            encoder,
            services.relay,
            services.states,
            services.metrics,
            session_limits(services, negotiated.batch),
            services.alerts,
            direct=direct,
        )
        self._frames = protocol.Limits(
            settings.max_client_message_bytes, settings.max_instruments_per_request
        )
        now = time.monotonic()
        self._bucket = TokenBucket(
            settings.max_messages_per_second, 2 * settings.max_messages_per_second, now
        )
        self._errors = ErrorBudget(settings.max_errors_per_minute)
        self._client_gone = False

    async def run(self) -> None:
        session = self._session
        services = self._services
        services.sessions.add(session)
        services.metrics.connections.inc()
        log.info(
            "client connected", extra={"connection": session.info.connection_id, "peer": session.info.peer}
        )
        session.start()
        session.send_later(self._welcome())
        tasks = (
            asyncio.create_task(self._receive_loop(), name=f"ws-receive {session.info.connection_id}"),
            asyncio.create_task(self._send_loop(), name=f"ws-send {session.info.connection_id}"),
        )
        try:
            await session.stopped.wait()
        finally:
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.error("connection task failed", extra={"peer": session.info.peer}, exc_info=outcome)
                    session.request_close(CLOSE_INTERNAL_ERROR, "internal error")
            if session.close_reason is not None and not self._client_gone:
                await self._close_socket(*session.close_reason)
            services.sessions.discard(session)
            services.metrics.connections.dec()
            session.finish()
            log.info("client disconnected", extra={"connection": session.info.connection_id})

    def _welcome(self) -> stream_pb2.ServerMessage:
        settings = self._services.settings
        message = stream_pb2.ServerMessage()
        welcome = message.welcome
        welcome.protocol = PROTOCOL_VERSION
        welcome.connection_id = self._session.info.connection_id
        welcome.user_id = self._session.principal.user_id
        welcome.heartbeat_s = settings.heartbeat_s
        welcome.idle_timeout_s = settings.idle_timeout_s
        welcome.encoding = self._session.info.encoding
        welcome.max_batch = self._session.max_batch
        welcome.limits.max_subscriptions = settings.max_subscriptions_per_connection
        welcome.limits.max_message_bytes = settings.max_client_message_bytes
        welcome.limits.max_messages_per_second = settings.max_messages_per_second
        welcome.limits.send_queue_size = settings.send_queue_size
        return message

    async def _receive_loop(self) -> None:
        session = self._session
        idle_timeout = self._services.settings.idle_timeout_s or None
        try:
            # The loop checks `stopped` itself and uses asyncio.timeout, not wait_for: on
            # Python 3.11 wait_for can swallow a cancellation when the frame arrives at the
            # same moment, and a client flooding us would then keep this task alive.
            while not session.stopped.is_set():
                try:
                    async with asyncio.timeout(idle_timeout):
                        message = await self._ws.receive()
                except TimeoutError:
                    session.request_close(CLOSE_IDLE, f"idle: nothing received for {idle_timeout:g}s")
                    return
                if message["type"] == "websocket.disconnect":
                    self._client_gone = True
                    return
                frame = message.get("text")
                await self._on_frame(frame if frame is not None else message.get("bytes") or b"")
        finally:
            session.stopped.set()

    async def _on_frame(self, frame: str | bytes) -> None:
        now = time.monotonic()
        if not self._bucket.take(now):
            rate = self._services.settings.max_messages_per_second
            self._error(
                protocol.ClientError(protocol.RATE_LIMITED, f"more than {rate:g} messages per second"), now
            )
            return
        command = protocol.parse_frame(frame, self._frames)
        if isinstance(command, protocol.ClientError):
            self._error(command, now)
            return
        await self._session.handle(command)

    def _error(self, error: protocol.ClientError, now: float) -> None:
        self._session.error(error)
        if self._errors.exceeded(now):
            limit = self._services.settings.max_errors_per_minute
            self._session.request_close(CLOSE_POLICY_VIOLATION, f"more than {limit} errors in a minute")

    async def _send_loop(self) -> None:
        try:
            await self._session.run_sender()
        except WebSocketDisconnect:
            self._client_gone = True

    async def _close_socket(self, code: int, reason: str) -> None:
        # A client that does not read cannot take a close frame either: wait a bounded time.
        try:
            await asyncio.wait_for(self._ws.close(code, reason), self._services.settings.close_timeout_s)
        except TimeoutError:
            log.info("close frame not written in time", extra={"peer": self._session.info.peer, "code": code})
            if self._direct is not None:
                self._direct.abort()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away meanwhile
