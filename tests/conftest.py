"""Fixtures chained server -> settings -> client, each test on its own names.

The servers are the real ones: whatever KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and DATABASE_URL
point at, or else the local ones `tools/devstack.py` starts. Every test gets its own topics,
consumer group, Redis key prefix and channel, and PostgreSQL schema, so tests never see each
other's data nor a running `make run`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from psycopg import sql
from pydantic import SecretStr

from tapewire.db.migrate import migrate
from tapewire.kafka import ensure_all_topics
from tapewire.settings import KafkaSettings, PostgresSettings, RedisSettings, TopicSettings

TEST_PARTITIONS = 3


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """Addresses of the real Kafka, Redis and PostgreSQL the tests run against."""
    wanted = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "DATABASE_URL")
    if all(os.environ.get(name) for name in wanted):
        return {name: os.environ[name] for name in wanted}
    from tools.devstack import ensure_up

    return ensure_up()


@pytest.fixture
def unique() -> str:
    """A short name no other test uses."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka_settings(stack_env: dict[str, str]) -> KafkaSettings:
    # A short session timeout makes group joins and failovers quick in tests.
    return KafkaSettings(bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"], session_timeout_ms=6000)


@pytest.fixture
def topics(kafka_settings: KafkaSettings, unique: str) -> TopicSettings:
    """Fresh raw, processed, changelog and DLQ topics for this test."""
    names = TopicSettings(
        raw=f"t{unique}_raw",
        processed=f"t{unique}_processed",
        processor_state=f"t{unique}_state",
        commands=f"t{unique}_commands",
        processor_alerts=f"t{unique}_alerts",
        alert_events=f"t{unique}_alert_events",
        partitions=TEST_PARTITIONS,
    )
    ensure_all_topics(kafka_settings, names)
    return names


@pytest.fixture
def redis_settings(stack_env: dict[str, str], unique: str) -> Iterator[RedisSettings]:
    """A key prefix and update channel of this test's own; its keys are deleted afterwards."""
    settings = RedisSettings(
        url=SecretStr(stack_env["REDIS_URL"]),
        key_prefix=f"t{unique}:",
        updates_channel=f"t{unique}_updates",
        alerts_channel=f"t{unique}_alerts",
    )
    yield settings
    client = redis.Redis.from_url(stack_env["REDIS_URL"])
    keys = list(client.scan_iter(match=f"t{unique}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_client(redis_settings: RedisSettings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_settings.url.get_secret_value())
    yield client
    client.close()


@pytest.fixture
def postgres_settings(stack_env: dict[str, str], unique: str) -> Iterator[PostgresSettings]:
    """A migrated schema of this test's own, dropped afterwards."""
    settings = PostgresSettings(url=SecretStr(stack_env["DATABASE_URL"]), schema_name=f"t{unique}")
    migrate(settings)
    yield settings
    with psycopg.connect(stack_env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.schema_name)))
