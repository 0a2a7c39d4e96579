"""The offline images' entrypoints (deploy/images/), run by sh with the server replaced by a
stand-in that prints its arguments: the settings contract of the official images they replace."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[3] / "deploy" / "images"


def run(script: Path, *args: str, env: dict[str, str], path: Path | None = None) -> list[str]:
    base = {"PATH": f"{path}:/usr/bin:/bin" if path else "/usr/bin:/bin"}
    proc = subprocess.run(
        ["sh", str(script), *args], env={**base, **env}, capture_output=True, text=True, check=True
    )
    return proc.stdout.splitlines()


def test_kafka_variables_become_server_properties() -> None:
    lines = run(
        IMAGES / "kafka" / "server-properties.sh",
        env={
            "KAFKA_NODE_ID": "1",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "KAFKA_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS": "1000",
            "KAFKA_EXAMPLE__NAME": "x",
            "KAFKA_SASL_JAAS___CONFIG": "a=b c=d",
            "KAFKA_HEAP_OPTS": "-Xmx1g",
            "KAFKA_OPTS": "-Dx=y",
            "KAFKA_JMX_OPTS": "-Dcom.sun.management.jmxremote",
            "KAFKA_PORT": "tcp://10.0.0.1:9092",
            "KAFKA_PORT_9092_TCP_ADDR": "10.0.0.1",
            "KAFKA_SERVICE_HOST": "10.0.0.1",
            "CLUSTER_ID": "not-a-property",
        },
    )
    assert lines == [
        "example_name=x",
        "listeners=PLAINTEXT://:9092,CONTROLLER://:9093",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "node.id=1",
        "sasl.jaas-config=a=b c=d",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
        "log.dirs=/var/lib/kafka/data",
    ]


def test_kafka_log_dirs_when_given_are_not_defaulted() -> None:
    lines = run(IMAGES / "kafka" / "server-properties.sh", env={"KAFKA_LOG_DIRS": "/data/kafka"})
    assert lines == ["log.dirs=/data/kafka"]


@pytest.fixture
def fake_redis(tmp_path: Path) -> Path:
    """A `redis-server` on PATH that prints its arguments, one a line."""
    fake = tmp_path / "redis-server"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["redis-server"], ["--protected-mode", "no"]),
        (["redis-server", "--appendonly", "yes"], ["--protected-mode", "no", "--appendonly", "yes"]),
        # A config file (which must stay the first argument) decides for itself.
        (["redis-server", "/etc/redis.conf", "--port", "7000"], ["/etc/redis.conf", "--port", "7000"]),
    ],
)
def test_redis_runs_without_protected_mode(fake_redis: Path, args: list[str], expected: list[str]) -> None:
    assert run(IMAGES / "redis" / "docker-entrypoint.sh", *args, env={}, path=fake_redis) == expected


def test_redis_other_commands_run_as_given(fake_redis: Path) -> None:
    assert run(IMAGES / "redis" / "docker-entrypoint.sh", "echo", "hello", env={}) == ["hello"]


def test_entrypoints_are_executable() -> None:
    for script in IMAGES.glob("*/*.sh"):
        assert os.access(script, os.X_OK), script
