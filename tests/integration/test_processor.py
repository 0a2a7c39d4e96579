"""The processor against a real broker and a real PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from services.history_writer.settings import HistoryWriterSettings
from services.processor.enrich import NS_PER_SECOND
from services.processor.settings import ProcessorSettings
from tapewire.db import connect_kwargs
from tapewire.errors import KafkaFailure
from tapewire.kafka import read_latest_per_key
from tapewire.settings import KafkaSettings, PostgresSettings, TopicSettings
from tapewire.ticks import Quote, RawTick, Trade
from tapewire.v1 import market_pb2 as pb
from tests.integration.running import running_history_writer, running_processor
from tests.support import consume_all, produce_raw, produce_ticks, wait_for

pytestmark = pytest.mark.integration

T0 = 1_763_649_000 * NS_PER_SECOND  # 2025-11-20 14:30:00 UTC


def sample_ticks() -> list[RawTick]:
    """Three instruments; AAPL's trades span a minute boundary."""
    ticks: list[RawTick] = []
    for i, (price, size) in enumerate([("10", "100"), ("11", "200"), ("12", "100")]):
        ticks.append(Trade("AAPL", "XNAS", D(price), D(size), i + 1, T0 + (58 + i) * NS_PER_SECOND, T0))
    for n in range(20):
        ticks.append(Quote("MSFT", "XNAS", D("400") + n, D("1"), D("400.5") + n, D("2"), n + 1, T0 + n, T0))
        ticks.append(Trade("NVDA", "XNAS", D("100.25"), D(n + 1), n + 1, T0 + n, T0))
    return ticks


def make_settings(kafka: KafkaSettings, topics: TopicSettings, group: str) -> ProcessorSettings:
    return ProcessorSettings(
        kafka=kafka,
        topics=topics,
        group_id=group,
        metrics_port=0,
    )


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def stored_versions(postgres: PostgresSettings) -> dict[str, int]:
    with psycopg.connect(**connect_kwargs(postgres)) as conn:
        return dict(conn.execute("SELECT instrument, version FROM instrument_state").fetchall())


def test_enriches_publishes_stores_and_dead_letters(
    kafka_settings: KafkaSettings, topics: TopicSettings, postgres_settings: PostgresSettings, unique: str
) -> None:
    ticks = sample_ticks()
    produce_ticks(kafka_settings, topics.raw, ticks)
    producer = Producer(kafka_settings.as_librdkafka_dict())
    produce_raw(
        producer,
        [
            (topics.raw, b"AAPL", b"\xff\xfe not protobuf"),
            (
                topics.raw,
                b"AAPL",
                pb.Tick(
                    instrument="AAPL", kind=pb.TICK_KIND_TRADE, price="-1", size="1", exchange_time_ns=T0
                ).SerializeToString(),
            ),
        ],
    )

    settings = make_settings(kafka_settings, topics, f"g{unique}")
    history = HistoryWriterSettings(
        kafka=kafka_settings, topics=topics, postgres=postgres_settings, group_id=f"h{unique}", metrics_port=0
    )
    with running_processor(settings), running_history_writer(history):
        outputs = consume_all(kafka_settings, topics.processed, expected=len(ticks))
        dead = consume_all(kafka_settings, topics.raw_dlq, expected=2)
        expected = {"AAPL": 3, "MSFT": 20, "NVDA": 20}
        wait_for(lambda: stored_versions(postgres_settings) == expected, 30, "the history writer to catch up")

    states = [pb.InstrumentState.FromString(m.value() or b"") for m in outputs]
    versions: dict[str, list[int]] = defaultdict(list)
    for message, state in zip(outputs, states, strict=True):
        assert message.key() == state.instrument.encode()
        versions[state.instrument].append(state.version)
    assert versions == {"AAPL": [1, 2, 3], "MSFT": list(range(1, 21)), "NVDA": list(range(1, 21))}

    last = {s.instrument: s for s in states}
    aapl = last["AAPL"]
    # (10*100 + 11*200 + 12*100) / 400 = 11; the 3rd trade opened the 14:31 minute bar.
    assert (aapl.vwap, aapl.session_volume, aapl.session_high, aapl.change) == ("11", "400", "12", "2")
    assert (aapl.bar_1m.start_time_ns, aapl.bar_1m.open, aapl.bar_1m.volume) == (
        T0 + 60 * NS_PER_SECOND,
        "12",
        "100",
    )
    assert (last["MSFT"].mid, last["MSFT"].spread) == ("419.25", "0.5")
    assert last["NVDA"].session_volume == "210" and last["NVDA"].vwap == "100.25"
    assert all(s.times.processed_ns >= s.times.ingest_ns > 0 for s in states)

    changelog = read_latest_per_key(kafka_settings, topics.processor_state, range(topics.partitions))
    latest = {
        k: pb.InstrumentState.FromString(v).version for part in changelog.values() for k, v in part.items()
    }
    assert latest == {b"AAPL": 3, b"MSFT": 20, b"NVDA": 20}
    with psycopg.connect(**connect_kwargs(postgres_settings)) as conn:
        minute_bars = conn.execute(
            "SELECT extract(epoch FROM start_time)::bigint, open, high, low, close, volume, trade_count, vwap"
            " FROM bars_1m WHERE instrument = 'AAPL' ORDER BY start_time"
        ).fetchall()
        # Each bar keeps the session VWAP of the state that last changed it: (1000 + 2200) / 300
        # after the 2nd trade (rounded to 10 places), 11 after the 3rd.
        assert minute_bars == [
            (T0 // NS_PER_SECOND, D(10), D(11), D(10), D(11), D(300), 2, D("10.6666666667")),
            (T0 // NS_PER_SECOND + 60, D(12), D(12), D(12), D(12), D(100), 1, D(11)),
        ]
        second_vwaps = conn.execute(
            "SELECT vwap FROM bars_1s WHERE instrument = 'AAPL' ORDER BY start_time"
        ).fetchall()
        assert second_vwaps == [(D(10),), (D("10.6666666667"),), (D(11),)]

    reasons = sorted(dict(m.headers() or [])["tapewire-error-code"].decode() for m in dead)
    assert reasons == ["invalid", "undecodable"]
    headers = dict(dead[0].headers() or [])
    assert headers["tapewire-source-topic"].decode() == topics.raw
    assert headers["tapewire-service"] == b"processor"
    assert int(headers["tapewire-source-offset"]) >= 0


def test_a_restarted_processor_resumes_from_the_changelog(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> None:
    ticks = sample_ticks()
    produce_ticks(kafka_settings, topics.raw, ticks)
    settings = make_settings(kafka_settings, topics, f"a{unique}")
    with running_processor(settings):
        consume_all(kafka_settings, topics.processed, expected=len(ticks))

    later = Trade("AAPL", "XNAS", D("13"), D("100"), 4, T0 + 61 * NS_PER_SECOND, T0)
    produce_ticks(kafka_settings, topics.raw, [later])
    with running_processor(settings) as registry:
        outputs = consume_all(kafka_settings, topics.processed, expected=len(ticks) + 1)
        assert metric(registry, "processor_states_restored_total") == 3

    # read_committed: every version exactly once, in order, across the restart.
    versions: dict[str, list[int]] = defaultdict(list)
    for message in outputs:
        state = pb.InstrumentState.FromString(message.value() or b"")
        versions[state.instrument].append(state.version)
    assert versions == {"AAPL": [1, 2, 3, 4], "MSFT": list(range(1, 21)), "NVDA": list(range(1, 21))}
    newest = pb.InstrumentState.FromString(outputs[-1].value() or b"")
    # (4400 + 1300) / 500 = 11.4: the restored aggregates continued, nothing was re-added.
    assert (newest.instrument, newest.version, newest.vwap, newest.session_volume) == (
        "AAPL",
        4,
        "11.4",
        "500",
    )


def test_a_new_group_does_not_count_ticks_twice(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> None:
    ticks = sample_ticks()
    produce_ticks(kafka_settings, topics.raw, ticks)
    with running_processor(make_settings(kafka_settings, topics, f"a{unique}")):
        consume_all(kafka_settings, topics.processed, expected=len(ticks))

    # A new group re-reads every record from offset 0; the restored states say each tick is
    # already applied, so nothing is counted again.
    with running_processor(make_settings(kafka_settings, topics, f"b{unique}")) as registry:
        wait_for(
            lambda: metric(registry, "processor_ticks_total", outcome="duplicate") >= len(ticks),
            60,
            "the replay to be skipped",
        )
        assert metric(registry, "processor_ticks_total", outcome="applied") == 0


def test_commits_offsets_after_processing(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> None:
    ticks = sample_ticks()
    produce_ticks(kafka_settings, topics.raw, ticks)
    group = f"c{unique}"
    with running_processor(make_settings(kafka_settings, topics, group)):
        consume_all(kafka_settings, topics.processed, expected=len(ticks))
        probe = Consumer({**kafka_settings.as_librdkafka_dict(), "group.id": group})

        def committed_total() -> int:
            parts = [TopicPartition(topics.raw, p) for p in range(topics.partitions)]
            return sum(max(tp.offset, 0) for tp in probe.committed(parts, timeout=10))

        wait_for(lambda: committed_total() == len(ticks), 30, "offsets to be committed")
        probe.close()


def test_a_failed_restore_loses_no_tick(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> None:
    """The restore after an assignment fails once (as it does while a leader is being elected):
    the batch that was polled before it is read again, not skipped."""
    ticks = sample_ticks()
    produce_ticks(kafka_settings, topics.raw, ticks)
    failures = [KafkaFailure("NOT_LEADER_FOR_PARTITION (on purpose)", retriable=True)]

    def flaky(changelog: str, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        if failures:
            raise failures.pop()
        return read_latest_per_key(kafka_settings, changelog, partitions)

    with running_processor(make_settings(kafka_settings, topics, f"f{unique}"), restore=flaky):
        outputs = consume_all(kafka_settings, topics.processed, expected=len(ticks))
    assert not failures, "the restore never failed"
    versions: dict[str, list[int]] = defaultdict(list)
    for message in outputs:
        state = pb.InstrumentState.FromString(message.value() or b"")
        versions[state.instrument].append(state.version)
    assert versions == {"AAPL": [1, 2, 3], "MSFT": list(range(1, 21)), "NVDA": list(range(1, 21))}
