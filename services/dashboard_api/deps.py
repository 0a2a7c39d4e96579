"""What the endpoints depend on, opened by the app's lifespan and handed over as lifespan state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from .bars import BarStore
    from .fanout import Relay
    from .metrics import DashboardApiMetrics
    from .settings import DashboardApiSettings
    from .states import StateStore
    from .ws import Connections


@dataclass(frozen=True, slots=True)
class Services:
    settings: DashboardApiSettings
    states: StateStore
    bars: BarStore
    relay: Relay
    metrics: DashboardApiMetrics
    connections: Connections


def get_services(connection: HTTPConnection) -> Services:
    services = connection.state.services
    if not isinstance(services, Services):
        raise RuntimeError("dashboard_api services are missing: is the app's lifespan running?")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
