"""The app's own edges without servers: routing errors in the documented shape, the schema hidden
from FastAPI's defaults when auth is on, and /readyz while the relay is paused."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import cast

import httpx
import pytest
from pydantic import SecretStr

from services.dashboard_api.app import create_app
from services.dashboard_api.rest import routes
from services.dashboard_api.rest.deps import AppContext
from services.dashboard_api.settings import DashboardApiSettings
from tapewire.auth import AuthSettings

pytestmark = pytest.mark.anyio

SECRET = "unit-test-secret-that-is-long-enough!!"


def settings(auth: bool = False) -> DashboardApiSettings:
    # Every key given, so that no AUTH_* variable of the environment decides.
    keys = AuthSettings(
        hs256_secret=SecretStr(SECRET) if auth else None, rs256_public_key=None, rs256_public_key_file=None
    )
    return DashboardApiSettings(auth=keys, grpc_enabled=False, alerts_enabled=False)


async def request(auth: bool, method: str, path: str) -> httpx.Response:
    # No lifespan: nothing connects, so only what answers before any dependency is reachable.
    transport = httpx.ASGITransport(app=create_app(settings(auth)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path)


@pytest.mark.parametrize("auth", [False, True])
async def test_unknown_paths_and_wrong_methods_use_the_error_shape(auth: bool) -> None:
    missing = await request(auth, "GET", "/no/such/path")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found", "code": "not_found"})
    wrong = await request(auth, "POST", "/healthz")
    assert (wrong.status_code, wrong.json()["code"], wrong.headers["allow"]) == (
        405,
        "method_not_allowed",
        "GET",
    )


def test_fastapis_own_schema_and_docs_are_off_only_with_auth() -> None:
    open_app, guarded = create_app(settings()), create_app(settings(auth=True))
    assert (open_app.openapi_url, open_app.docs_url, open_app.redoc_url) == (
        "/openapi.json",
        "/docs",
        "/redoc",
    )
    assert (guarded.openapi_url, guarded.docs_url, guarded.redoc_url) == (None, None, None)
    # Served instead by docs_routes, behind the token: tests/hostile/test_http_edges.py.


@dataclass
class FakeRelay:
    ready: bool = True
    paused: bool = False


@dataclass
class FakeSessions:
    draining: bool = False


@dataclass
class FakeStates:
    async def ping(self) -> bool:
        return True


@dataclass
class FakeServices:
    relay: FakeRelay = field(default_factory=FakeRelay)
    sessions: FakeSessions = field(default_factory=FakeSessions)
    states: FakeStates = field(default_factory=FakeStates)


async def readyz(services: FakeServices) -> tuple[int, object]:
    response = await routes.readyz(cast(AppContext, services))
    return response.status_code, json.loads(bytes(response.body))


async def test_readyz_is_503_while_the_relay_is_paused() -> None:
    services = FakeServices()
    assert await readyz(services) == (200, {"status": "ok"})
    services.relay.paused = True
    assert await readyz(services) == (
        503,
        {"status": "not ready", "reasons": ["relay paused (POST /admin/relay/resume)"]},
    )
