"""Admin endpoints for operators (admin role required when auth is configured):

GET  /admin/connections                       counts and the list of open sessions
POST /admin/connections/{id}/disconnect       close one session (4010)
POST /admin/relay/pause | /admin/relay/resume stop relaying updates / start again (sessions
                                              then catch up from history)
POST /admin/drain[?period_s=10]               for a deploy: not ready, refuse new sessions,
                                              close the open ones (1012) over period_s
"""

from __future__ import annotations

import asyncio
from collections import Counter

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..live.outbox import Ladder
from ..live.session import CLOSE_BY_OPERATOR
from .deps import AdminDep, AppContextDep
from .routes import errors

router = APIRouter(prefix="/admin")


# -- what the schema says of the bodies (documentation only: the routes render them) --------


class ConnectionJson(BaseModel):
    connection_id: str
    user_id: str
    transport: str
    encoding: str
    peer: str
    connected_at_ns: int
    subscriptions: int
    queued: int
    ladder: Ladder


class RelayJson(BaseModel):
    ready: bool
    paused: bool
    channels: int


class Connections(BaseModel):
    count: int
    by_transport: dict[str, int]
    draining: bool
    relay: RelayJson
    connections: list[ConnectionJson]


class Disconnected(BaseModel):
    disconnected: str


class Paused(BaseModel):
    paused: bool


class Draining(BaseModel):
    draining: bool
    sessions: int
    period_s: float


# The drain runs after its request returns; keep a reference so it is not collected mid-way.
_background: set[asyncio.Task[int]] = set()


@router.get("/connections", response_model=Connections, responses=errors(400, 401, 403))
async def connections(services: AppContextDep, _admin: AdminDep, limit: int = 1000) -> JSONResponse:
    sessions = services.sessions.all()
    by_transport = Counter(session.info.transport for session in sessions)
    listed = [
        {
            "connection_id": session.info.connection_id,
            "user_id": session.info.user_id,
            "transport": session.info.transport,
            "encoding": session.info.encoding,
            "peer": session.info.peer,
            "connected_at_ns": session.info.connected_at_ns,
            "subscriptions": session.subscriptions,
            "queued": session.queued,
            "ladder": session.ladder.value,
        }
        for session in sessions[: max(0, min(limit, 100_000))]
    ]
    relay = services.relay
    return JSONResponse(
        {
            "count": len(sessions),
            "by_transport": dict(by_transport),
            "draining": services.sessions.draining,
            "relay": {"ready": relay.ready, "paused": relay.paused, "channels": relay.channels},
            "connections": listed,
        }
    )


@router.post(
    "/connections/{connection_id}/disconnect", response_model=Disconnected, responses=errors(401, 403, 404)
)
async def disconnect(connection_id: str, services: AppContextDep, _admin: AdminDep) -> JSONResponse:
    session = services.sessions.get(connection_id)
    if session is None:
        return JSONResponse({"error": "no such connection", "code": "not_found"}, status_code=404)
    session.request_close(CLOSE_BY_OPERATOR, "disconnected by an operator")
    return JSONResponse({"disconnected": connection_id})


@router.post("/relay/pause", response_model=Paused, responses=errors(401, 403))
async def pause(services: AppContextDep, _admin: AdminDep) -> JSONResponse:
    services.relay.pause()
    return JSONResponse({"paused": True})


@router.post("/relay/resume", response_model=Paused, responses=errors(401, 403))
async def resume(services: AppContextDep, _admin: AdminDep) -> JSONResponse:
    services.relay.resume()
    return JSONResponse({"paused": False})


@router.post("/drain", status_code=202, response_model=Draining, responses=errors(400, 401, 403))
async def drain(services: AppContextDep, _admin: AdminDep, period_s: float | None = None) -> JSONResponse:
    if period_s is None:
        period_s = services.settings.drain_period_s
    if not 0 <= period_s <= 3600:
        return JSONResponse({"error": "period_s must be from 0 to 3600", "code": "invalid_request"}, 400)
    sessions = len(services.sessions)
    task = asyncio.create_task(services.sessions.drain(period_s), name="drain")
    _background.add(task)
    task.add_done_callback(_background.discard)
    return JSONResponse({"draining": True, "sessions": sessions, "period_s": period_s}, status_code=202)
