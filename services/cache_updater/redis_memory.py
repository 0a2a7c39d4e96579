"""Redis's memory as cache_updater sees it, read at scrape time: what the "Redis memory" alert
and dashboard panel watch. On a Redis Cluster, the sums over its masters (a replica holds
what its master holds).

cache_updater is the one service that writes the cache, so it is the one that reports on it;
no redis_exporter is needed beside the suite. The reading is taken when Prometheus scrapes
(one `INFO memory` every scrape interval, not per record) and a Redis that does not answer
gives no samples rather than a failed scrape: the rest of the service's metrics still arrive,
and the gap itself shows on the panel.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.cluster import RedisCluster

log = logging.getLogger(__name__)

USED = "cache_updater_redis_memory_used_bytes"
MAX = "cache_updater_redis_memory_max_bytes"


class InfoClient(Protocol):
    def info(self, section: str, **options: Any) -> Mapping[str, Any]: ...


def families(info: Mapping[str, Any] | None) -> list[GaugeMetricFamily]:
    """The two gauges from an `INFO memory` reply; with no reply, the families without samples."""
    used = GaugeMetricFamily(USED, "Memory Redis has allocated (INFO memory: used_memory)")
    limit = GaugeMetricFamily(MAX, "Redis's maxmemory (INFO memory: maxmemory); 0 when no limit is set")
    if info is not None:
        used.add_metric([], float(info["used_memory"]))
        limit.add_metric([], float(info.get("maxmemory", 0)))
    return [used, limit]


class RedisMemoryCollector(Collector):
    def __init__(self, client: InfoClient, cluster: bool = False) -> None:
        self._client = client
        self._cluster = cluster

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration asks for the names; answering without Redis keeps start-up independent of it.
        yield from families(None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            info = self._read()
        except redis.RedisError as exc:  # this scrape goes without the two samples
            log.warning("Redis memory not read for this scrape", extra={"error": repr(exc)})
            info = None
        yield from families(info)

    def _read(self) -> Mapping[str, Any]:
        if not self._cluster:
            return self._client.info("memory")
        # redis-py answers {node: INFO} when asked of every master.
        per_master = self._client.info("memory", target_nodes=RedisCluster.PRIMARIES).values()
        return {
            "used_memory": sum(int(info["used_memory"]) for info in per_master),
            "maxmemory": sum(int(info.get("maxmemory", 0)) for info in per_master),
        }
