"""The whole pipeline on a Redis Cluster (3 masters, 3 replicas, started by devstack's own code on
this test's ports), chosen by configuration only (REDIS_CLUSTER=true), and a master killed with
SIGKILL under load: the node REDIS_URL names, the others being the services' startup nodes.

Its replica is promoted within a few seconds. Meanwhile cache_updater's batches that touch the dead
master's slots fail and are retried; the relay loses that master's subscription, keeps the others,
subscribes the promoted replica once the other nodes name it, and resyncs every session from the
history streams. cache_updater, killed and started again meanwhile, finds the cluster from its
startup nodes. The promoted replica carries the markers of the master it replaced, so cache_updater
re-applies the changelog's latest states (services/cache_updater/markers.py): whatever the replica
had not received comes back, including instruments that no longer trade. The clients' records must
show no gap, repeat or update before its snapshot (a resync's snapshot may skip versions, as after
any Redis loss), and the checker must find nothing lost or counted twice in any store (README
"Guarantees").
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from tapewire.settings import KafkaSettings, host_ports
from tests.faults.checker import Stores, Summary
from tests.faults.harness import Pipeline, wait_flowing, wait_ready
from tests.faults.test_faults import (
    NAMES,
    Pipelines,
    audit_after_redis_loss,
    conclude,
    eventually,
    silence_some,
    start_load,
)
from tests.faults.wsclients import WsClients
from tools.devstack.redis_cluster import cluster_down, cluster_up, masters, node_pid

pytestmark = pytest.mark.faults

FIRST_PORT = 17500  # six nodes on 17500-17505, their cluster bus 10000 above


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[str]:
    cluster_up(FIRST_PORT, tmp_path / "redis-cluster")
    try:
        yield f"redis://127.0.0.1:{FIRST_PORT}/0"
    finally:
        cluster_down(FIRST_PORT, wipe=True)


def test_redis_cluster_master_kill9(
    redis_cluster: str,
    pipelines: Pipelines,
    fault_env: dict[str, str],
    stores: Stores,
    kafka_settings: KafkaSettings,
) -> None:
    # REDIS_URL names node 1, the master killed below; the other nodes are startup nodes.
    seeds = ",".join(f"127.0.0.1:{port}" for port in range(FIRST_PORT + 1, FIRST_PORT + 6))
    env = {**fault_env, "REDIS_URL": redis_cluster, "REDIS_CLUSTER": "true", "REDIS_STARTUP_NODES": seeds}
    cluster = {"url": SecretStr(redis_cluster), "cluster": True, "startup_nodes": host_ports(seeds)}
    stores = replace(stores, redis_settings=stores.redis_settings.model_copy(update=cluster))
    pipeline = pipelines(env)
    for instance in ("processor", "history_writer", "cache_updater", "dashboard_api"):
        pipeline.start(instance)
    base = f"http://127.0.0.1:{env['DASHBOARD_API_PORT']}"
    wait_ready(base, pipeline)
    clients = WsClients(
        f"ws://127.0.0.1:{env['DASHBOARD_API_PORT']}/ws", [NAMES, NAMES[:10], NAMES[8:]], allow_jumps=True
    ).start()
    load = start_load(kafka_settings, stores.topics, rate=300, duration_s=24)
    wait_flowing(stores, NAMES, pipeline)
    spread = shards_of(stores, NAMES)
    silence_some(stores, load)  # what the victim held of these comes back only by the rebuild
    victim = FIRST_PORT
    assert spread.get(victim), f"the master REDIS_URL names serves none of the instruments: {spread}"
    rebuilds_before = pipeline.log_count("cache_updater", "cache rebuilt from the changelog")
    restarts_before = relay_restarts(pipeline)
    pid = node_pid(victim)
    assert pid is not None, f"no redis-server on port {victim}"
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    summary = Summary("Redis Cluster: a master killed (-9) under load", 1)
    summary.notes.append(f"instruments per master before the kill: {spread}; killed the one on {victim}")
    promoted = eventually(lambda: victim not in masters(FIRST_PORT) and len(masters(FIRST_PORT)) == 3, 30)
    if promoted is None:
        summary.problems.append(f"no replica took over from the master on {victim} within 30 s")
    else:
        summary.notes.append(f"a replica promoted {promoted:.1f} s after the kill")
    # A service that starts now finds the cluster from its startup nodes, not from REDIS_URL's.
    pipeline.kill9("cache_updater")
    pipeline.restart("cache_updater")
    rebuilt = eventually(
        lambda: pipeline.log_count("cache_updater", "cache rebuilt from the changelog") > rebuilds_before, 30
    )
    if rebuilt is None:
        summary.problems.append("cache_updater did not rebuild from the changelog after the failover")
    else:
        summary.notes.append(f"cache rebuilt from the changelog {rebuilt:.1f} s after the kill")
    audit_after_redis_loss(pipeline, stores, load, killed, base, clients, summary, catch_up_timeout_s=60)
    resyncs = pipeline.log_count("dashboard_api", "relay resubscribed, resyncing sessions")
    summary.notes.append(f"the relay resynced its sessions {resyncs} times")
    if resyncs < 1:
        summary.problems.append("the relay never resynced: the failover went unnoticed")
    # The relay replaced the lost shard alone (services/dashboard_api/live/sharded.py): the
    # other masters' subscriptions were never dropped.
    shard_recoveries = pipeline.log_count("dashboard_api", "relay has the shard again")
    restarts = relay_restarts(pipeline) - restarts_before
    summary.notes.append(
        f"the relay replaced the lost shard {shard_recoveries} times, started over {restarts} times"
    )
    if shard_recoveries < 1 or restarts:
        summary.problems.append("the relay dropped every shard's subscription for one master's failover")
    conclude(pipeline, summary)


def relay_restarts(pipeline: Pipeline) -> int:
    """How often dashboard_api's relay dropped its whole subscription and started over."""
    return pipeline.log_count("dashboard_api", "relay lost redis") + pipeline.log_count(
        "dashboard_api", "relay failed"
    )


def shards_of(stores: Stores, names: list[str]) -> dict[int, int]:
    """How many of `names` each master (by port) serves now."""
    client = stores.redis()
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        counts: dict[int, int] = {}
        for name in names:
            port = int(client.get_node_from_key(stores.keys.state(name)).port)
            counts[port] = counts.get(port, 0) + 1
        return counts
    finally:
        client.close()
