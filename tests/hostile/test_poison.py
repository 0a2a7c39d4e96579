"""Absurd but parseable ticks, forged keys and ticks the rules cannot apply: each is set aside in
the DLQ with its reason, and the partition it came from keeps flowing (real Kafka)."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from services.processor.enrich import NS_PER_SECOND, Position, State, apply
from tapewire.reference.calendar import SessionClock
from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.ticks import RawTick
from tapewire.v1 import market_pb2 as pb
from tests.integration.running import running_processor
from tests.integration.test_processor import make_settings
from tests.support import consume_all, produce_raw

pytestmark = pytest.mark.hostile

T0 = 1_763_649_000 * NS_PER_SECOND  # 2025-11-20 14:30 UTC


def trade(instrument: str, price: str, size: str, sequence: int) -> bytes:
    return pb.Tick(
        instrument=instrument,
        venue="XNAS",
        kind=pb.TICK_KIND_TRADE,
        price=price,
        size=size,
        sequence=sequence,
        exchange_time_ns=T0 + sequence,
        ingest_time_ns=T0,
    ).SerializeToString()


def outcome(
    kafka: KafkaSettings, topics: TopicSettings, states: int, dead: int
) -> tuple[dict[str, list[int]], dict[str, str]]:
    """The versions published per instrument, and each dead letter's price -> code."""
    versions: dict[str, list[int]] = {}
    for message in consume_all(kafka, topics.processed, expected=states):
        state = pb.InstrumentState.FromString(message.value() or b"")
        versions.setdefault(state.instrument, []).append(state.version)
    codes = {}
    for message in consume_all(kafka, topics.raw_dlq, expected=dead):
        headers = dict(message.headers() or [])
        codes[pb.Tick.FromString(message.value() or b"").price] = headers["tapewire-error-code"].decode()
    return versions, codes


def test_absurd_magnitudes_and_forged_keys_are_dead_lettered_and_the_partition_flows(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> None:
    raw = topics.raw
    records = [
        (raw, b"AAPL", trade("AAPL", "10", "1", 1)),
        (raw, b"AAPL", trade("AAPL", "1e30", "1e30", 2)),  # crashed enrich (VWAP) in a loop
        (raw, b"AAPL", trade("AAPL", "1e4000", "1", 3)),
        (raw, b"AAPL", trade("AAPL", " 1 ", "1", 4)),
        (raw, b"AAPL", trade("MSFT", "11", "1", 5)),  # MSFT's tick forged under AAPL's key
        (raw, b"AAPL", trade("AAPL", "12", "1", 6)),
    ]
    produce_raw(Producer(kafka_settings.as_librdkafka_dict()), records)
    with running_processor(make_settings(kafka_settings, topics, f"g{unique}")):
        versions, codes = outcome(kafka_settings, topics, states=2, dead=4)
    assert versions == {"AAPL": [1, 2]}
    assert codes == {"1e30": "invalid", "1e4000": "invalid", " 1 ": "invalid", "11": "key_mismatch"}


def test_a_tick_the_rules_cannot_apply_is_dead_lettered_and_the_partition_flows(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> None:
    def failing_on_13(state: State | None, tick: RawTick, source: Position, sessions: SessionClock) -> State:
        if tick.sequence == 13:
            raise ArithmeticError("a rule that cannot be applied to this tick")
        return apply(state, tick, source, sessions)

    prices = [("10", 11), ("13", 13), ("12", 12)]
    records = [(topics.raw, b"AAPL", trade("AAPL", price, "1", sequence)) for price, sequence in prices]
    produce_raw(Producer(kafka_settings.as_librdkafka_dict()), records)
    settings = make_settings(kafka_settings, topics, f"g{unique}")
    with running_processor(settings, apply_tick=failing_on_13):
        versions, codes = outcome(kafka_settings, topics, states=2, dead=1)
    assert versions == {"AAPL": [1, 2]}
    assert codes == {"13": "processing_failed"}
    dead = consume_all(kafka_settings, topics.raw_dlq, expected=1)[0]
    reason = dict(dead.headers() or [])["tapewire-error"].decode()
    assert reason == "ArithmeticError: a rule that cannot be applied to this tick"
