"""The REST endpoints: check the parameters, ask a store, render with views."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.responses import Response

from ..live import protocol
from ..stores.bars import Interval
from . import views
from .deps import AppContextDep, PrincipalDep
from .listing import check_filter, find

router = APIRouter()

DEFAULT_BARS_LIMIT = 300


# -- what the schema says of the bodies (the routes render them with views; these only document) --


class ErrorBody(BaseModel):
    """Every refusal: a reason for people and a stable code for programs."""

    error: str
    code: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid parameters (code invalid_request or a specific one)"},
    401: {"model": ErrorBody, "description": "No valid bearer token, when auth is configured (unauthorized)"},
    403: {"model": ErrorBody, "description": "The token has no admin role (forbidden)"},
    404: {"model": ErrorBody, "description": "No such resource (not_found)"},
    503: {
        "model": ErrorBody,
        "description": "A store is unavailable (store_unavailable) or the server is at its connection "
        "limit (too_many_connections)",
    },
    # Declared so that FastAPI does not document its 422, which this API never sends (a
    # parameter it cannot parse is a 400): any other refusal has the same shape.
    "4XX": {"model": ErrorBody, "description": "Any other refusal, in the same shape"},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route: those named, a 503 (any route may be refused at the
    connection limit) and the catch-all 4XX."""
    keys: tuple[int | str, ...] = (*statuses, 503, "4XX")
    return {key: _ERRORS[key] for key in keys}


class CalendarJson(BaseModel):
    """When the instrument trades (tapewire/reference/calendar.py), in its venue's time zone."""

    timezone: str
    hours: str
    days: str
    pre_open: str
    holidays: list[str]


class InstrumentDetails(BaseModel):
    """An entry of the instrument master, and its market's status now."""

    symbol: str
    name: str
    asset_class: str
    currency: str
    venue: str
    tick_size: str
    decimals: int
    lot_size: str
    calendar: CalendarJson
    market_status: Literal["open", "pre_open", "closed"]
    status_until_ns: int


class Instruments(BaseModel):
    instruments: list[str]
    details: list[InstrumentDetails]


class BarJson(BaseModel):
    """A forming bar (in a state). Decimals are strings, null while unknown."""

    start_time_ns: int
    open: str | None
    high: str | None
    low: str | None
    close: str | None
    volume: str | None
    trade_count: int


class StageTimes(BaseModel):
    exchange_ns: int
    ingest_ns: int
    processed_ns: int
    cached_ns: int
    sent_ns: int


class StateJson(BaseModel):
    """One instrument's state (views.state_to_json). Decimals are strings, null while unknown."""

    instrument: str
    venue: str
    version: int
    last_sequence: int
    last_price: str | None
    last_size: str | None
    last_trade_time_ns: int
    bid_price: str | None
    bid_size: str | None
    ask_price: str | None
    ask_size: str | None
    mid: str | None
    spread: str | None
    spread_bps: float | None
    session_day: int
    session_open: str | None
    session_high: str | None
    session_low: str | None
    session_volume: str | None
    session_turnover: str | None
    trade_count: int
    vwap: str | None
    change: str | None
    change_pct: float | None
    previous_close: str | None
    change_basis: Literal["previous_close", "session_open"] | None
    session_close: str | None
    bar_1s: BarJson | None
    bar_1m: BarJson | None
    times: StageTimes


class Snapshot(BaseModel):
    states: list[StateJson]
    missing: list[str]


class StoredBar(BaseModel):
    """A completed bar from PostgreSQL (views.bar_row_to_json)."""

    start_time_ns: int
    start: str
    open: str
    high: str
    low: str
    close: str
    volume: str
    trade_count: int
    vwap: str | None


class Bars(BaseModel):
    instrument: str
    interval: Interval
    bars: list[StoredBar]


class Status(BaseModel):
    status: str


class NotReady(BaseModel):
    status: str
    reasons: list[str]


class ApiError(Exception):
    """A request the API refuses; rendered as {"error": reason, "code": code} with `status`."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


@router.get("/api/instruments", response_model=Instruments, responses=errors(400, 401))
async def instruments(
    services: AppContextDep, _caller: PrincipalDep, q: str = "", asset_class: str = ""
) -> JSONResponse:
    """Every instrument with a state or in the master, sorted, with the master's entry of each
    (`details`, in the same order); `q` keeps those whose symbol or name holds it (any case),
    `asset_class` those of that class."""
    refused = check_filter(q, asset_class)
    if refused is not None:
        raise ApiError(400, "invalid_filter", refused)
    found = await find(services.states, services.instruments, q, asset_class)
    return JSONResponse(found.json())


@router.get("/api/snapshot", response_model=Snapshot, responses=errors(400, 401))
async def snapshot(
    services: AppContextDep, _caller: PrincipalDep, instruments: str | None = None
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


@router.get("/api/bars", response_model=Bars, responses=errors(400, 401))
async def bars(
    services: AppContextDep,
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


@router.get("/healthz", response_model=Status, responses=errors())
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Status,
    responses={
        **errors(),
        503: {
            "model": NotReady | ErrorBody,
            "description": "Not ready, with the reasons; or refused at the connection limit",
        },
    },
)
async def readyz(services: AppContextDep) -> JSONResponse:
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


@router.get(
    "/metrics",
    response_class=Response,  # no media type of its own: the errors stay application/json
    responses={
        **errors(),
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "The Prometheus text exposition format",
        },
    },
)
async def metrics(services: AppContextDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _checked(names: list[str], limit: int) -> tuple[str, ...]:
    checked = protocol.check_instruments(names, limit)
    if isinstance(checked, protocol.ClientError):
        raise ApiError(400, checked.code, checked.reason)
    return checked
