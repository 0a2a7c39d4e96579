"""A run of its own on the shared local servers: topics, a Redis key prefix and channels, a
PostgreSQL schema and consumer groups named after one unique id (each removed afterwards), the
services' environment pointing at them, and free ports. What the tests and the bench share."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from psycopg import sql
from pydantic import SecretStr

from tapewire.db.migrate import migrate
from tapewire.kafka import ensure_all_topics
from tapewire.redis_client import connect
from tapewire.settings import KafkaSettings, PostgresSettings, RedisSettings, TopicSettings, host_ports

TEST_PARTITIONS = 3


def kafka_for_tests(stack_env: dict[str, str]) -> KafkaSettings:
    # A short session timeout makes group joins and failovers quick in tests.
    return KafkaSettings(bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"], session_timeout_ms=6000)


@contextmanager
def own_topics(kafka: KafkaSettings, unique: str, replication_factor: int = 1) -> Iterator[TopicSettings]:
    """Fresh raw, processed, changelog, command, alert, master and DLQ topics named after `unique`,
    deleted afterwards.

    Deleting matters: a broker that keeps every test's partitions slows down for all later
    tests (it checkpoints, tracks and garbage-collects thousands of partitions nobody reads)."""
    names = TopicSettings(
        raw=f"t{unique}_raw",
        processed=f"t{unique}_processed",
        processor_state=f"t{unique}_state",
        commands=f"t{unique}_commands",
        processor_alerts=f"t{unique}_alerts",
        alert_events=f"t{unique}_alert_events",
        instruments=f"t{unique}_instruments",
        partitions=TEST_PARTITIONS,
        replication_factor=replication_factor,
    )
    ensure_all_topics(kafka, names)
    try:
        yield names
    finally:
        delete_topics(kafka, list(names.all_topics()))


def delete_topics(kafka: KafkaSettings, topics: list[str], timeout_s: float = 30.0) -> None:
    """Delete `topics`, best effort: a leftover has a unique name and only costs the broker."""
    admin = AdminClient(dict(kafka.as_librdkafka_dict()))
    for future in admin.delete_topics(topics, operation_timeout=timeout_s).values():
        with suppress(KafkaException):
            future.result()


@contextmanager
def own_redis(stack_env: dict[str, str], unique: str) -> Iterator[RedisSettings]:
    """A key prefix and channels named after `unique`; its keys are deleted afterwards."""
    settings = RedisSettings(
        url=SecretStr(stack_env["REDIS_URL"]),
        key_prefix=f"t{unique}:",
        updates_channel=f"t{unique}_updates",
        alerts_channel=f"t{unique}_alerts",
        cluster=stack_env.get("REDIS_CLUSTER", "").lower() == "true",
        startup_nodes=host_ports(stack_env.get("REDIS_STARTUP_NODES", "")),
    )
    yield settings
    client = connect(settings)
    try:
        # One DEL per key: on a cluster they are on many slots (a cluster scan visits every master).
        pipe = client.pipeline(transaction=False)
        for key in client.scan_iter(match=f"t{unique}:*", count=1000):
            pipe.delete(key)
        pipe.execute()
    finally:
        client.close()


@contextmanager
def own_postgres(stack_env: dict[str, str], unique: str) -> Iterator[PostgresSettings]:
    """A migrated schema named after `unique`, dropped afterwards."""
    # By alias, as the environment names it (TAPEWIRE_PG_SCHEMA): what the type checker knows.
    settings = PostgresSettings(url=SecretStr(stack_env["DATABASE_URL"]), TAPEWIRE_PG_SCHEMA=f"t{unique}")
    migrate(settings)
    yield settings
    with psycopg.connect(stack_env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.schema_name)))


@contextmanager
def own_service_env(
    stack_env: dict[str, str], unique: str, **extra: str
) -> Iterator[tuple[dict[str, str], TopicSettings]]:
    """Topics, a Redis prefix and a PostgreSQL schema of `unique`'s own (each removed
    afterwards), and the services' environment pointing at them (`service_env`)."""
    kafka = kafka_for_tests(stack_env)
    with (
        own_topics(kafka, unique) as topics,
        own_redis(stack_env, unique) as redis_settings,
        own_postgres(stack_env, unique) as postgres,
    ):
        yield service_env(kafka, topics, redis_settings, postgres, unique, **extra), topics


def service_env(
    kafka: KafkaSettings,
    topics: TopicSettings,
    redis: RedisSettings,
    postgres: PostgresSettings,
    unique: str,
    **extra: str,
) -> dict[str, str]:
    """The environment that points the services at this test's own topics, Redis prefix and
    channel, PostgreSQL schema and consumer groups (a short session timeout for quick joins).
    Each service's metrics endpoint gets a free port of its own; `extra` overrides anything."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "TAPEWIRE_TOPIC_RAW": topics.raw,
        "TAPEWIRE_TOPIC_PROCESSED": topics.processed,
        "TAPEWIRE_TOPIC_PROCESSOR_STATE": topics.processor_state,
        "TAPEWIRE_TOPIC_COMMANDS": topics.commands,
        "TAPEWIRE_TOPIC_PROCESSOR_ALERTS": topics.processor_alerts,
        "TAPEWIRE_TOPIC_ALERT_EVENTS": topics.alert_events,
        "TAPEWIRE_TOPIC_INSTRUMENTS": topics.instruments,
        "TAPEWIRE_TOPIC_PARTITIONS": str(topics.partitions),
        "TAPEWIRE_TOPIC_REPLICATION_FACTOR": str(topics.replication_factor),
        "TAPEWIRE_TOPIC_MIN_INSYNC_REPLICAS": str(topics.min_insync_replicas),
        "REDIS_URL": redis.url.get_secret_value(),
        "REDIS_CLUSTER": str(redis.cluster).lower(),
        "REDIS_STARTUP_NODES": ",".join(
            f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in redis.startup_nodes
        ),
        "REDIS_KEY_PREFIX": redis.key_prefix,
        "REDIS_UPDATES_CHANNEL": redis.updates_channel,
        "REDIS_ALERTS_CHANNEL": redis.alerts_channel,
        "DATABASE_URL": postgres.url.get_secret_value(),
        "TAPEWIRE_PG_SCHEMA": postgres.schema_name,
        "PROCESSOR_GROUP_ID": f"p{unique}",
        "HISTORY_WRITER_GROUP_ID": f"h{unique}",
        "CACHE_UPDATER_GROUP_ID": f"c{unique}",
        # Any free port: a test may run several instances of a service.
        "DASHBOARD_API_GRPC_PORT": "0",
        "INGESTER_GRPC_PORT": "0",
        # Free now, so that nothing clashes with another test or a running `make run`.
        "PROCESSOR_METRICS_PORT": str(free_port()),
        "CACHE_UPDATER_METRICS_PORT": str(free_port()),
        "HISTORY_WRITER_METRICS_PORT": str(free_port()),
        "INGESTER_METRICS_PORT": str(free_port()),
        **extra,
    }


# Ports handed out for servers the tests start come from below the kernel's ephemeral range, so
# that an outgoing connection (a Kafka or Redis client, say) cannot take one as its source port
# between the moment it is picked and the moment a service binds it (or binds it again after a
# restart). Above 32768 is what Linux uses for ephemeral ports by default.
_SERVER_PORTS = range(20_000, 32_000)


# Ports handed out by this process: a port is free until the server it was chosen for binds it,
# so two calls before either binds could otherwise pick the same one (a test's ten or so ports
# from 12,000 did, now and then: the second server failed with "Address already in use").
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now and not handed out before by this process,
    outside the ephemeral range when possible."""
    for port in random.sample(_SERVER_PORTS, 50):
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _HANDED_OUT.add(port)
    return port
