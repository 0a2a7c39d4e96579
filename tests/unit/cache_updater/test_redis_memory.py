"""Redis memory gauges, read at scrape time: values from INFO, nothing when Redis does not answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest

from services.cache_updater.redis_memory import MAX, USED, RedisMemoryCollector


class FakeRedis:
    def __init__(self, reply: Mapping[str, Any] | None) -> None:
        self.reply = reply
        self.calls: list[str] = []

    def info(self, section: str) -> Mapping[str, Any]:
        self.calls.append(section)
        if self.reply is None:
            raise redis.ConnectionError("Connection refused")
        return self.reply


def scrape(client: FakeRedis) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(RedisMemoryCollector(client))
    return {sample.name: sample.value for family in registry.collect() for sample in family.samples}


def test_registering_does_not_call_redis() -> None:
    client = FakeRedis({"used_memory": 1})
    CollectorRegistry().register(RedisMemoryCollector(client))
    assert client.calls == []


def test_a_scrape_reads_used_and_max_memory() -> None:
    client = FakeRedis({"used_memory": 1_048_576, "maxmemory": 4_194_304, "mem_fragmentation_ratio": 1.2})
    assert scrape(client) == {USED: 1_048_576.0, MAX: 4_194_304.0}
    assert client.calls == ["memory"]


def test_no_limit_is_reported_as_zero() -> None:
    assert scrape(FakeRedis({"used_memory": 10}))[MAX] == 0.0


def test_redis_down_gives_no_samples_but_the_scrape_succeeds() -> None:
    registry = CollectorRegistry()
    registry.register(RedisMemoryCollector(FakeRedis(None)))
    text = generate_latest(registry).decode()
    assert f"# TYPE {USED} gauge" in text
    assert f"\n{USED} " not in text
