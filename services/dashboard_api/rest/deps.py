"""What the endpoints depend on, opened by the app's lifespan and handed over as lifespan state;
and who is calling (the token, when auth is configured)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from tapewire.auth import Principal, TokenVerifier, Unauthorized

if TYPE_CHECKING:
    from ..live.registry import Sessions
    from ..live.relay import Relay
    from ..live.session import AlertHandler
    from ..metrics import DashboardApiMetrics
    from ..settings import DashboardApiSettings
    from ..stores.bars import BarStore
    from ..stores.instruments import InstrumentStore
    from ..stores.states import StateStore


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: DashboardApiSettings
    states: StateStore
    bars: BarStore
    instruments: InstrumentStore
    relay: Relay
    metrics: DashboardApiMetrics
    sessions: Sessions
    verifier: TokenVerifier | None
    alerts: AlertHandler | None


def get_context(connection: HTTPConnection) -> AppContext:
    services = connection.state.services
    if not isinstance(services, AppContext):
        raise RuntimeError("dashboard_api services are missing: is the app's lifespan running?")
    return services


AppContextDep = Annotated[AppContext, Depends(get_context)]


class NotAllowed(Exception):
    """A REST request refused for who made it: 401 (no valid token) or 403 (not an admin)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def get_principal(connection: HTTPConnection, services: AppContextDep) -> Principal:
    """The caller: from the bearer token when auth is configured, else anonymous (and admin)."""
    if services.verifier is None:
        return Principal.anonymous(admin=True)
    try:
        return services.verifier.verify_header(connection.headers.get("authorization"))
    except Unauthorized as exc:
        services.metrics.auth_failures.labels("rest").inc()
        raise NotAllowed(401, exc.reason) from exc


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise NotAllowed(403, "admin role required")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]
