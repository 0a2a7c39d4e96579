"""/openapi.json, /docs and /redoc behind the bearer token, for when auth is configured.

FastAPI serves them to anyone; the schema lists every endpoint, the admin ones included, so
with auth on `create_app` turns FastAPI's own off and adds these instead. The pages' browser
scripts fetch /openapi.json without a token: with auth on they work only for a client (or a
proxy) that sends the Authorization header on every request. With auth off FastAPI's own are
served, open as the rest of the API.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from .deps import PrincipalDep

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"

router = APIRouter(include_in_schema=False)


@router.get(OPENAPI_PATH)
async def openapi(request: Request, _caller: PrincipalDep) -> JSONResponse:
    return JSONResponse(_app(request).openapi())


@router.get(DOCS_PATH)
async def swagger_ui(request: Request, _caller: PrincipalDep) -> HTMLResponse:
    title = f"{_app(request).title} - Swagger UI"
    return get_swagger_ui_html(openapi_url=_schema_url(request), title=title)


@router.get(REDOC_PATH)
async def redoc(request: Request, _caller: PrincipalDep) -> HTMLResponse:
    return get_redoc_html(openapi_url=_schema_url(request), title=f"{_app(request).title} - ReDoc")


def _app(request: Request) -> FastAPI:
    app = request.app
    assert isinstance(app, FastAPI)
    return app


def _schema_url(request: Request) -> str:
    # Behind a proxy that mounts the API under a prefix, as FastAPI's own pages do.
    return str(request.scope.get("root_path", "")).rstrip("/") + OPENAPI_PATH
