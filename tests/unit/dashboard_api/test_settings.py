from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from services.dashboard_api.settings import DashboardApiSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("DASHBOARD_API_")]:
        monkeypatch.delenv(name)
    settings = DashboardApiSettings()
    assert (settings.port, settings.send_queue_size, settings.max_bars_limit) == (8000, 2048, 5000)
    assert settings.cors_origins == ["*"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://a.example, https://b.example", ["https://a.example", "https://b.example"]),
        ('["https://a.example"]', ["https://a.example"]),
        ("", []),
        ("[]", []),
    ],
)
def test_cors_origins_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("DASHBOARD_API_CORS_ORIGINS", value)
    assert DashboardApiSettings().cors_origins == expected


def test_limits_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_API_SEND_QUEUE_SIZE", "0")
    with pytest.raises(ValidationError, match="send_queue_size"):
        DashboardApiSettings()


def test_defaults_are_the_ones_docs_websocket_md_states(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("DASHBOARD_API_")]:
        monkeypatch.delenv(name)
    settings = DashboardApiSettings()
    assert settings.max_subscriptions_per_connection == 1000
    assert settings.max_client_message_bytes == 65_536
    assert settings.max_messages_per_second == 50.0
    assert settings.send_queue_size == 2048
    assert settings.stalled_socket_s == 5.0
    assert (settings.heartbeat_s, settings.idle_timeout_s) == (15.0, 120.0)
    assert (settings.conflation_timeout_s, settings.resync_timeout_s) == (5.0, 10.0)
    assert settings.ws_per_message_deflate is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DASHBOARD_API_CONFLATION_TIMEOUT_S", "0"),
        ("DASHBOARD_API_RESYNC_TIMEOUT_S", "-1"),
        ("DASHBOARD_API_MAX_MESSAGES_PER_SECOND", "0"),
        ("DASHBOARD_API_MAX_CLIENT_MESSAGE_BYTES", "100"),
        ("DASHBOARD_API_HEARTBEAT_S", "0"),
    ],
)
def test_websocket_limits_are_checked(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("DASHBOARD_API_").lower()):
        DashboardApiSettings()
