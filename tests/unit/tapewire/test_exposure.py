"""Auth off means loopback only: dashboard_api and the ingester refuse any other address unless
AUTH_ALLOW_ANONYMOUS=true, and say which variable to change."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from services.dashboard_api.settings import DashboardApiSettings
from services.ingester.settings import IngesterSettings
from tapewire.auth import AuthSettings, exposure, is_loopback

SECRET = "s" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AUTH_", "DASHBOARD_API_", "INGESTER_")):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("api.internal", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_auth_off_beyond_loopback_is_named_with_what_to_do() -> None:
    problem = exposure(
        AuthSettings(), {"DASHBOARD_API_HOST": "0.0.0.0", "DASHBOARD_API_GRPC_HOST": "127.0.0.1"}
    )
    assert problem is not None
    assert "DASHBOARD_API_HOST=0.0.0.0" in problem and "GRPC" not in problem
    assert "AUTH_HS256_SECRET" in problem and "AUTH_ALLOW_ANONYMOUS=true" in problem


def test_a_key_or_an_explicit_allowance_or_loopback_is_fine() -> None:
    listeners = {"X_HOST": "0.0.0.0"}
    assert exposure(AuthSettings(hs256_secret=SECRET), listeners) is None
    assert exposure(AuthSettings(allow_anonymous=True), listeners) is None
    assert exposure(AuthSettings(), {"X_HOST": "127.0.0.1"}) is None


def test_the_services_default_to_loopback() -> None:
    api = DashboardApiSettings()
    assert (api.host, api.grpc_host) == ("127.0.0.1", "127.0.0.1")
    assert IngesterSettings().grpc_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (DashboardApiSettings, "DASHBOARD_API_HOST"),
        (DashboardApiSettings, "DASHBOARD_API_GRPC_HOST"),
        (IngesterSettings, "INGESTER_GRPC_HOST"),
    ],
)
def test_a_service_refuses_to_listen_on_the_network_with_auth_off(
    monkeypatch: pytest.MonkeyPatch, settings: type[DashboardApiSettings | IngesterSettings], variable: str
) -> None:
    monkeypatch.setenv(variable, "0.0.0.0")
    with pytest.raises(ValidationError, match=f"auth is off and {variable}=0.0.0.0"):
        settings()
    monkeypatch.setenv("AUTH_ALLOW_ANONYMOUS", "true")
    assert settings().auth.allow_anonymous
    monkeypatch.delenv("AUTH_ALLOW_ANONYMOUS")
    monkeypatch.setenv("AUTH_HS256_SECRET", SECRET)
    assert settings().auth.enabled


def test_a_disabled_grpc_server_exposes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTER_GRPC_HOST", "0.0.0.0")
    monkeypatch.setenv("INGESTER_GRPC_ENABLED", "false")
    assert not IngesterSettings().grpc_enabled
