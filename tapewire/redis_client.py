"""Opening Redis as the settings say: one server, or a Redis Cluster (REDIS_CLUSTER=true).

Either way the services use redis-py's client API, and their keys are laid out for both
(tapewire/keys.py); only the client class differs. On a cluster, redis-py finds every node
from the first that answers of the URL's and the startup nodes (REDIS_STARTUP_NODES), follows
MOVED and ASK, and refreshes its slot map when a master fails over.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    ClusterError,
    ReadOnlyError,
    RedisClusterException,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)

from tapewire.settings import RedisSettings

SyncClient = redis.Redis | RedisCluster
AsyncClient = redis.asyncio.Redis | AsyncRedisCluster

# What a command raises while Redis cannot serve it for now, and retrying later is the answer:
# the connection failed, or (a cluster) a master is down, being failed over, or was demoted
# and refuses writes, or no node is reachable to learn the slots from.
UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterError,
    TryAgainError,
    ReadOnlyError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
)


# Everything a read can fail with, for a store that turns any failure into StoreUnavailable:
# redis-py's cluster client raises some of its own outside RedisError.
STORE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)


def connect(settings: RedisSettings, **options: Any) -> SyncClient:
    """A blocking client; `options` are redis-py's connection options."""
    url = settings.url.get_secret_value()
    if settings.cluster:
        nodes = [ClusterNode(host, port) for host, port in settings.startup_nodes]  # type: ignore[no-untyped-call]
        return RedisCluster.from_url(url, startup_nodes=nodes, **options)
    return redis.Redis.from_url(url, **options)
