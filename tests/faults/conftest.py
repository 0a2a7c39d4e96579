"""Fixtures of the fault suite: each test's pipeline runs on its own topics, groups, keys and schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tapewire.settings import KafkaSettings, PostgresSettings, RedisSettings, TopicSettings
from tests.faults.checker import Stores
from tests.faults.harness import Pipeline, RedisServer
from tools.isolation import free_port


@pytest.fixture
def fault_env(env_for_services: Callable[..., dict[str, str]]) -> dict[str, str]:
    """The services' environment. Short session and transaction timeouts make failovers quick."""
    return env_for_services(
        PROCESSOR_TRANSACTION_TIMEOUT_MS="6000",
        PROCESSOR_METRICS_HOST="127.0.0.1",
        CACHE_UPDATER_METRICS_HOST="127.0.0.1",
        DASHBOARD_API_HOST="127.0.0.1",
        DASHBOARD_API_PORT=str(free_port()),
    )


@pytest.fixture
def stores(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    redis_settings: RedisSettings,
    postgres_settings: PostgresSettings,
) -> Stores:
    return Stores(
        kafka=kafka_settings,
        topics=topics,
        redis_settings=redis_settings,
        postgres=postgres_settings,
    )


@pytest.fixture
def pipelines(tmp_path: Path) -> Iterator[Callable[[Mapping[str, str]], Pipeline]]:
    """Make the test's pipeline from its final environment; whatever still runs is stopped after."""
    made: list[Pipeline] = []

    def make(env: Mapping[str, str]) -> Pipeline:
        made.append(Pipeline(env, tmp_path / "logs"))
        return made[-1]

    yield make
    for pipeline in made:
        pipeline.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, so it can be killed and come back empty."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()
