"""TAPEWIRE_TEST_SERVERS=containers: the tests' Kafka, Redis and PostgreSQL in containers.

testcontainers starts them from the images ``make containers`` builds (tools/containers), on the
Docker API that podman serves; the tests then run exactly as against devstack's servers. Ryuk,
testcontainers' reaper, is an image from a registry, so it is off: the session stops its own
containers, and removes any a killed session left behind (they carry LABEL) before starting.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from tools.containers.engine import ensure_api, podman
from tools.containers.images import KAFKA, POSTGRES, REDIS, SERVERS, build
from tools.isolation import free_port

LABEL = "io.tapewire.tests"
START_TIMEOUT_S = 120.0


@contextmanager
def container_servers() -> Iterator[dict[str, str]]:
    """Start the three servers; yield KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and DATABASE_URL."""
    os.environ["DOCKER_HOST"] = ensure_api()
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    from testcontainers.core.container import DockerContainer  # reads the two variables above

    build(SERVERS)
    stale = podman("ps", "--all", "--quiet", "--filter", f"label={LABEL}").stdout.split()
    if stale:
        podman("rm", "--force", *stale)

    def server(image: str) -> DockerContainer:
        return DockerContainer(image).with_kwargs(labels={LABEL: "1"})

    kafka_port = free_port()
    kafka = (
        server(KAFKA.tag)
        .with_bind_ports(9092, kafka_port)
        .with_envs(
            CLUSTER_ID=_kraft_cluster_id(),
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            # HOST is what clients on the host dial (the port published for this session);
            # the broker reaches itself (transactions, the group coordinator) on BROKER, as
            # the published port means nothing inside the container.
            KAFKA_LISTENERS="HOST://:9092,BROKER://:9094,CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"HOST://127.0.0.1:{kafka_port},BROKER://localhost:9094",
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,HOST:PLAINTEXT,BROKER:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS="1000",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
            KAFKA_NUM_PARTITIONS="6",
        )
    )
    redis = server(REDIS.tag).with_exposed_ports(6379)
    password = secrets.token_urlsafe(16)
    postgres = (
        server(POSTGRES.tag)
        .with_exposed_ports(5432)
        .with_envs(POSTGRES_USER="tapewire", POSTGRES_DB="tapewire", POSTGRES_PASSWORD=password)
    )
    with ExitStack() as stack:
        for container in (kafka, redis, postgres):
            stack.enter_context(container)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
            "REDIS_URL": f"redis://127.0.0.1:{redis.get_exposed_port(6379)}/0",
            "DATABASE_URL": f"postgresql://tapewire:{password}@127.0.0.1:{postgres.get_exposed_port(5432)}/tapewire",
        }
        _wait("Kafka", lambda: _kafka_ready(env["KAFKA_BOOTSTRAP_SERVERS"]))
        _wait("Redis", lambda: _redis_ready(env["REDIS_URL"]))
        _wait("PostgreSQL", lambda: _postgres_ready(env["DATABASE_URL"]))
        yield env


def _kraft_cluster_id() -> str:
    from tools.devstack.kafka import kafka_new_cluster_id

    return kafka_new_cluster_id()


def _wait(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} in its container did not answer within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.5)


def _kafka_ready(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
    except Exception:
        return False
    return bool(metadata.brokers)


def _redis_ready(url: str) -> bool:
    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _postgres_ready(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False
