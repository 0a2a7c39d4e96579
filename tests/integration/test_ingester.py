"""The ingester against the real broker: a replay and a simulator run, each on fresh topics."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from prometheus_client import CollectorRegistry

from services.ingester.run import EXIT_CONFIG, serve
from services.ingester.settings import IngesterSettings
from services.ingester.sources.simulator import instrument_names
from services.ingester.sources.universe import LISTINGS
from tapewire.kafka import consumer_config
from tapewire.reference.master import read_master
from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.v1 import market_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
BASE_NS = time.time_ns() - 3_600 * 10**9  # an hour ago: well inside what the contract accepts
INSTRUMENTS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B", "JPM", "SPY"]


def valid_line(n: int) -> tuple[str, tuple[str, int]]:
    """The n-th valid line (every field form in turn) and the (instrument, sequence) it must produce."""
    instrument, seq = INSTRUMENTS[n % len(INSTRUMENTS)], n // len(INSTRUMENTS) + 1
    ts_ns = BASE_NS + n * 1_000_000
    record: dict[str, object] = {"instrument": instrument, "seq": seq}
    if n % 2:
        record |= {"kind": "trade", "price": f"{100 + n % 7}.{n % 100:02d}", "size": "100", "venue": "XNAS"}
    else:
        record |= {"kind": "quote", "bid": "99.99", "bid_size": 300, "ask": "100.01", "ask_size": 200}
    if n % 3 == 0:
        record["ts_ns"] = ts_ns
    elif n % 3 == 1:
        seconds, nanos = divmod(ts_ns, 10**9)
        record["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
    return json.dumps(record), (instrument, seq)


BAD_LINES = [
    "{not json",
    '{"instrument":"AAPL","kind":"trade","size":"100"}',  # no price
    '{"instrument":"AAPL","kind":"quote","bid":"2","bid_size":"1","ask":"1","ask_size":"1"}',  # crossed
    '["AAPL"]',
    '{"instrument":"AAPL","kind":"trade","price":"1","size":"1","pad":"' + "x" * 70_000 + '"}',  # > 64 KiB
    '{"instrument":"bad symbol!","kind":"trade","price":"1","size":"1"}',
]


def replay_file(path: Path, valid: int) -> list[tuple[str, int]]:
    """Write `valid` good lines with the bad ones, a comment and blank lines spread among them."""
    expected, lines = [], ["# instrument, kind, prices and sizes; see services/ingester/README.md", ""]
    for n in range(valid):
        line, key = valid_line(n)
        lines.append(line)
        expected.append(key)
        if n % 33 == 5:
            lines.append(BAD_LINES[(n // 33) % len(BAD_LINES)])
    lines.insert(len(lines) // 2, "")
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe not utf-8\n")
    return expected


def consume_all(kafka: KafkaSettings, topic: str, group: str, timeout_s: float = 20.0) -> list[Message]:
    """Every record in `topic`, from the beginning, read with a group of the test's own."""
    consumer = Consumer(consumer_config(kafka, group, "test-reader"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < sum(ends.values()) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
        return messages
    finally:
        consumer.close()


def ingester_settings(kafka: KafkaSettings, topics: TopicSettings, **values: object) -> IngesterSettings:
    # No gRPC: its fixed default port could be taken on a shared machine (test_ingest_grpc.py covers it).
    return IngesterSettings(  # type: ignore[arg-type]
        kafka=kafka, topics=topics, metrics_port=0, grpc_enabled=False, startup_timeout_s=20, **values
    )


def test_a_replay_publishes_exactly_its_valid_lines_in_order(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str, tmp_path: Path
) -> None:
    path = tmp_path / "ticks.jsonl"
    expected = replay_file(path, valid=200)
    registry = CollectorRegistry()
    settings = ingester_settings(
        kafka_settings, topics, source="replay", replay_path=str(path), replay_speed=0
    )

    assert serve(settings, threading.Event(), registry) == 0  # it ends by itself

    messages = consume_all(kafka_settings, topics.raw, f"t{unique}_reader")
    ticks = [pb.Tick.FromString(m.value() or b"") for m in messages]
    assert sorted((t.instrument, t.sequence) for t in ticks) == sorted(expected)
    assert all(m.key() == t.instrument.encode() for m, t in zip(messages, ticks, strict=True))
    assert all(t.ingest_time_ns >= t.exchange_time_ns > 0 for t in ticks)
    partitions_of, sequences = defaultdict(set), defaultdict(list)
    for message, tick in zip(messages, ticks, strict=True):
        partitions_of[tick.instrument].add(message.partition())
        sequences[tick.instrument].append(tick.sequence)
    assert all(len(partitions) == 1 for partitions in partitions_of.values())
    assert all(seen == sorted(seen) for seen in sequences.values())  # file order kept per instrument
    bad = len([n for n in range(200) if n % 33 == 5]) + 1  # + the non-UTF-8 last line
    invalid = sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "ingester_invalid_records"
        for sample in metric.samples
        if sample.name == "ingester_invalid_records_total"
    )
    assert invalid == bad
    assert registry.get_sample_value("ingester_published_total") == len(expected)


def test_the_simulator_publishes_exactly_max_ticks(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str
) -> None:
    registry = CollectorRegistry()
    settings = ingester_settings(
        kafka_settings, topics, source="simulator", max_ticks=500, rate=5_000, seed=1
    )

    assert serve(settings, threading.Event(), registry) == 0

    messages = consume_all(kafka_settings, topics.raw, f"t{unique}_reader")
    assert len(messages) == 500
    assert registry.get_sample_value("ingester_published_total") == 500
    assert registry.get_sample_value("ingester_ack_latency_seconds_count") == 500
    by_instrument = defaultdict(list)
    for message in messages:
        tick = pb.Tick.FromString(message.value() or b"")
        assert message.key() == tick.instrument.encode() and tick.ingest_time_ns > 0
        by_instrument[(message.partition(), tick.instrument)].append(tick.sequence)
    assert all(seen == list(range(1, len(seen) + 1)) for seen in by_instrument.values())
    # Its universe went to the instrument master first: every instrument it trades has an entry.
    master = {entry.symbol: entry for entry in read_master(kafka_settings, topics.instruments)}
    assert sorted(master) == sorted(instrument_names(settings.instruments))
    assert {tick_instrument for _, tick_instrument in by_instrument} <= set(master)


def test_a_venue_the_master_cannot_hold_is_refused_at_start_with_the_setting_named(
    kafka_settings: KafkaSettings, topics: TopicSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ingester_settings(
        kafka_settings, topics, source="simulator", instruments=len(LISTINGS) + 1, venue="sim-1", max_ticks=1
    )
    with caplog.at_level(logging.ERROR):
        assert serve(settings, threading.Event(), CollectorRegistry()) == EXIT_CONFIG
    assert any("INGESTER_VENUE='sim-1'" in record.getMessage() for record in caplog.records)


def test_python_m_services_ingester_replays_stdin_and_exits_zero(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique: str, tmp_path: Path
) -> None:
    lines = "\n".join(valid_line(n)[0] for n in range(20)) + "\n{broken\n"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "TAPEWIRE_TOPIC_RAW": topics.raw,
        "TAPEWIRE_TOPIC_PARTITIONS": str(topics.partitions),
        "INGESTER_SOURCE": "replay",
        "INGESTER_REPLAY_PATH": "-",
        "INGESTER_REPLAY_SPEED": "0",
        "INGESTER_METRICS_PORT": "0",
        "INGESTER_GRPC_ENABLED": "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.ingester"],
        input=lines.encode(),
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    logs = [json.loads(line) for line in done.stderr.decode().splitlines() if line.startswith("{")]
    summary = next(entry for entry in logs if entry["msg"] == "ingester stopped")
    assert (summary["accepted"], summary["published"], summary["invalid"], summary["left"]) == (20, 20, 1, 0)
    assert len(consume_all(kafka_settings, topics.raw, f"t{unique}_reader")) == 20


def test_an_unreachable_broker_fails_start_up_with_a_clear_message(
    caplog: pytest.LogCaptureFixture, unique: str
) -> None:
    # Nothing listens on port 1: start-up retries until startup_timeout_s, then gives up.
    settings = IngesterSettings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        topics=TopicSettings(raw=f"t{unique}_raw"),
        metrics_port=0,
        grpc_enabled=False,
        startup_timeout_s=1,
    )
    with caplog.at_level(logging.ERROR):
        assert serve(settings, threading.Event(), CollectorRegistry()) == 1
    assert any(
        "not reachable" in r.getMessage() and "KAFKA_BOOTSTRAP_SERVERS" in r.getMessage()
        for r in caplog.records
    )
