"""devstack's clusters: node ports, the variables they export, each Kafka node's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapewire.settings import host_ports
from tools.devstack.errors import DevstackError
from tools.devstack.kafka import cluster_node_properties
from tools.devstack.paths import env_vars, kafka_node_ports, local_value


@pytest.fixture(autouse=True)
def own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DEVSTACK_KAFKA_BROKERS",
        "DEVSTACK_KAFKA_PORT",
        "KAFKA_BOOTSTRAP_SERVERS",
        *REDIS_VARIABLES,
    ):
        monkeypatch.delenv(name, raising=False)


REDIS_VARIABLES = ("DEVSTACK_REDIS_CLUSTER", "DEVSTACK_REDIS_PORT", "REDIS_URL")


def test_a_local_redis_cluster_names_node_1_and_the_others_as_startup_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not {"REDIS_CLUSTER", "REDIS_STARTUP_NODES"} & set(env_vars())
    monkeypatch.setenv("DEVSTACK_REDIS_CLUSTER", "1")
    monkeypatch.setenv("DEVSTACK_REDIS_PORT", "27000")
    values = env_vars()
    assert values["REDIS_URL"] == "redis://127.0.0.1:27000/0"
    assert values["REDIS_CLUSTER"] == "true"
    assert host_ports(values["REDIS_STARTUP_NODES"]) == tuple(("127.0.0.1", p) for p in range(27001, 27006))
    monkeypatch.setenv("REDIS_URL", "redis://redis.example:6379/0")
    assert not {"REDIS_CLUSTER", "REDIS_STARTUP_NODES"} & set(env_vars())


def test_one_broker_is_the_default_and_unchanged() -> None:
    assert kafka_node_ports() == {1: (19092, 19093)}
    assert local_value("kafka") == "127.0.0.1:19092"
    assert "TAPEWIRE_TOPIC_REPLICATION_FACTOR" not in env_vars()


def test_three_brokers_take_two_ports_each_and_replicate_topics_three_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEVSTACK_KAFKA_BROKERS", "3")
    monkeypatch.setenv("DEVSTACK_KAFKA_PORT", "29092")
    assert kafka_node_ports() == {1: (29092, 29093), 2: (29094, 29095), 3: (29096, 29097)}
    values = env_vars()
    assert values["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    assert values["TAPEWIRE_TOPIC_REPLICATION_FACTOR"] == "3"


def test_an_external_kafka_gets_no_replication_factor_from_devstack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSTACK_KAFKA_BROKERS", "3")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    assert env_vars()["KAFKA_BOOTSTRAP_SERVERS"] == "kafka.example:9092"
    assert "TAPEWIRE_TOPIC_REPLICATION_FACTOR" not in env_vars()


@pytest.mark.parametrize("value", ["0", "10", "three"])
def test_a_broker_count_out_of_range_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DEVSTACK_KAFKA_BROKERS", value)
    with pytest.raises(DevstackError, match="DEVSTACK_KAFKA_BROKERS"):
        kafka_node_ports()


def test_each_node_is_a_broker_and_a_voter_of_the_whole_quorum(tmp_path: Path) -> None:
    ports = {1: (100, 101), 2: (102, 103), 3: (104, 105)}
    lines = cluster_node_properties(2, ports, tmp_path).splitlines()
    settings = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert settings["node.id"] == "2"
    assert settings["process.roles"] == "broker,controller"
    assert settings["controller.quorum.voters"] == "1@127.0.0.1:101,2@127.0.0.1:103,3@127.0.0.1:105"
    assert "controller.quorum.bootstrap.servers" not in settings
    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:102,CONTROLLER://127.0.0.1:103"
    assert settings["min.insync.replicas"] == "2"
    assert settings["transaction.state.log.replication.factor"] == "3"
    assert settings["log.dirs"] == str(tmp_path)
