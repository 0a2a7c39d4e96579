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
