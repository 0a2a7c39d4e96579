"""`python -m tools.dlq` against a real broker: list, show and replay records of a real DLQ topic."""

from __future__ import annotations

import io
import json
import uuid
from base64 import b64decode
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.v1 import market_pb2 as pb
from tests.support import consume_all
from tools.dlq import DlqSettings, main

pytestmark = pytest.mark.integration

T0 = 1_763_649_000 * 10**9  # 2025-11-20 14:30:00 UTC
FAILED_AT = T0 + 5 * 10**9

UNDECODABLE = b"\xff\xfe not protobuf"
NEGATIVE_PRICE = pb.Tick(
    instrument="AAPL", venue="XNAS", kind=pb.TICK_KIND_TRADE, price="0", size="1", exchange_time_ns=T0
).SerializeToString()
# Dead-lettered under a rule since relaxed: valid for today's processor.
VALID_NOW = pb.Tick(
    instrument="MSFT", venue="XNAS", kind=pb.TICK_KIND_TRADE, price="412.5", size="10", exchange_time_ns=T0
).SerializeToString()


@dataclass(frozen=True)
class Sent:
    key: bytes
    value: bytes
    source_partition: int


def dead_letter(
    producer: Producer,
    topics: TopicSettings,
    key: bytes,
    value: bytes,
    code: str,
    reason: str,
    source: tuple[str, int, int],
) -> None:
    """Produce a record the way services/processor/run.py `Processor._dead_letter` does."""
    headers: list[tuple[str, str | bytes | None]] = [
        ("tapewire-error", reason),
        ("tapewire-error-code", code),
        ("tapewire-source-topic", source[0]),
        ("tapewire-source-partition", str(source[1])),
        ("tapewire-source-offset", str(source[2])),
        ("tapewire-service", "processor"),
        ("tapewire-failed-at-ns", str(FAILED_AT)),
    ]
    partition = source[1] % topics.partitions
    producer.produce(topics.raw_dlq, key=key, value=value, partition=partition, headers=headers)


@pytest.fixture
def dlq(kafka_settings: KafkaSettings, topics: TopicSettings, unique: str) -> dict[str, Sent]:
    """DLQ records at 0:0 (undecodable), 0:1 (invalid, price -1) and 2:0 (invalid then, valid now).

    Written in a transaction, as the processor writes them: each partition ends with a commit
    marker, so the last offset is not a record.
    """
    producer = Producer(
        {**kafka_settings.as_librdkafka_dict(), "transactional.id": f"dlq-writer-{unique}", "acks": "all"}
    )
    records = {
        "undecodable": ("not a tapewire.v1.Tick: Error parsing message", Sent(b"AAPL", UNDECODABLE, 0)),
        "invalid": ("price must be > 0, got -1", Sent(b"AAPL", NEGATIVE_PRICE, 0)),
        "valid now": ("venue must be one of XNYS, XLON", Sent(b"MSFT", VALID_NOW, 2)),
    }
    producer.init_transactions(30)
    producer.begin_transaction()
    for offset, (name, (reason, sent)) in enumerate(records.items()):
        source = (topics.raw, sent.source_partition, 100 + offset)
        code = "undecodable" if name == "undecodable" else "invalid"
        dead_letter(producer, topics, sent.key, sent.value, code, reason, source)
    producer.commit_transaction(30)
    return {name: sent for name, (_, sent) in records.items()}


@pytest.fixture
def settings(kafka_settings: KafkaSettings, topics: TopicSettings) -> DlqSettings:
    return DlqSettings(kafka=kafka_settings, topics=topics)


def run(settings: DlqSettings, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--timeout", "10"], settings, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def record_count(kafka: KafkaSettings, topic: str) -> int:
    """How many records the topic holds, from its watermarks (no waiting for what is not there)."""
    consumer = Consumer({**kafka.as_librdkafka_dict(), "group.id": f"counter-{uuid.uuid4().hex[:8]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions]
    finally:
        consumer.close()
    return sum(high - low for low, high in marks)


def replayed_from(message: Message) -> str | None:
    headers = dict(message.headers() or [])
    value = headers.get("tapewire-replayed-from")
    return value.decode() if isinstance(value, bytes) else value


def test_list_shows_every_record_with_its_code(settings: DlqSettings, dlq: dict[str, Sent]) -> None:
    code, out, _ = run(settings, "list")

    assert code == 0
    header, *rows, summary = out.splitlines()
    by_position = {row.split()[0]: row for row in rows}
    assert {position: row.split()[2] for position, row in by_position.items()} == {
        "0:0": "undecodable",
        "0:1": "invalid",
        "2:0": "invalid",
    }
    assert header.startswith("DLQ") and summary == "3 records: invalid 2, undecodable 1"
    assert "price must be > 0, got -1" in by_position["0:1"]
    assert f"{settings.topics.raw}:2:102" in by_position["2:0"] and "key=MSFT" in by_position["2:0"]
    assert "2025-11-20T14:30:05.000Z" in by_position["0:0"]

    code, out, _ = run(settings, "list", "--code", "invalid", "--partition", "0")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["0:1"]
    assert out.splitlines()[-1] == "1 record: invalid 1"

    code, out, _ = run(settings, "list", "--code", "invalid", "--limit", "1")
    assert code == 0
    assert len(out.splitlines()) == 3
    assert out.splitlines()[-1] == "2 records: invalid 2 (showing the first 1)"


def test_list_json_is_one_object_per_line(settings: DlqSettings, dlq: dict[str, Sent]) -> None:
    code, out, err = run(settings, "list", "--json")

    assert code == 0
    objects = {(o["partition"], o["offset"]): o for o in map(json.loads, out.splitlines())}
    assert {position: o["code"] for position, o in objects.items()} == {
        (0, 0): "undecodable",
        (0, 1): "invalid",
        (2, 0): "invalid",
    }
    valid_now = objects[(2, 0)]
    assert (b64decode(valid_now["key"]), b64decode(valid_now["value"])) == (b"MSFT", VALID_NOW)
    assert valid_now["headers"]["tapewire-source-partition"] == "2"
    assert (valid_now["source_partition"], valid_now["failed_at_ns"]) == (2, FAILED_AT)
    assert objects[(0, 1)]["headers"]["tapewire-error"] == "price must be > 0, got -1"
    assert err.strip() == "3 records: invalid 2, undecodable 1"


def test_show_decodes_the_tick_or_says_it_does_not(settings: DlqSettings, dlq: dict[str, Sent]) -> None:
    code, out, _ = run(settings, "show", "2:0")

    assert code == 0
    assert 'instrument: "MSFT"' in out and 'price: "412.5"' in out
    assert "tapewire-error: venue must be one of XNYS, XLON" in out
    assert f"value      {len(VALID_NOW)} bytes" in out
    assert "valid: replay would publish it" in out

    code, out, _ = run(settings, "show", "0:0")
    assert code == 0
    assert "00000000  ff fe 20 6e 6f 74" in out
    assert "tapewire.v1.Tick: does not decode" in out
    assert "still undecodable" in out

    code, _, err = run(settings, "show", "0:99")
    assert code == 2 and "no record at 0:99" in err


def test_replay_publishes_only_what_is_valid_now(
    kafka_settings: KafkaSettings, settings: DlqSettings, dlq: dict[str, Sent]
) -> None:
    code, out, _ = run(settings, "replay", "--all", "--dry-run")

    assert code == 0
    assert out.splitlines()[-1] == (
        "dry run, nothing produced: chosen 3, would replay 1, still invalid 2 (skipped 2), failed 0"
    )
    assert record_count(kafka_settings, settings.topics.raw) == 0

    code, out, _ = run(settings, "replay", "--all")

    assert code == 0, out
    assert out.splitlines()[-1] == "chosen 3, replayed 1, still invalid 2 (skipped 2), failed 0"
    assert "still invalid: price must be > 0, got 0" in out
    [message] = consume_all(kafka_settings, settings.topics.raw, expected=1, timeout_s=15)
    assert record_count(kafka_settings, settings.topics.raw) == 1
    sent = dlq["valid now"]
    assert (message.key(), message.value()) == (sent.key, sent.value)
    assert message.partition() == sent.source_partition
    assert replayed_from(message) == f"{settings.topics.raw_dlq}:2:0"


def test_replay_force_republishes_an_undecodable_record(
    kafka_settings: KafkaSettings, settings: DlqSettings, dlq: dict[str, Sent]
) -> None:
    code, out, _ = run(settings, "replay", "--records", "0:0", "--force")

    assert code == 0, out
    assert out.splitlines()[-1] == "chosen 1, replayed 1, still invalid 1 (forced 1), failed 0"
    [message] = consume_all(kafka_settings, settings.topics.raw, expected=1, timeout_s=15)
    assert (message.key(), message.value()) == (b"AAPL", UNDECODABLE)
    assert replayed_from(message) == f"{settings.topics.raw_dlq}:0:0"


def test_replay_of_records_not_in_the_dlq_publishes_nothing(
    kafka_settings: KafkaSettings, settings: DlqSettings, dlq: dict[str, Sent]
) -> None:
    code, _, err = run(settings, "replay", "--records", "2:0,0:7")

    assert code == 2
    assert "no record at 0:7" in err
    assert record_count(kafka_settings, settings.topics.raw) == 0


def test_missing_topic_is_a_clear_error(
    kafka_settings: KafkaSettings, settings: DlqSettings, unique: str
) -> None:
    missing = f"t{unique}_absent.dlq"

    code, out, err = run(settings, "list", "--topic", missing)

    assert code == 2
    assert err.strip() == f"dlq: topic {missing!r} does not exist on {kafka_settings.bootstrap_servers}"
    assert out == ""
    admin = AdminClient(kafka_settings.as_librdkafka_dict())
    assert missing not in admin.list_topics(timeout=10).topics, "looking must not create the topic"


def test_unreachable_broker_is_a_clear_error(topics: TopicSettings) -> None:
    settings = DlqSettings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"), topics=topics)
    out, err = io.StringIO(), io.StringIO()

    code = main(["list", "--timeout", "2"], settings, out=out, err=err)

    assert code == 2
    assert err.getvalue().startswith("dlq: broker at 127.0.0.1:1 not reachable within 2s")
