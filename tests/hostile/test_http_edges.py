"""dashboard_api's edges against hostile requests: forged-looking tokens, the schema with auth
on, unknown paths and methods, readiness while paused, and resume positions out of range."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest
from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed

from services.dashboard_api.live.protocol import MAX_VERSION
from services.dashboard_api.settings import DashboardApiSettings
from tapewire.auth import AuthSettings
from tapewire.settings import PostgresSettings, RedisSettings
from tapewire.v1 import stream_pb2
from tests.integration.dashboard_support import (
    Cache,
    make_settings,
    receive,
    send,
    serving,
    subscribe,
)

pytestmark = [pytest.mark.hostile, pytest.mark.timeout(90), pytest.mark.anyio]

SECRET = "hostile-test-secret-long-enough-for-hs256"
DOCS_PATHS = ("/openapi.json", "/docs", "/redoc")


@pytest.fixture
def auth_settings(redis_settings: RedisSettings, postgres_settings: PostgresSettings) -> DashboardApiSettings:
    return make_settings(redis_settings, postgres_settings, auth=AuthSettings(hs256_secret=SecretStr(SECRET)))


def bearer(**claims: Any) -> dict[str, str]:
    payload = {"sub": "mallory", "exp": int(time.time()) + 300, **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert (response.status_code, set(body), body["code"]) == (status, {"error", "code"}, code), body
    return body


# -- tokens -----------------------------------------------------------------------------------


async def test_a_string_exp_is_refused_on_rest_and_websocket(auth_settings: DashboardApiSettings) -> None:
    # PyJWT alone turns "9999999999" into a number: a token that never expires.
    forged = bearer(exp="9999999999")

    async with asyncio.timeout(80):
        async with serving(auth_settings) as app:
            body = assert_error(await app.http.get("/api/instruments", headers=forged), 401, "unauthorized")
            assert body["error"] == 'token "exp" claim must be a number'
            async with app.raw_ws(additional_headers=forged) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                4001,
                'unauthorized: token "exp" claim must be a number',
            )
            assert (await app.http.get("/api/instruments", headers=bearer())).status_code == 200


# -- the schema and its pages -----------------------------------------------------------------


async def test_the_schema_and_docs_need_a_token_when_auth_is_on(auth_settings: DashboardApiSettings) -> None:
    async with asyncio.timeout(80):
        async with serving(auth_settings) as app:
            for path in DOCS_PATHS:
                response = await app.http.get(path)
                assert_error(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer", path
                assert_error(await app.http.get(path, headers=bearer(exp="1")), 401, "unauthorized")
            schema = await app.http.get("/openapi.json", headers=bearer())
            assert schema.status_code == 200
            assert "/admin/relay/pause" in schema.json()["paths"]
            assert not set(DOCS_PATHS) & set(schema.json()["paths"])  # the guards stay out of it
            for path in ("/docs", "/redoc"):
                page = await app.http.get(path, headers=bearer())
                assert page.status_code == 200 and "/openapi.json" in page.text, path


async def test_the_schema_and_docs_stay_open_when_auth_is_off(
    dashboard_settings: DashboardApiSettings,
) -> None:
    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app:
            for path in DOCS_PATHS:
                assert (await app.http.get(path)).status_code == 200, path


# -- routing's own errors ---------------------------------------------------------------------


async def test_unknown_paths_and_wrong_methods_get_the_documented_error_shape(
    dashboard_settings: DashboardApiSettings, auth_settings: DashboardApiSettings
) -> None:
    async with asyncio.timeout(80):
        for settings in (dashboard_settings, auth_settings):
            async with serving(settings) as app:
                for path in ("/nope", "/api/../etc/passwd", "/api/instruments/x", "/ws"):
                    assert_error(await app.http.get(path), 404, "not_found")
                for method, path, allowed in [
                    ("POST", "/api/instruments", "GET"),
                    ("DELETE", "/readyz", "GET"),
                    ("GET", "/admin/relay/pause", "POST"),
                ]:
                    response = await app.http.request(method, path)
                    assert_error(response, 405, "method_not_allowed")
                    assert response.headers["allow"] == allowed, (method, path)


# -- readiness --------------------------------------------------------------------------------


async def test_readyz_is_503_while_the_relay_is_paused(dashboard_settings: DashboardApiSettings) -> None:
    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app:
            assert (await app.http.post("/admin/relay/pause")).status_code == 200
            ready = await app.http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "not ready",
                "reasons": ["relay paused (POST /admin/relay/resume)"],
            }
            assert (await app.http.post("/admin/relay/resume")).status_code == 200
            ready = await app.http.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ok"})


# -- resume positions -------------------------------------------------------------------------


@pytest.mark.parametrize("since", [2**64 - 1, 2**63, MAX_VERSION + 1])
async def test_a_since_beyond_int64_is_invalid_since_not_a_close(
    dashboard_settings: DashboardApiSettings, cache: Cache, since: int
) -> None:
    cache.put("A", 1)

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app, app.ws() as ws:
            await send(ws, {"type": "subscribe", "id": "s", "instruments": ["A"], "since": {"A": since}})
            error = await receive(ws)
            assert (error["type"], error["code"], error["id"]) == ("error", "invalid_since", "s")
            # Still open and usable; the bound itself is a resume Redis accepts.
            snapshot = await subscribe(ws, "A", since={"A": MAX_VERSION})
            assert (snapshot["ahead"], snapshot["resumed"], snapshot["gaps"]) == ({"A": 1}, {}, [])


async def test_a_since_ahead_of_the_server_is_named_and_its_updates_held_back(
    dashboard_settings: DashboardApiSettings, cache: Cache
) -> None:
    for version in (1, 2, 3):
        cache.put("A", version)
    cache.put("B", 1)

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app:
            async with app.ws() as ws:
                snapshot = await subscribe(ws, "A", "B", since={"A": 5, "B": 1})
                assert snapshot["ahead"] == {"A": 3}
                assert snapshot["resumed"] == {"B": {"from": 2, "to": 1}}  # A is not listed there
                assert (snapshot["states"], snapshot["missing"], snapshot["gaps"]) == ([], [], [])
                for version in (4, 5, 6):
                    cache.put("A", version)
                update = await receive(ws)
                assert (update["type"], update["instrument"], update["version"]) == ("update", "A", 6)
            async with app.raw_ws("encoding=protobuf") as ws:
                await ws.recv(decode=False)  # welcome
                await ws.send(json.dumps({"type": "subscribe", "instruments": ["A"], "since": {"A": 9}}))
                message = stream_pb2.ServerMessage.FromString(await ws.recv(decode=False))
                assert dict(message.snapshot.ahead) == {"A": 6}
