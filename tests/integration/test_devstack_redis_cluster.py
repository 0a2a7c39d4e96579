"""What `DEVSTACK_REDIS_CLUSTER=1 make run` starts (tools/devstack/redis_cluster.py), on ports of
this test's own (from 17400, so never devstack's 16379 nor the suite's Redis): six nodes form one
cluster of 3 masters and 3 replicas that redis-py's cluster client uses; a master killed with
SIGKILL is replaced by its replica within seconds, with every key written before it, and
tapewire's clients whose REDIS_URL names the dead node find the cluster from their startup nodes;
and `down` stops every node and wipes their data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from functools import partial
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from redis.cluster import RedisCluster

from services.dashboard_api.live.sharded import ShardedConnector
from services.dashboard_api.stores.redis_client import open_redis
from tapewire.redis_client import connect
from tapewire.settings import RedisSettings
from tests.support import wait_for
from tools.devstack.paths import HOST, REDIS_BUS_OFFSET, REDIS_CLUSTER_NODES
from tools.devstack.process import CMDLINE_HINT, pid_alive, port_open
from tools.devstack.redis_cluster import (
    cluster_directory,
    cluster_down,
    cluster_running,
    cluster_up,
    masters,
    node_pid,
    wait_healthy,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEYS = 50
FAILOVER_S = 10.0  # a node timeout of 1 s: the replica takes over in 2–3 s here


def free_cluster_ports() -> list[int]:
    """Six consecutive client ports from 17400 up that are free, their cluster bus ports too
    (below 17500, where tests/faults/test_redis_cluster.py runs its cluster)."""
    for first in range(17400, 17500, 10):
        ports = list(range(first, first + REDIS_CLUSTER_NODES))
        if not any(port_open(p) or port_open(p + REDIS_BUS_OFFSET) for p in ports):
            return ports
    pytest.fail("no six free ports (and their bus ports) between 17400 and 17500")


def replica_of(master: int) -> int:
    with redis.Redis(HOST, master, decode_responses=True) as node:
        return int(node.info("replication")["slave0"]["port"])


def replicated(master: int) -> bool:
    """Whether the replica of ``master`` has everything the master has written (no writes run)."""
    with redis.Redis(HOST, master) as node:
        written = int(node.info("replication")["master_repl_offset"])
    with redis.Redis(HOST, replica_of(master)) as replica:
        return int(replica.info("replication")["slave_repl_offset"]) >= written


async def read_async(settings: RedisSettings, keys: list[str]) -> tuple[list[Any], set[tuple[str, int]]]:
    """`keys` read through dashboard_api's client, and the masters its relay's connector finds."""
    client = open_redis(settings, max_connections=4, pool_timeout_s=2)
    try:
        values = [await client.get(key) for key in keys]
    finally:
        await client.aclose()
    connector = ShardedConnector(
        settings.url.get_secret_value(), "devstack-cluster", startup_nodes=settings.startup_nodes
    )
    return values, (await connector.slot_map()).masters


def cluster_state(port: int) -> str:
    with redis.Redis(HOST, port, decode_responses=True) as node:
        return str(node.cluster("info")["cluster_state"])


def test_devstack_runs_a_redis_cluster_that_fails_over_and_stops_it() -> None:
    ports = free_cluster_ports()
    first = ports[0]
    keys = {f"devstack-cluster:{i}": str(i) for i in range(KEYS)}
    pids: list[int] = []
    try:
        assert cluster_up(first) == ports
        assert cluster_running(first)
        pids = [pid for pid in map(node_pid, ports) if pid is not None]
        assert len(pids) == REDIS_CLUSTER_NODES
        with RedisCluster(host=HOST, port=first, decode_responses=True) as client:
            assert sorted(node.port for node in client.get_primaries()) == masters(first)
            assert len(masters(first)) == 3 and len(client.get_replicas()) == 3
            for key, value in keys.items():
                client.set(key, value)
            assert {client.get_node_from_key(key).port for key in keys} == set(masters(first))
            assert [client.get(key) for key in keys] == list(keys.values())
        before = masters(first)
        for master in before:
            wait_for(partial(replicated, master), 10, f"the replica of {master} to have every key")

        victim = before[0]
        heir = replica_of(victim)
        victim_pid = node_pid(victim)
        assert victim_pid is not None
        os.kill(victim_pid, signal.SIGKILL)
        killed = time.monotonic()
        survivors = [p for p in ports if p != victim]
        wait_for(lambda: heir in masters(first), FAILOVER_S, f"{heir} to take over from {victim}")
        wait_healthy(survivors, FAILOVER_S - (time.monotonic() - killed))
        print(f"failover of {victim} to {heir} in {time.monotonic() - killed:.1f}s")
        assert masters(first) == sorted({*before, heir} - {victim})
        assert [cluster_state(p) for p in survivors] == ["ok"] * len(survivors)
        with RedisCluster(host=HOST, port=heir, decode_responses=True) as client:
            assert [client.get(key) for key in keys] == list(keys.values())
        # Every client tapewire opens, told of the dead node first, finds the cluster from the
        # startup nodes (REDIS_STARTUP_NODES).
        dead_first = RedisSettings(
            url=SecretStr(f"redis://{HOST}:{victim}/0"),
            cluster=True,
            startup_nodes=",".join(f"{HOST}:{port}" for port in survivors),
        )
        with contextlib.closing(connect(dead_first, decode_responses=True)) as sync_client:
            assert [sync_client.get(key) for key in keys] == list(keys.values())
        values, relay_masters = asyncio.run(read_async(dead_first, list(keys)))
        assert values == [value.encode() for value in keys.values()]
        assert relay_masters == {(HOST, port) for port in masters(first)}
    finally:
        cluster_down(first, wipe=True)
    assert not any(pid_alive(pid, CMDLINE_HINT["redis"]) for pid in pids)
    assert not any(node_pid(p) for p in ports)
    assert not cluster_directory(first).exists()
