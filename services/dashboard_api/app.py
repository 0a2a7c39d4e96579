"""create_app(): the FastAPI application; its lifespan opens Redis, PostgreSQL and the relay."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tapewire import tracing
from tapewire.auth import TokenVerifier
from tapewire.errors import StoreUnavailable
from tapewire.grpc_server import GrpcServerOptions, start_grpc_server
from tapewire.keys import RedisKeys

from .alerts.commands import AlertCommandMetrics, AlertCommands, open_producer
from .alerts.session_alerts import Alerts
from .alerts.store import AlertStore
from .live import ws
from .live.grpc_api import dashboard_service
from .live.pubsub import Connector, PubSubConnector
from .live.registry import Sessions
from .live.relay import Relay
from .live.session import CLOSE_GOING_AWAY
from .live.sharded import ShardedConnector
from .metrics import DashboardApiMetrics
from .rest import admin, docs, routes
from .rest.deps import AppContext, NotAllowed
from .settings import DashboardApiSettings
from .stores.bars import BarStore
from .stores.instruments import InstrumentStore
from .stores.postgres import open_pool
from .stores.redis_client import open_redis
from .stores.states import StateStore

log = logging.getLogger(__name__)


def create_app(
    settings: DashboardApiSettings,
    metrics: DashboardApiMetrics | None = None,
    sessions: Sessions | None = None,
) -> FastAPI:
    """The app; nothing connects until its lifespan starts."""
    app_metrics = DashboardApiMetrics() if metrics is None else metrics
    app_sessions = Sessions(app_metrics) if sessions is None else sessions

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, AppContext]]:
        async with open_services(settings, app_metrics, app_sessions) as services:
            yield {"services": services}

    # The schema names every endpoint, admin ones included: with auth on, rest/docs.py serves it
    # (and the pages that show it) to callers with a valid token only.
    guarded = settings.auth.enabled
    app = FastAPI(
        title="tapewire dashboard_api",
        version="1",
        lifespan=lifespan,
        openapi_url=None if guarded else docs.OPENAPI_PATH,
        docs_url=None if guarded else docs.DOCS_PATH,
        redoc_url=None if guarded else docs.REDOC_PATH,
    )
    if guarded:
        app.include_router(docs.router)
    app.include_router(routes.router)
    app.include_router(ws.router)
    app.include_router(admin.router)
    app.add_exception_handler(routes.ApiError, _api_error)
    app.add_exception_handler(NotAllowed, _not_allowed)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )
    return app


@asynccontextmanager
async def open_services(
    settings: DashboardApiSettings, metrics: DashboardApiMetrics, sessions: Sessions
) -> AsyncIterator[AppContext]:
    verifier = TokenVerifier.optional(settings.auth)
    if verifier is None:
        log.warning(
            "AUTH IS OFF: every client is anonymous and may use the admin endpoints; "
            "set AUTH_HS256_SECRET or AUTH_RS256_PUBLIC_KEY before exposing dashboard_api"
        )
    url = settings.redis.url.get_secret_value()
    keys = RedisKeys.from_settings(settings.redis)
    redis = open_redis(settings.redis, settings.redis_max_connections, settings.redis_pool_timeout_s)
    # The relay's subscription is a connection of its own (one per master on a cluster), read in
    # bulk (pubsub.py); the relay reconnects (and resyncs its sessions) itself. It is named after
    # the channel so that CLIENT LIST tells which relay is which.
    relay_name = _client_name(f"dashboard_api-relay:{keys.channel}")
    subscriptions: Connector = (
        ShardedConnector(
            url,
            keys.channel,
            client_name=relay_name,
            connect_timeout_s=2,
            shards_lost=metrics.relay_shards_lost.set,
            startup_nodes=settings.redis.startup_nodes,
        )
        if settings.redis.cluster
        else PubSubConnector(url, client_name=relay_name, connect_timeout_s=2)
    )
    pool = open_pool(settings.postgres, settings.db_pool_max_size, settings.db_timeout_s)
    await pool.open(wait=False)
    tracer = tracing.start("dashboard_api", settings.tracing)
    relay = Relay(subscriptions, keys, metrics, tracer=tracer)
    relay.start()
    commands = None
    if settings.alerts_enabled:
        commands = AlertCommands(
            open_producer(settings.kafka),
            settings.topics.commands,
            AlertCommandMetrics(metrics.registry),
            queue_size=settings.alert_queue_size,
            workers=settings.alert_workers,
        )
        commands.start()
    services = AppContext(
        settings=settings,
        states=StateStore(redis, keys),
        bars=BarStore(pool),
        instruments=InstrumentStore(pool),
        relay=relay,
        metrics=metrics,
        sessions=sessions,
        verifier=verifier,
        alerts=None
        if commands is None
        else Alerts(commands, AlertStore(redis, keys), settings.max_alerts_per_user),
    )
    grpc_server = None
    if settings.grpc_enabled:
        grpc_server = await start_grpc_server(
            GrpcServerOptions(
                host=settings.grpc_host,
                port=settings.grpc_port,
                max_receive_message_bytes=settings.max_client_message_bytes,
                max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
                tls=settings.grpc_tls(),
            ),
            [dashboard_service(services)],
            verifier,
        )
    log.info("dashboard_api started", extra={"grpc_port": grpc_server.port if grpc_server else None})
    try:
        yield services
    finally:
        if grpc_server is not None:
            await grpc_server.stop(settings.shutdown_grace_s)
        if commands is not None:
            await commands.stop(settings.shutdown_grace_s)
        # Under uvicorn the server has closed them already (see server.py); other servers may not.
        await sessions.close_all(CLOSE_GOING_AWAY, "server shutting down", settings.shutdown_grace_s)
        await relay.stop()
        await asyncio.to_thread(tracer.close)  # exports what is left: blocking, off the loop
        await pool.close()
        await redis.aclose()
        log.info("dashboard_api stopped")


def _client_name(name: str) -> str:
    # Redis refuses CLIENT SETNAME with spaces or anything outside printable ASCII.
    return re.sub(r"[^!-~]", "_", name)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, routes.ApiError)
    return JSONResponse({"error": exc.reason, "code": exc.code}, status_code=exc.status)


async def _not_allowed(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotAllowed)
    code = "unauthorized" if exc.status == 401 else "forbidden"
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse({"error": exc.reason, "code": code}, status_code=exc.status, headers=headers)


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][1:]) or 'request'}: {error['msg']}"
        for error in exc.errors()
    )
    return JSONResponse({"error": problems, "code": "invalid_request"}, status_code=400)


# The codes of the errors routing raises itself (unknown path, wrong method, ...).
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


async def _http_error(_request: Request, exc: Exception) -> Response:
    """Routing's own errors in the documented shape; their headers (Allow on a 405) kept."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (204, 304) or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)  # no body allowed
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse({"error": str(exc.detail), "code": code}, exc.status_code, headers=exc.headers)


async def _store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("store unavailable", extra={"error": str(exc)})
    return JSONResponse(
        {"error": f"temporarily unavailable: {exc}", "code": "store_unavailable"}, status_code=503
    )
