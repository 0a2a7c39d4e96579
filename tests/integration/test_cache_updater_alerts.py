"""cache_updater's alert events against a real broker and a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from services.cache_updater.alerts import (
    COMMANDS_POSITION_KEY,
    AlertRetention,
    apply_alert_event,
    prepare_alert,
    terminal_alerts_key,
)
from services.cache_updater.settings import CacheUpdaterSettings
from tapewire.kafka import consumer_config
from tapewire.keys import RedisKeys
from tapewire.settings import KafkaSettings, RedisSettings, TopicSettings
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb
from tests.integration.running import running_cache_updater, sample
from tests.support import produce_raw, wait_for

pytestmark = pytest.mark.integration

ACTIVE, TRIGGERED = apb.ALERT_STATUS_ACTIVE, apb.ALERT_STATUS_TRIGGERED
CANCELLED, REJECTED = apb.ALERT_STATUS_CANCELLED, apb.ALERT_STATUS_REJECTED


def event(user: str, alert_id: str, status: int, event_ns: int = 1, **fields: Any) -> apb.AlertEvent:
    alert = apb.Alert(
        alert_id=alert_id, user_id=user, instrument="AAPL", direction=apb.ALERT_DIRECTION_ABOVE, price="190.5"
    )
    return apb.AlertEvent(alert=alert, status=status, event_ns=event_ns, **fields)


def record(topics: TopicSettings, message: apb.AlertEvent) -> tuple[str, bytes, bytes]:
    return (topics.alert_events, message.alert.user_id.encode(), message.SerializeToString())


def metric(registry: CollectorRegistry, outcome: str) -> float:
    return sample(registry, "cache_updater_alert_events_total", outcome=outcome)


def drain(pubsub: Any, into: list[tuple[str, apb.AlertEvent]]) -> int:
    """Move what was published so far into `into`; return how many arrived in all."""
    while (message := pubsub.get_message(timeout=0.1)) is not None:
        if message["type"] == "pmessage":
            into.append((message["channel"].decode(), apb.AlertEvent.FromString(message["data"])))
    return len(into)


def stored(client: redis.Redis, key: str) -> dict[str, tuple[int, apb.AlertEvent]]:
    return {
        field.decode(): (e.status, e)
        for field, value in client.hgetall(key).items()
        for e in [apb.AlertEvent.FromString(value)]
    }


def test_alert_events_move_forward_only_are_published_once_and_replay_as_no_ops(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    unique: str,
) -> None:
    keys = RedisKeys.from_settings(redis_settings)
    pubsub = redis_client.pubsub()
    pubsub.psubscribe(f"{redis_settings.alerts_channel}:*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"  # type: ignore[index]

    times = pb.StageTimes(exchange_ns=1, ingest_ns=2, processed_ns=3)
    events = [
        event("ann", "a1", ACTIVE),
        event("ann", "a1", TRIGGERED, 5, trigger_price="190.52", trigger_version=1311, times=times),
        event("ann", "a1", ACTIVE),  # late: behind TRIGGERED
        event("ann", "a1", CANCELLED, 6),  # a terminal status never changes
        event("ann", "a2", ACTIVE),
        event("bob", "b1", REJECTED, 7, reason="direction must be above or below"),
    ]
    records = [record(topics, e) for e in events]
    records.append((topics.alert_events, b"ann", b"\xff\xfe not protobuf"))
    records.append((topics.alert_events, b"", event("", "x", ACTIVE).SerializeToString()))
    # States in the same batches: the two topics are dispatched apart.
    state = pb.InstrumentState(instrument="AAPL", version=1, last_price="190.52")
    records.append((topics.processed, b"AAPL", state.SerializeToString()))
    produce_raw(Producer(kafka_settings.as_librdkafka_dict()), records)

    settings = CacheUpdaterSettings(
        kafka=kafka_settings,
        topics=topics,
        redis=redis_settings,
        group_id=f"g{unique}",
        metrics_port=0,
        cache_check_interval_s=0.2,
        terminal_alerts_ttl_s=3600,
    )
    received: list[tuple[str, apb.AlertEvent]] = []
    with running_cache_updater(settings) as registry:
        wait_for(lambda: metric(registry, "applied") + metric(registry, "stale") == 6, 30, "the alert events")
        wait_for(lambda: redis_client.exists(keys.state("AAPL")), 10, "the state")
        wait_for(lambda: drain(pubsub, received) >= 4, 10, "four publications")
        assert (metric(registry, "applied"), metric(registry, "stale")) == (4, 2)
        assert (metric(registry, "undecodable"), metric(registry, "invalid")) == (1, 1)
        assert (
            sample(registry, "cache_updater_rebuilds_total") == 0
        )  # alert partitions are not taken for processed ones

    # One publication per change, on the user's own channel, in order per user.
    assert [(channel, e.alert.alert_id, e.status) for channel, e in received if channel.endswith(":ann")] == [
        (keys.alert_events("ann"), "a1", ACTIVE),
        (keys.alert_events("ann"), "a1", TRIGGERED),
        (keys.alert_events("ann"), "a2", ACTIVE),
    ]
    assert [(channel, e.alert.alert_id, e.status) for channel, e in received if channel.endswith(":bob")] == [
        (keys.alert_events("bob"), "b1", REJECTED)
    ]

    ann = stored(redis_client, keys.alerts("ann"))
    assert {alert_id: status for alert_id, (status, _) in ann.items()} == {"a1": TRIGGERED, "a2": ACTIVE}
    triggered = ann["a1"][1]
    assert (triggered.trigger_price, triggered.trigger_version, triggered.times.processed_ns) == (
        "190.52",
        1311,
        3,
    )
    assert triggered.times.cached_ns > 0
    assert ann["a2"][1].times.cached_ns == 0 and not ann["a2"][1].HasField("times")
    assert stored(redis_client, keys.alerts("bob"))["b1"][1].reason == "direction must be above or below"
    # ann has an active alert: kept; bob's are all terminal: they expire.
    assert redis_client.ttl(keys.alerts("ann")) == -1
    assert 0 < redis_client.ttl(keys.alerts("bob")) <= 3600
    assert redis_client.zrange(terminal_alerts_key(keys, "ann"), 0, -1) == [b"a1"]

    # A new group re-reads everything: nothing changes and nothing is published again.
    before = {key: redis_client.hgetall(key) for key in (keys.alerts("ann"), keys.alerts("bob"))}
    with running_cache_updater(settings.model_copy(update={"group_id": f"r{unique}"})) as registry:
        wait_for(lambda: metric(registry, "stale") == 6, 30, "the replay to be ignored")
        assert metric(registry, "applied") == 0
    drain(pubsub, received)
    assert len(received) == 4
    assert {key: redis_client.hgetall(key) for key in before} == before
    pubsub.close()


def test_terminal_alerts_are_trimmed_oldest_first_and_expire_once_none_is_active(
    redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    keys = RedisKeys.from_settings(redis_settings)
    script = redis_client.register_script(apply_alert_event(keys.publish))
    retention = AlertRetention(ttl_s=600, kept=2)

    def apply(message: apb.AlertEvent) -> int:
        change = prepare_alert(message, keys, cached_ns=1, retention=retention)
        return int(script(keys=change.keys, args=change.args))

    # A long id (a multi-byte length prefix) and stage times: the stored status is still found.
    long_id = "w" * 300
    assert apply(event("ann", long_id, ACTIVE, 10, times=pb.StageTimes(exchange_ns=-1))) == 1
    for n, alert_id in enumerate(["t1", "t2", "t3"]):
        assert apply(event("ann", alert_id, ACTIVE, 20 + n)) == 1
        assert apply(event("ann", alert_id, CANCELLED, 30 + n)) == 1
    assert apply(event("ann", long_id, ACTIVE, 40)) == 0

    # Two terminal entries kept (t1, the oldest, dropped); the active one is never dropped.
    assert set(redis_client.hkeys(keys.alerts("ann"))) == {long_id.encode(), b"t2", b"t3"}
    assert redis_client.ttl(keys.alerts("ann")) == -1  # an active alert: kept
    assert redis_client.ttl(terminal_alerts_key(keys, "ann")) == -1

    assert apply(event("ann", long_id, TRIGGERED, 50)) == 1
    assert set(redis_client.hkeys(keys.alerts("ann"))) == {long_id.encode(), b"t3"}
    assert redis_client.zrange(terminal_alerts_key(keys, "ann"), 0, -1) == [b"t3", long_id.encode()]
    for key in (keys.alerts("ann"), terminal_alerts_key(keys, "ann")):
        assert 0 < redis_client.ttl(key) <= 600  # all terminal now: both expire together

    # A trimmed alert's own late events: a terminal one is written back, then trimmed again
    # by its old time; nothing else moves.
    apply(event("ann", "t1", CANCELLED, 31))
    assert set(redis_client.hkeys(keys.alerts("ann"))) == {long_id.encode(), b"t3"}


def book(instrument: str, *alerts: apb.Alert) -> bytes:
    return apb.AlertBook(instrument=instrument, alerts=alerts).SerializeToString()


def test_a_lost_partition_gets_its_active_alerts_back_and_a_moved_on_alert_stays(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    unique: str,
) -> None:
    keys = RedisKeys.from_settings(redis_settings)
    script = redis_client.register_script(apply_alert_event(keys.publish))

    def apply(message: apb.AlertEvent) -> None:
        change = prepare_alert(message, keys, cached_ns=1, retention=AlertRetention())
        script(keys=change.keys, args=change.args)

    a1, a2, b1 = (
        event(user, alert_id, ACTIVE).alert
        for user, alert_id in [("ann", "a1"), ("ann", "a2"), ("bob", "b1")]
    )
    m1 = apb.Alert(
        alert_id="m1", user_id="ann", instrument="MSFT", direction=apb.ALERT_DIRECTION_BELOW, price="3"
    )
    c1 = apb.Alert(
        alert_id="c1", user_id="cat", instrument="NVDA", direction=apb.ALERT_DIRECTION_ABOVE, price="9"
    )
    # The processor's changelogs: AAPL's book on partition 0 with its position record and a book
    # that emptied since (a tombstone), MSFT's on 1, NVDA's on 2; a state per partition.
    producer = Producer(kafka_settings.as_librdkafka_dict())
    records: list[tuple[str, int, bytes, bytes | None]] = [
        (topics.processor_alerts, 0, b"AAPL", book("AAPL", a1, a2, b1)),
        (topics.processor_alerts, 0, COMMANDS_POSITION_KEY, apb.AlertBook().SerializeToString()),
        (
            topics.processor_alerts,
            0,
            b"TSLA",
            book("TSLA", apb.Alert(alert_id="t1", user_id="ann", instrument="TSLA")),
        ),
        (topics.processor_alerts, 0, b"TSLA", None),
        (topics.processor_alerts, 1, b"MSFT", book("MSFT", m1)),
        (topics.processor_alerts, 2, b"NVDA", book("NVDA", c1)),
    ]
    for partition, name in enumerate(["AAPL", "MSFT", "NVDA"]):
        state = pb.InstrumentState(instrument=name, version=5, last_price="1").SerializeToString()
        records += [
            (topic, partition, name.encode(), state) for topic in (topics.processed, topics.processor_state)
        ]
    for topic, partition, key, value in records:
        producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(30) == 0

    # The group had consumed partitions 0 and 1 (so Redis held what they carried); 2 never.
    group = f"g{unique}"
    committer = Consumer(consumer_config(kafka_settings, group, "test-committer"))
    committer.commit(offsets=[TopicPartition(topics.processed, p, 1) for p in (0, 1)], asynchronous=False)
    committer.close()

    # Redis held the alerts and lost them; then a live event triggered a2 before the rebuild.
    for message in (a1, a2, b1, m1):
        apply(apb.AlertEvent(alert=message, status=ACTIVE, event_ns=1))
    redis_client.delete(*redis_client.scan_iter(match=f"{redis_settings.key_prefix}*"))
    assert not redis_client.exists(keys.alerts("ann"))
    apply(event("ann", "a2", TRIGGERED, 5, trigger_price="191", trigger_version=7))
    triggered = redis_client.hget(keys.alerts("ann"), "a2")

    pubsub = redis_client.pubsub()
    pubsub.psubscribe(f"{redis_settings.alerts_channel}:*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"  # type: ignore[index]
    settings = CacheUpdaterSettings(
        kafka=kafka_settings,
        topics=topics,
        redis=redis_settings,
        group_id=group,
        metrics_port=0,
        cache_check_interval_s=0.2,
    )
    received: list[tuple[str, apb.AlertEvent]] = []
    with running_cache_updater(settings) as registry:
        wait_for(lambda: sample(registry, "cache_updater_rebuilds_total") == 1, 30, "the rebuild")
        wait_for(lambda: drain(pubsub, received) >= 3, 10, "three publications")
        assert sample(registry, "cache_updater_alert_events_total", outcome="applied") == 3
        assert sample(registry, "cache_updater_alert_events_total", outcome="stale") == 1  # a2

    ann = stored(redis_client, keys.alerts("ann"))
    assert {alert_id: status for alert_id, (status, _) in ann.items()} == {
        "a1": ACTIVE,
        "a2": TRIGGERED,
        "m1": ACTIVE,
    }
    assert redis_client.hget(keys.alerts("ann"), "a2") == triggered  # not moved back
    assert ann["a1"][1].alert == a1 and ann["a1"][1].event_ns > 0
    assert {
        alert_id: status for alert_id, (status, _) in stored(redis_client, keys.alerts("bob")).items()
    } == {"b1": ACTIVE}
    assert redis_client.ttl(keys.alerts("ann")) == -1  # active alerts: kept
    assert not redis_client.exists(keys.alerts("cat"))  # never committed: no rebuild (the states' trigger)
    assert not redis_client.exists(keys.alerts(""))  # the position record is no book
    drain(pubsub, received)
    assert sorted((channel, e.alert.alert_id, e.status) for channel, e in received) == [
        (keys.alert_events("ann"), "a1", ACTIVE),
        (keys.alert_events("ann"), "m1", ACTIVE),
        (keys.alert_events("bob"), "b1", ACTIVE),
    ]
    assert redis_client.exists(keys.state("AAPL"), keys.state("MSFT")) == 2  # the states came back too
    pubsub.close()
