"""cache_updater against a real broker and a real Redis."""

from __future__ import annotations

import pytest
import redis
from confluent_kafka import Producer

from services.cache_updater.settings import CacheUpdaterSettings
from tapewire.keys import RedisKeys
from tapewire.settings import KafkaSettings, RedisSettings, TopicSettings
from tapewire.v1 import market_pb2 as pb
from tests.integration.running import running_cache_updater, sample
from tests.support import produce_raw, wait_for

pytestmark = pytest.mark.integration


def state(instrument: str, version: int) -> bytes:
    return pb.InstrumentState(
        instrument=instrument,
        version=version,
        last_price=f"{100 + version}",
        times=pb.StageTimes(processed_ns=1),
    ).SerializeToString()


def test_applies_newer_versions_and_publishes_each(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    unique: str,
) -> None:
    keys = RedisKeys.from_settings(redis_settings)
    pubsub = redis_client.pubsub()
    pubsub.psubscribe(f"{keys.channel}:*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"  # type: ignore[index]

    # v3 before v2 for AAPL: the stale v2 must neither overwrite nor publish.
    records = [(topics.processed, b"AAPL", state("AAPL", v)) for v in (1, 3, 2)]
    records += [(topics.processed, b"MSFT", state("MSFT", v)) for v in (1, 2)]
    records.append((topics.processed, b"MSFT", b"\x00garbage"))
    produce_raw(Producer(kafka_settings.as_librdkafka_dict()), records)

    settings = CacheUpdaterSettings(
        kafka=kafka_settings, topics=topics, redis=redis_settings, group_id=f"g{unique}", metrics_port=0
    )
    with running_cache_updater(settings) as registry:
        received: list[pb.Update] = []

        def four_updates() -> bool:
            while (message := pubsub.get_message(timeout=0.1)) is not None:
                if message["type"] == "pmessage":
                    update = pb.Update.FromString(message["data"])
                    assert message["channel"].decode() == keys.updates(update.state.instrument)
                    received.append(update)
            return len(received) >= 4

        wait_for(four_updates, 30, "four updates on pub/sub")
        wait_for(
            lambda: sample(registry, "cache_updater_states_total", outcome="stale") == 1,
            10,
            "the stale state to be counted",
        )
        assert sample(registry, "cache_updater_states_total", outcome="undecodable") == 1

    # Order holds per instrument (one partition each); instruments on different partitions interleave.
    per_instrument = {
        name: [u.state.version for u in received if u.state.instrument == name] for name in ("AAPL", "MSFT")
    }
    assert per_instrument == {"AAPL": [1, 3], "MSFT": [1, 2]}
    assert all(u.state.times.cached_ns > 0 for u in received)
    stored = redis_client.hgetall(keys.state("AAPL"))
    assert stored[b"v"] == b"3"
    assert pb.InstrumentState.FromString(stored[b"s"]).last_price == "103"
    assert redis_client.smembers(keys.instruments) == {b"AAPL", b"MSFT"}
    pubsub.close()


def test_rebuilds_an_emptied_cache_from_the_changelog(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    unique: str,
) -> None:
    keys = RedisKeys.from_settings(redis_settings)
    producer = Producer(kafka_settings.as_librdkafka_dict())
    # The processor writes the latest state of each instrument to the changelog, partition for partition.
    for topic in (topics.processed, topics.processor_state):
        for partition, name in enumerate(["AAPL", "MSFT", "NVDA"]):
            producer.produce(topic, key=name.encode(), value=state(name, 5), partition=partition)
    assert producer.flush(30) == 0

    settings = CacheUpdaterSettings(
        kafka=kafka_settings,
        topics=topics,
        redis=redis_settings,
        group_id=f"g{unique}",
        metrics_port=0,
        cache_check_interval_s=0.2,
    )
    with running_cache_updater(settings) as registry:
        wait_for(lambda: redis_client.scard(keys.instruments) == 3, 30, "the states to be cached")
        # Redis "restarted empty": every key of this deployment is gone.
        redis_client.delete(*redis_client.scan_iter(match=f"{redis_settings.key_prefix}*"))
        wait_for(lambda: redis_client.scard(keys.instruments) == 3, 30, "the cache to be rebuilt")
        assert (
            sample(registry, "cache_updater_rebuilds_total") == 1
        )  # not at start (nothing committed yet), once after the loss

    for name in ("AAPL", "MSFT", "NVDA"):
        stored = redis_client.hgetall(keys.state(name))
        assert stored[b"v"] == b"5"
        assert pb.InstrumentState.FromString(stored[b"s"]).last_price == "105"
