"""gRPC for internal services: `tapewire.v1.Dashboard` (proto/tapewire/v1/dashboard.proto).

Subscribe is a server stream carrying the same `ServerMessage`s as a protobuf WebSocket, from
the same `Session`: snapshot then updates, resume with `since`, the slow-client ladder,
throttles and heartbeats. Its updates are written pre-serialised (a `Delta` encodes once for
every subscriber), so the method is registered with a pass-through serializer.

Where the WebSocket closes with a code, the stream ends with a status: too slow (4008) is
RESOURCE_EXHAUSTED, shutting down or draining is UNAVAILABLE, an operator's disconnect is
ABORTED, a bad request INVALID_ARGUMENT.
"""

from __future__ import annotations

import secrets
from typing import Any

import grpc
import grpc.aio

from tapewire.errors import StoreUnavailable
from tapewire.grpc_server import Service, current_principal
from tapewire.reference.calendar import MarketStatus
from tapewire.reference.instrument import to_proto
from tapewire.v1 import dashboard_pb2, stream_pb2

from ..rest.deps import AppContext
from ..rest.listing import check_filter, find
from . import protocol
from .encoders import ENCODERS, Frame
from .session import (
    CLOSE_BY_OPERATOR,
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TRY_AGAIN_LATER,
    Session,
    SessionInfo,
)
from .ws import session_limits

SERVICE_NAME = "tapewire.v1.Dashboard"
_MARKET_STATUSES: dict[MarketStatus, dashboard_pb2.MarketStatus] = {
    "open": dashboard_pb2.MARKET_STATUS_OPEN,
    "pre_open": dashboard_pb2.MARKET_STATUS_PRE_OPEN,
    "closed": dashboard_pb2.MARKET_STATUS_CLOSED,
}

_STATUS_OF_CLOSE = {
    CLOSE_SLOW_CONSUMER: grpc.StatusCode.RESOURCE_EXHAUSTED,
    CLOSE_GOING_AWAY: grpc.StatusCode.UNAVAILABLE,
    CLOSE_SERVICE_RESTART: grpc.StatusCode.UNAVAILABLE,
    CLOSE_TRY_AGAIN_LATER: grpc.StatusCode.UNAVAILABLE,
    CLOSE_BY_OPERATOR: grpc.StatusCode.ABORTED,
}

Context = grpc.aio.ServicerContext[Any, Any]


class _StreamTransport:
    def __init__(self, context: Context) -> None:
        self._context = context

    async def send(self, frame: Frame) -> None:
        await self._context.write(frame)


class DashboardServicer:
    def __init__(self, services: AppContext) -> None:
        self._services = services
        settings = services.settings
        self._limits = protocol.Limits(
            settings.max_client_message_bytes, settings.max_instruments_per_request
        )

    async def ListInstruments(
        self, request: dashboard_pb2.ListInstrumentsRequest, context: Context
    ) -> dashboard_pb2.ListInstrumentsResponse:
        refused = check_filter(request.query, request.asset_class)
        if refused is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refused)
        try:
            found = await find(
                self._services.states, self._services.instruments, request.query, request.asset_class
            )
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return dashboard_pb2.ListInstrumentsResponse(
            instruments=found.instruments,
            details=[
                dashboard_pb2.InstrumentDetails(
                    instrument=to_proto(details.entry),
                    market_status=_MARKET_STATUSES[details.status],
                    status_until_ns=details.until_ns,
                )
                for details in found.details
            ],
        )

    async def GetSnapshot(
        self, request: dashboard_pb2.GetSnapshotRequest, context: Context
    ) -> dashboard_pb2.GetSnapshotResponse:
        names = protocol.check_instruments(list(request.instruments), self._limits.max_instruments)
        if isinstance(names, protocol.ClientError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{names.code}: {names.reason}")
        try:
            found = await self._services.states.read(names)
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return dashboard_pb2.GetSnapshotResponse(states=found.states, missing=found.missing)

    async def Subscribe(self, request: stream_pb2.SubscribeRequest, context: Context) -> None:
        services = self._services
        command = protocol.subscribe_request(request, self._limits)
        if isinstance(command, protocol.ClientError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{command.code}: {command.reason}")
        if services.sessions.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "instance draining: connect to another")
        principal = current_principal()
        session = Session(
            SessionInfo(
                connection_id=secrets.token_hex(8),
                user_id=principal.user_id,
                transport="grpc",
                encoding="protobuf",
                peer=context.peer(),
            ),
            principal,
            _StreamTransport(context),
            ENCODERS["protobuf"],
            services.relay,
            services.states,
            services.metrics,
            session_limits(services),
        )
        services.sessions.add(session)
        try:
            session.subscribe(command)
            await session.run_sender()
        finally:
            services.sessions.discard(session)
            session.finish()
        if session.close_reason is not None:
            code, reason = session.close_reason
            await context.abort(_STATUS_OF_CLOSE.get(code, grpc.StatusCode.INTERNAL), reason)


def dashboard_service(services: AppContext) -> Service:
    return Service(SERVICE_NAME, DashboardServicer(services), _add_to_server)


def _add_to_server(servicer: DashboardServicer, server: grpc.aio.Server) -> None:
    """The generated registration, except that Subscribe passes pre-serialised frames through."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "ListInstruments": grpc.unary_unary_rpc_method_handler(
            servicer.ListInstruments,
            request_deserializer=dashboard_pb2.ListInstrumentsRequest.FromString,
            response_serializer=dashboard_pb2.ListInstrumentsResponse.SerializeToString,
        ),
        "GetSnapshot": grpc.unary_unary_rpc_method_handler(
            servicer.GetSnapshot,
            request_deserializer=dashboard_pb2.GetSnapshotRequest.FromString,
            response_serializer=dashboard_pb2.GetSnapshotResponse.SerializeToString,
        ),
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            servicer.Subscribe,
            request_deserializer=stream_pb2.SubscribeRequest.FromString,
            response_serializer=_pass_through,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _pass_through(frame: bytes) -> bytes:
    return frame
