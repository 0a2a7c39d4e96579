"""RedisSettings: the startup nodes of a Redis Cluster, read as `host:port` pairs, and every
malformed or pointless list refused at start-up with the variable to fix."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from tapewire.settings import RedisSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("REDIS_")]:
        monkeypatch.delenv(name)


def test_no_startup_nodes_by_default() -> None:
    assert RedisSettings().startup_nodes == ()
    assert RedisSettings(cluster=True).startup_nodes == ()


def test_startup_nodes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    monkeypatch.setenv("REDIS_STARTUP_NODES", " node-2:6379, 10.0.0.3:7000 ,[fd00::4]:6380,")
    assert RedisSettings().startup_nodes == (("node-2", 6379), ("10.0.0.3", 7000), ("fd00::4", 6380))


def test_an_empty_list_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_STARTUP_NODES", " ")
    assert RedisSettings().startup_nodes == ()


@pytest.mark.parametrize(
    "entry", ["node-2", "node-2:", ":6379", "node-2:http", "node-2:0", "node-2:65536", "[::1]"]
)
def test_a_malformed_node_is_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match=r"REDIS_STARTUP_NODES: .* is not host:port"):
        RedisSettings(cluster=True, startup_nodes=f"node-1:6379,{entry}")


def test_startup_nodes_need_a_cluster() -> None:
    with pytest.raises(ValidationError, match="REDIS_STARTUP_NODES needs REDIS_CLUSTER=true"):
        RedisSettings(startup_nodes="node-2:6379")
