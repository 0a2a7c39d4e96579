"""Fixtures of the dashboard_api tests (test_dashboard_api.py, test_ws_protocol.py)."""

from __future__ import annotations

import pytest
import redis

from services.dashboard_api.settings import DashboardApiSettings
from tapewire.settings import PostgresSettings, RedisSettings
from tests.integration.dashboard_support import Cache, make_settings


@pytest.fixture
def dashboard_settings(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings
) -> DashboardApiSettings:
    return make_settings(redis_settings, postgres_settings)


@pytest.fixture
def cache(redis_client: redis.Redis, redis_settings: RedisSettings) -> Cache:
    return Cache(redis_client, redis_settings)
