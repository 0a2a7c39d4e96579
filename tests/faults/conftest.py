"""Fixtures of the fault suite: each test's pipeline runs on its own topics, groups, keys and schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tapewire.keys import RedisKeys
from tapewire.settings import KafkaSettings, PostgresSettings, RedisSettings, TopicSettings
from tests.faults.checker import Stores
from tests.faults.harness import Pipeline, RedisServer, free_port


@pytest.fixture
def fault_env(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    redis_settings: RedisSettings,
    postgres_settings: PostgresSettings,
    unique: str,
) -> dict[str, str]:
    """The services' environment. Short session and transaction timeouts make failovers quick."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "PROCESSOR_TRANSACTION_TIMEOUT_MS": "6000",
        "TAPEWIRE_TOPIC_RAW": topics.raw,
        "TAPEWIRE_TOPIC_PROCESSED": topics.processed,
        "TAPEWIRE_TOPIC_PROCESSOR_STATE": topics.processor_state,
        "TAPEWIRE_TOPIC_PARTITIONS": str(topics.partitions),
        "REDIS_URL": redis_settings.url.get_secret_value(),
        "REDIS_KEY_PREFIX": redis_settings.key_prefix,
        "REDIS_UPDATES_CHANNEL": redis_settings.updates_channel,
        "DATABASE_URL": postgres_settings.url.get_secret_value(),
        "TAPEWIRE_PG_SCHEMA": postgres_settings.schema_name,
        "PROCESSOR_GROUP_ID": f"p{unique}",
        "PROCESSOR_HISTORY_GROUP_ID": f"h{unique}",
        "CACHE_UPDATER_GROUP_ID": f"c{unique}",
        "PROCESSOR_METRICS_HOST": "127.0.0.1",
        "CACHE_UPDATER_METRICS_HOST": "127.0.0.1",
        "CACHE_UPDATER_METRICS_PORT": str(free_port()),
        "DASHBOARD_API_HOST": "127.0.0.1",
        "DASHBOARD_API_PORT": str(free_port()),
    }


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
        redis_url=redis_settings.url.get_secret_value(),
        keys=RedisKeys.from_settings(redis_settings),
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
