"""TAPEWIRE_TEST_SERVERS=containers: the tests' Kafka, Redis and PostgreSQL in containers.

testcontainers starts them from the images ``make containers`` builds (tools/containers), on the
Docker API that podman serves; the tests then run exactly as against devstack's servers. Kafka
is configured as compose.yaml configures it, plus a listener for clients on this side.

Ryuk, testcontainers' reaper, is an image from a registry, so it is off: the session stops its
own containers, and removes those a killed session left behind (the label holds the pid of the
session that started them) before starting its own. Every port is bound to loopback only.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import yaml

from tools.containers.engine import ensure_api, podman
from tools.containers.images import KAFKA, POSTGRES, REDIS, SERVER_IMAGES, build
from tools.devstack.kafka import kafka_new_cluster_id
from tools.devstack.paths import ROOT
from tools.devstack.process import pid_alive
from tools.isolation import free_port

LABEL = "io.tapewire.tests.pid"
START_TIMEOUT_S = 120.0
LOOPBACK = "127.0.0.1"


def remove_orphans(label: str) -> None:
    """Remove the containers whose `label` names a process that is gone."""
    rows = podman(
        "ps",
        "--all",
        "--filter",
        f"label={label}",
        "--format",
        f'{{{{.ID}}}} {{{{index .Labels "{label}"}}}}',
    )
    orphans = [
        cid for cid, _, pid in (row.partition(" ") for row in rows.stdout.splitlines()) if not _alive(pid)
    ]
    if orphans:
        podman("rm", "--force", "--volumes", *orphans)


def _alive(pid: str) -> bool:
    return pid.isdigit() and pid_alive(int(pid))


def kafka_environment(client_port: int) -> dict[str, str]:
    """compose.yaml's Kafka settings, with HOST, a listener for clients on this side.

    HOST is advertised as the published loopback port; the broker reaches itself (transactions,
    the group coordinator) on compose's PLAINTEXT listener, since the published port means
    nothing inside the container."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    env = {key: str(value) for key, value in compose["services"]["kafka"]["environment"].items()}
    return {
        **env,
        "CLUSTER_ID": kafka_new_cluster_id(),
        "KAFKA_LISTENERS": "HOST://:9092,PLAINTEXT://:9094,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"HOST://{LOOPBACK}:{client_port},PLAINTEXT://localhost:9094",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
    }


@contextmanager
def container_servers() -> Iterator[dict[str, str]]:
    """Start the three servers; yield KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and DATABASE_URL."""
    os.environ["DOCKER_HOST"] = ensure_api()
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    from testcontainers.core.container import DockerContainer  # reads the two variables above

    build(SERVER_IMAGES)
    remove_orphans(LABEL)

    def server(image: str, port: int, published: int, **env: str) -> Any:
        container = DockerContainer(image).with_kwargs(labels={LABEL: str(os.getpid())}).with_envs(**env)
        container.ports[port] = (LOOPBACK, published)  # docker-py's form for a host address
        return container

    ports = {name: free_port() for name in ("kafka", "redis", "postgres")}
    password = secrets.token_urlsafe(16)
    containers = (
        server(KAFKA.tag, 9092, ports["kafka"], **kafka_environment(ports["kafka"])),
        server(REDIS.tag, 6379, ports["redis"]),
        server(
            POSTGRES.tag,
            5432,
            ports["postgres"],
            POSTGRES_USER="tapewire",
            POSTGRES_DB="tapewire",
            POSTGRES_PASSWORD=password,
        ),
    )
    with ExitStack() as stack:
        for container in containers:
            stack.enter_context(container)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": f"{LOOPBACK}:{ports['kafka']}",
            "REDIS_URL": f"redis://{LOOPBACK}:{ports['redis']}/0",
            "DATABASE_URL": f"postgresql://tapewire:{password}@{LOOPBACK}:{ports['postgres']}/tapewire",
        }
        _wait("Kafka", lambda: _kafka_ready(env["KAFKA_BOOTSTRAP_SERVERS"]))
        _wait("Redis", lambda: _redis_ready(env["REDIS_URL"]))
        _wait("PostgreSQL", lambda: _postgres_ready(env["DATABASE_URL"]))
        yield env


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
