"""The REST endpoints: check the parameters, ask a store, render with views."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from . import protocol, views
from .bars import Interval
from .deps import PrincipalDep, ServicesDep

router = APIRouter()

DEFAULT_BARS_LIMIT = 300


class ApiError(Exception):
    """A request the API refuses; rendered as {"error": reason, "code": code} with `status`."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


@router.get("/api/instruments")
async def instruments(services: ServicesDep, _caller: PrincipalDep) -> JSONResponse:
    return JSONResponse({"instruments": await services.states.instruments()})


@router.get("/api/snapshot")
async def snapshot(
    services: ServicesDep, _caller: PrincipalDep, instruments: str | None = None
) -> JSONResponse:
    """The current states of `instruments` (comma-separated), or of every instrument."""
    if instruments is None:
        names: tuple[str, ...] = tuple(await services.states.instruments())
    else:
        names = _checked(instruments.split(","), services.settings.max_instruments_per_request)
    found = await services.states.read(names)
    sent_ns = time.time_ns()
    return JSONResponse(
        {"states": [views.state_to_json(state, sent_ns) for state in found.states], "missing": found.missing}
    )


@router.get("/api/bars")
async def bars(
    services: ServicesDep,
    _caller: PrincipalDep,
    instrument: str,
    interval: Interval = "1m",
    limit: int | None = None,
) -> JSONResponse:
    """The most recent `limit` bars of `instrument` (default 300, at most max_bars_limit), oldest first."""
    (name,) = _checked([instrument], 1)
    most = services.settings.max_bars_limit
    if limit is None:
        limit = min(DEFAULT_BARS_LIMIT, most)
    elif not 1 <= limit <= most:
        raise ApiError(400, "invalid_limit", f"limit must be between 1 and {most}, got {limit}")
    rows = await services.bars.recent(name, interval, limit)
    return JSONResponse(
        {"instrument": name, "interval": interval, "bars": [views.bar_row_to_json(row) for row in rows]}
    )


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when Redis answers and live updates flow (PostgreSQL only serves history): not
    while draining or paused by an operator (so that a load balancer stops sending clients here)."""
    reasons = []
    if services.sessions.draining:
        reasons.append("draining")
    if not await services.states.ping():
        reasons.append("redis does not answer PING")
    if not services.relay.ready:
        reasons.append("not subscribed to updates (relay reconnecting)")
    if services.relay.paused:
        # Clients here get no live updates until an operator resumes: send them elsewhere.
        reasons.append("relay paused (POST /admin/relay/resume)")
    if reasons:
        return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _checked(names: list[str], limit: int) -> tuple[str, ...]:
    checked = protocol.check_instruments(names, limit)
    if isinstance(checked, protocol.ClientError):
        raise ApiError(400, checked.code, checked.reason)
    return checked
