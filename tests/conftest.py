"""Fixtures chained server -> settings -> client, each test on its own names.

The servers are the real ones: whatever KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and DATABASE_URL
point at, or else the local ones `python3 -m tools.devstack` starts. Every test gets its own topics,
consumer group, Redis key prefix and channel, and PostgreSQL schema, so tests never see each
other's data nor a running `make run`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from tapewire.settings import KafkaSettings, PostgresSettings, RedisSettings, TopicSettings
from tools.isolation import kafka_for_tests, own_postgres, own_redis, own_topics, service_env


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """`@pytest.mark.anyio` tests run on asyncio only (anyio's own pytest plugin runs them)."""
    return "asyncio"


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """Addresses of the real Kafka, Redis and PostgreSQL the tests run against.

    TAPEWIRE_TEST_SERVERS=containers: this session's own, in containers (tests/servers.py);
    else the three variables when set, else devstack's local servers."""
    if os.environ.get("TAPEWIRE_TEST_SERVERS") == "containers":
        from tests.servers import container_servers

        with container_servers() as env:
            yield env
        return
    wanted = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "DATABASE_URL")
    if all(os.environ.get(name) for name in wanted):
        yield {name: os.environ[name] for name in wanted}
        return
    from tools.devstack import ensure_up

    yield ensure_up()


@pytest.fixture
def unique() -> str:
    """A short name no other test uses."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka_settings(stack_env: dict[str, str]) -> KafkaSettings:
    return kafka_for_tests(stack_env)


@pytest.fixture
def topics(kafka_settings: KafkaSettings, unique: str) -> Iterator[TopicSettings]:
    """Fresh raw, processed, changelog and DLQ topics for this test, deleted afterwards."""
    with own_topics(kafka_settings, unique) as names:
        yield names


@pytest.fixture
def redis_settings(stack_env: dict[str, str], unique: str) -> Iterator[RedisSettings]:
    """A key prefix and update channel of this test's own; its keys are deleted afterwards."""
    with own_redis(stack_env, unique) as settings:
        yield settings


@pytest.fixture
def redis_client(redis_settings: RedisSettings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_settings.url.get_secret_value())
    yield client
    client.close()


@pytest.fixture
def postgres_settings(stack_env: dict[str, str], unique: str) -> Iterator[PostgresSettings]:
    """A migrated schema of this test's own, dropped afterwards."""
    with own_postgres(stack_env, unique) as settings:
        yield settings


@pytest.fixture
def env_for_services(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    redis_settings: RedisSettings,
    postgres_settings: PostgresSettings,
    unique: str,
) -> Callable[..., dict[str, str]]:
    """`env_for_services(**extra)`: the environment that points services started by this test
    at its own topics, keys, schema and groups (see `tools.isolation.service_env`)."""

    def build(**extra: str) -> dict[str, str]:
        return service_env(kafka_settings, topics, redis_settings, postgres_settings, unique, **extra)

    return build
