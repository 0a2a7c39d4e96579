"""The uvicorn server that runs the app, as `python -m services.dashboard_api` and the tests use it."""

from __future__ import annotations

import logging
import math
import resource
import socket
import threading

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from . import gc_tuning
from .app import create_app
from .connection_limits import ConnectionGuard, raise_open_files_limit
from .live.registry import Sessions
from .live.session import CLOSE_GOING_AWAY
from .metrics import DashboardApiMetrics
from .settings import DashboardApiSettings

log = logging.getLogger(__name__)

OTHER_DESCRIPTORS = 256


class DashboardServer(uvicorn.Server):
    """uvicorn's server, saying 1001 (going away) to WebSocket clients when it stops.

    uvicorn's own shutdown closes every WebSocket with 1012 before the app's lifespan ends, so
    the app could never say goodbye itself: close them here first, then let uvicorn go on.
    """

    def __init__(
        self, config: uvicorn.Config, sessions: Sessions, grace_s: float, send_buffer_bytes: int = 0
    ) -> None:
        super().__init__(config)
        self._sessions = sessions
        self._grace_s = grace_s
        self._send_buffer_bytes = send_buffer_bytes

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None:
            sockets = [self.config.bind_socket()]
        if self._send_buffer_bytes:
            # Connections accepted from a listening socket inherit its buffer sizes (Linux). A
            # client that stops reading then fills this much of the kernel's memory, not the
            # megabytes autotuning would grow to, and its send queue backs up soon after: the
            # slow-client ladder (docs/websocket.md) bounds the rest.
            for listener in sockets:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer_bytes)
        await super().serve(sockets=sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new clients while the open ones are told to go
        await self._sessions.close_all(CLOSE_GOING_AWAY, "server shutting down", self._grace_s)
        await super().shutdown(sockets=sockets)


def uvicorn_config(app: FastAPI, settings: DashboardApiSettings, guard: ConnectionGuard) -> uvicorn.Config:
    http, ws = guard.protocols(settings.ws_write_buffer_bytes)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Logging is tapewire's JSON on the root logger (configured by __main__): leave it alone.
        log_config=None,
        access_log=False,
        lifespan="on",
        # httptools and websockets-sansio, with the connection limits (connection_limits.py).
        http=http,
        ws=ws,
        # Frames up to max_client_message_bytes are read and answered; larger ones up to this get
        # an error reply; beyond it the connection is closed (1009) without reading more.
        ws_max_size=4 * settings.max_client_message_bytes,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        server_header=False,
    )


def serve(settings: DashboardApiSettings, stop: threading.Event, registry: CollectorRegistry) -> None:
    """Run dashboard_api until SIGTERM/SIGINT. uvicorn watches the signals itself while it serves,
    then raises the one it took again against the handlers that were there before (those of
    `stop`, which only set it): a clean shutdown exits 0 like every other service."""
    metrics = DashboardApiMetrics(registry)
    gc_tuning.tune(settings.gc_young_threshold)
    gc_tuning.PauseTimer(metrics.gc_pauses).install()
    build_server(settings, metrics=metrics).run()


def build_server(
    settings: DashboardApiSettings,
    registry: CollectorRegistry | None = None,
    metrics: DashboardApiMetrics | None = None,
) -> DashboardServer:
    metrics = metrics or DashboardApiMetrics(registry)
    sessions = Sessions(metrics)
    app = create_app(settings, metrics, sessions)
    guard = ConnectionGuard(
        settings.max_connections, settings.max_connections_per_ip, settings.handshake_timeout_s, metrics
    )
    _log_open_files_limit(raise_open_files_limit(), settings.max_connections)
    return DashboardServer(
        uvicorn_config(app, settings, guard),
        sessions,
        settings.shutdown_grace_s,
        settings.socket_send_buffer_bytes,
    )


def _log_open_files_limit(limit: int, max_connections: int) -> None:
    extra = {"open_files_limit": limit, "max_connections": max_connections}
    # Redis, PostgreSQL, Kafka, gRPC and the listeners need descriptors of their own.
    if limit != resource.RLIM_INFINITY and max_connections + OTHER_DESCRIPTORS > limit:
        log.warning(
            "max_connections is too close to the open files limit: the process runs out of "
            "descriptors first; lower DASHBOARD_API_MAX_CONNECTIONS or raise the hard limit",
            extra=extra,
        )
    else:
        log.info("open files limit", extra=extra)
