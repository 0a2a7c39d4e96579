"""The cache markers: which processed partitions' states this Redis holds (run.py's rebuild).

On one server, a marker per partition: a restart that lost the data lost the markers with it.

On a Redis Cluster a partition's states are spread over every master, and a master can lose
some without the others noticing: restarted empty, or replaced by its replica in a failover,
which may lack the last writes it had not yet replicated. So each master holds a marker per
partition (a key hash-tagged onto one of the master's slots) whose value is the node id of the
master that wrote it. A marker missing, or one a replica inherited from the master it replaced
(another node's id), makes the partition count as missing, and the rebuild re-applies its
latest states: the version check leaves alone whatever a shard still had, and writes (and
publishes) what it lost. A resharding that moves a marker's slot costs a rebuild too, which is
safe.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from tapewire.keys import RedisKeys
from tapewire.redis_client import SyncClient


class Markers(Protocol):
    def missing(self, partitions: Sequence[int]) -> list[int]:
        """The partitions whose states this Redis cannot vouch for."""

    def mark(self, partitions: Sequence[int]) -> None:
        """Record that the states of `partitions` are here."""


class ServerMarkers:
    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def missing(self, partitions: Sequence[int]) -> list[int]:
        present = self._client.mget([self._keys.cache_marker(p) for p in partitions])
        return [p for p, value in zip(partitions, present, strict=True) if value is None]

    def mark(self, partitions: Sequence[int]) -> None:
        self._client.mset({self._keys.cache_marker(p): "1" for p in partitions})


class ClusterMarkers:
    def __init__(self, client: RedisCluster, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys
        self._tags: dict[tuple[int, int], str] = {}  # a slot range's tag, found once
        self._seen: dict[str, str] = {}  # the masters of the last check: {tag: node id}

    def missing(self, partitions: Sequence[int]) -> list[int]:
        # mark() writes what this check saw: had the cluster failed over since, the next check
        # finds another master's id on the promoted replica, and the partition missing again.
        masters = self._seen = self._masters()
        pipe = self._client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
        for p in partitions:
            for tag in masters:
                pipe.get(self._keys.cache_marker(p, tag))
        values = iter(pipe.execute())
        return [p for p in partitions if [_text(next(values)) for _ in masters] != list(masters.values())]

    def mark(self, partitions: Sequence[int]) -> None:
        pipe = self._client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
        for tag, node_id in self._seen.items():
            for p in partitions:
                pipe.set(self._keys.cache_marker(p, tag), node_id)
        pipe.execute()

    def _masters(self) -> dict[str, str]:
        """{a hash tag on each master's first slot range: that master's node id}, as the
        cluster sees it now (CLUSTER NODES)."""
        masters: dict[str, str] = {}
        nodes: dict[str, dict[str, Any]] = self._client.cluster_nodes()
        for node in nodes.values():
            flags = node["flags"].split(",")
            # A master only suspected to fail ("fail?") still counts: its GET fails or answers.
            if "master" in flags and "fail" not in flags and node["slots"]:
                bounds = node["slots"][0]  # [first, last], or [slot] for a lone slot
                masters[self._tag(int(bounds[0]), int(bounds[-1]))] = node["node_id"]
        return masters

    def _tag(self, first: int, last: int) -> str:
        tag = self._tags.get((first, last))
        if tag is None:
            tag = next(
                t for t in (f"m{i}" for i in itertools.count()) if first <= key_slot(t.encode()) <= last
            )
            self._tags[(first, last)] = tag
        return tag


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def markers_for(client: SyncClient, keys: RedisKeys) -> Markers:
    if keys.cluster:
        assert isinstance(client, RedisCluster)
        return ClusterMarkers(client, keys)
    assert isinstance(client, redis.Redis)
    return ServerMarkers(client, keys)
