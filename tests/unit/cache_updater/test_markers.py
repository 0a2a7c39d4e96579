"""Which masters a Redis Cluster's markers are kept on (services/cache_updater/markers.py), from
CLUSTER NODES as redis-py parses it."""

from __future__ import annotations

from typing import Any, cast

from redis.cluster import RedisCluster
from redis.crc import key_slot

from services.cache_updater.markers import ClusterMarkers
from tapewire.keys import RedisKeys


class Nodes:
    def __init__(self, nodes: dict[str, dict[str, Any]]) -> None:
        self.nodes = nodes

    def cluster_nodes(self) -> dict[str, dict[str, Any]]:
        return self.nodes


def node(node_id: str, flags: str, *slots: list[str]) -> dict[str, Any]:
    return {"node_id": node_id, "flags": flags, "slots": list(slots)}


def test_each_live_master_gets_a_tag_on_its_own_slots_a_lone_slot_included() -> None:
    nodes = {
        "a:1": node("A", "myself,master", ["0", "5460"]),
        "b:1": node("B", "master", ["5461"], ["5462", "10922"]),  # a lone slot first
        "c:1": node("C", "master,fail?", ["10923", "16383"]),  # suspected only: still asked
        "d:1": node("D", "master,fail"),  # failed over: no slots, nothing to ask
        "e:1": node("E", "slave", []),
    }
    markers = ClusterMarkers(
        cast(RedisCluster, Nodes(nodes)), RedisKeys(prefix="t:", channel="c", cluster=True)
    )
    masters = markers._masters()
    assert sorted(masters.values()) == ["A", "B", "C"]
    slots = {node_id: key_slot(tag.encode()) for tag, node_id in masters.items()}
    assert 0 <= slots["A"] <= 5460 and slots["B"] == 5461 and 10923 <= slots["C"] <= 16383
