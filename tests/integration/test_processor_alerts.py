"""The processor's price alerts against a real broker: commands and ticks in, alert events out."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from confluent_kafka import Message, Producer
from prometheus_client import CollectorRegistry

from services.processor.alert_codec import COMMANDS_POSITION_KEY
from services.processor.enrich import NS_PER_SECOND
from services.processor.settings import ProcessorSettings
from tapewire.kafka import read_latest_per_key
from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.ticks import Quote, RawTick, Trade
from tapewire.v1 import alerts_pb2 as apb
from tests.integration.running import running_processor
from tests.support import consume_all, produce_raw, produce_ticks, wait_for

pytestmark = pytest.mark.integration

T0 = 1_763_649_000 * NS_PER_SECOND  # 2025-11-20 14:30:00 UTC
ABOVE, BELOW = apb.ALERT_DIRECTION_ABOVE, apb.ALERT_DIRECTION_BELOW
ACTIVE, TRIGGERED = apb.ALERT_STATUS_ACTIVE, apb.ALERT_STATUS_TRIGGERED
CANCELLED, REJECTED = apb.ALERT_STATUS_CANCELLED, apb.ALERT_STATUS_REJECTED


def create(alert_id: str, user: str, instrument: str, direction: int, price: str) -> tuple[bytes, bytes]:
    alert = apb.Alert(
        alert_id=alert_id,
        user_id=user,
        instrument=instrument,
        direction=direction,  # type: ignore[arg-type]
        price=price,
        created_ns=T0,
    )
    return instrument.encode(), apb.AlertCommand(create=alert, issued_ns=T0).SerializeToString()


def cancel(alert_id: str, user: str, instrument: str) -> tuple[bytes, bytes]:
    request = apb.CancelAlert(alert_id=alert_id, user_id=user, instrument=instrument)
    return instrument.encode(), apb.AlertCommand(cancel=request, issued_ns=T0).SerializeToString()


def send_commands(kafka: KafkaSettings, topics: TopicSettings, commands: list[tuple[bytes, bytes]]) -> None:
    """Keyed by instrument with the default partitioner, as dashboard_api does (and the ingester)."""
    producer = Producer({**kafka.as_librdkafka_dict(), "enable.idempotence": True, "acks": "all"})
    produce_raw(producer, [(topics.commands, key, value) for key, value in commands])


def trade(instrument: str, price: str, seq: int) -> Trade:
    return Trade(
        instrument, "XNAS", D(price), D("100"), seq, T0 + seq * NS_PER_SECOND, T0 + seq * NS_PER_SECOND + 7
    )


def settings_for(kafka: KafkaSettings, topics: TopicSettings, group: str) -> ProcessorSettings:
    return ProcessorSettings(
        kafka=kafka,
        topics=topics,
        group_id=group,
        history_enabled=False,
        metrics_port=0,
        max_alerts_per_instrument=2,
    )


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def decoded(messages: list[Message]) -> list[apb.AlertEvent]:
    events = [apb.AlertEvent.FromString(m.value() or b"") for m in messages]
    for message, event in zip(messages, events, strict=True):
        assert message.key() == event.alert.user_id.encode()  # user scoping: keyed by user id
    return events


def summary(events: list[apb.AlertEvent], user: str, instrument: str) -> list[tuple[str, int]]:
    """(alert id, status) of one user's events about one instrument, in the order published.

    That order is defined: one instrument's commands and ticks are applied in order, and one
    user's events share a partition. Between instruments it depends on the batches."""
    return [
        (e.alert.alert_id, e.status)
        for e in events
        if (e.alert.user_id, e.alert.instrument) == (user, instrument)
    ]


def alert_changelog(kafka: KafkaSettings, topics: TopicSettings) -> dict[bytes, bytes]:
    latest = read_latest_per_key(kafka, topics.processor_alerts, range(topics.partitions))
    return {key: value for part in latest.values() for key, value in part.items()}


def test_alerts_activate_trigger_on_trades_only_and_cancel(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> None:
    commands = [
        create("a1", "ann", "AAPL", ABOVE, "11.00"),
        create("a2", "bob", "AAPL", BELOW, "9"),
        create("m1", "ann", "MSFT", ABOVE, "500"),
        create("m2", "ann", "MSFT", ABOVE, "501"),
        create("m3", "bob", "MSFT", ABOVE, "502"),  # beyond the limit of 2 per instrument
        create("a1", "ann", "AAPL", ABOVE, "11.00"),  # the same command again: ignored
        cancel("m1", "bob", "MSFT"),  # not bob's: nothing
        cancel("m1", "ann", "MSFT"),
        create("r1", "bob", "AAPL", ABOVE, "-1"),
        create("r2", "bob", "MSFT", ABOVE, "1"),
        (b"AAPL", b"\xff\xfe not protobuf"),
    ]
    commands[-2] = (b"AAPL", commands[-2][1])  # MSFT's alert sent with AAPL's key: mismatch
    send_commands(kafka_settings, topics, commands)

    with running_processor(settings_for(kafka_settings, topics, f"g{unique}")) as registry:
        # Commands and ticks are two topics: wait for the commands before the ticks that should see them.
        first = decoded(consume_all(kafka_settings, topics.alert_events, expected=8))
        ticks: list[RawTick] = [
            Quote("AAPL", "XNAS", D("8"), D("1"), D("12"), D("1"), 1, T0, T0 + 1),  # quotes never trigger
            trade("AAPL", "10", 2),
            trade("AAPL", "11", 3),  # a1 (at its level)
            trade("AAPL", "12", 4),  # a1 is gone: one-shot
            trade("AAPL", "9", 5),  # a2
        ]
        produce_ticks(kafka_settings, topics.raw, ticks)
        events = decoded(consume_all(kafka_settings, topics.alert_events, expected=10))
        wait_for(lambda: metric(registry, "processor_alerts_triggered_total") == 2, 10, "the trigger metrics")
        outcomes = {
            outcome: metric(registry, "processor_alert_commands_total", outcome=outcome)
            for outcome in ("applied", "rejected", "ignored", "not_found", "malformed", "duplicate")
        }
        assert metric(registry, "processor_active_alerts") == 1  # m2

    assert summary(events, "ann", "AAPL") == [("a1", ACTIVE), ("a1", TRIGGERED)]
    assert summary(events, "ann", "MSFT") == [("m1", ACTIVE), ("m2", ACTIVE), ("m1", CANCELLED)]
    assert summary(events, "bob", "AAPL") == [("a2", ACTIVE), ("r1", REJECTED), ("a2", TRIGGERED)]
    # r2 names MSFT but came keyed (and so routed) as AAPL: its order against m3 is not defined.
    assert sorted(summary(events, "bob", "MSFT")) == [("m3", REJECTED), ("r2", REJECTED)]
    assert len(events) == len(first) + 2
    assert outcomes == {
        "applied": 5,
        "rejected": 3,
        "ignored": 1,
        "not_found": 1,
        "malformed": 1,
        "duplicate": 0,
    }

    reasons = {e.alert.alert_id: e.reason for e in events if e.status == REJECTED}
    assert reasons == {
        "m3": "MSFT already has the maximum of 2 active alerts",
        "r1": "price '-1' must be a decimal > 0 of at most 40 chars",
        "r2": "instrument 'MSFT' does not match the record key 'AAPL'",
    }
    a1 = next(e for e in events if e.alert.alert_id == "a1" and e.status == TRIGGERED)
    assert (a1.alert.price, a1.alert.direction, a1.alert.created_ns) == ("11.00", ABOVE, T0)  # as asked
    # The crossing trade made AAPL's 3rd version (a quote, then two trades).
    assert (a1.trigger_price, a1.trigger_version) == ("11", 3)
    assert (a1.times.exchange_ns, a1.times.ingest_ns) == (T0 + 3 * NS_PER_SECOND, T0 + 3 * NS_PER_SECOND + 7)
    assert a1.times.processed_ns == a1.event_ns > 0
    a2 = next(e for e in events if e.alert.alert_id == "a2" and e.status == TRIGGERED)
    assert (a2.trigger_price, a2.trigger_version) == ("9", 5)

    changelog = alert_changelog(kafka_settings, topics)
    assert b"AAPL" not in changelog  # emptied: a tombstone
    msft = apb.AlertBook.FromString(changelog[b"MSFT"])
    assert [a.alert_id for a in msft.alerts] == ["m2"]
    assert COMMANDS_POSITION_KEY in changelog


def test_alerts_survive_a_restart_and_a_new_group_applies_nothing_twice(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> None:
    send_commands(
        kafka_settings,
        topics,
        [create("a1", "ann", "AAPL", ABOVE, "20"), create("b1", "bob", "AAPL", BELOW, "5")],
    )
    produce_ticks(kafka_settings, topics.raw, [trade("AAPL", "10", 1)])
    settings = settings_for(kafka_settings, topics, f"a{unique}")
    with running_processor(settings):
        consume_all(kafka_settings, topics.alert_events, expected=2)
        wait_for(lambda: b"AAPL" in alert_changelog(kafka_settings, topics), 30, "the book in the changelog")

    # The alert crosses while no processor runs; a new instance of the group restores the book.
    produce_ticks(kafka_settings, topics.raw, [trade("AAPL", "21", 2)])
    with running_processor(settings) as registry:
        events = decoded(consume_all(kafka_settings, topics.alert_events, expected=3))
        assert metric(registry, "processor_alert_books_restored_total") == 1
        assert metric(registry, "processor_alert_commands_total", outcome="applied") == 0
    assert summary(events, "ann", "AAPL") == [("a1", ACTIVE), ("a1", TRIGGERED)]
    assert next(e for e in events if e.status == TRIGGERED).trigger_version == 2

    # A new group re-reads both topics from the start: the restored positions say every
    # command and tick is applied already, so a1 is not created (nor triggered) again.
    with running_processor(settings_for(kafka_settings, topics, f"b{unique}")) as registry:
        wait_for(
            lambda: (
                metric(registry, "processor_alert_commands_total", outcome="duplicate") == 2
                and metric(registry, "processor_ticks_total", outcome="duplicate") == 2
            ),
            60,
            "the replay to be skipped",
        )
        assert metric(registry, "processor_active_alerts") == 1  # b1 still waits
    assert len(consume_all(kafka_settings, topics.alert_events, expected=3)) == 3
