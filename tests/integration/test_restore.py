"""Restoring state from a changelog (`tapewire.kafka.read_latest_per_key`) on a real broker.

The restore must hold everything a transaction committed before the restore could have seen
that transaction's offsets: a transaction's records reach a partition before it commits, but
the commit marker reaches each partition on its own, after the coordinator has answered the
producer (and, on a cluster, after an election when that partition's leader has died). A
reader that stopped at the last stable offset would miss them while the committed input
offsets already count them: the processor would start from a stale state.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

from tapewire.kafka import read_latest_per_key, transactional_producer_config
from tapewire.settings import KafkaSettings, TopicSettings

pytestmark = pytest.mark.integration

HELD_S = 1.5  # how long the test keeps its transaction open while the restore reads


def open_transaction(kafka: KafkaSettings, topic: str, records: dict[bytes, bytes]) -> Producer:
    """A transaction holding `records` in partition 0, produced and flushed but not ended."""
    producer = Producer(transactional_producer_config(kafka, "restore-test", f"restore-{uuid.uuid4().hex}"))
    producer.init_transactions(30)
    producer.begin_transaction()
    for key, value in records.items():
        producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(30) == 0
    return producer


def restore_while(
    kafka: KafkaSettings, topic: str, end: str, producer: Producer
) -> tuple[dict[bytes, bytes], float]:
    """Restore partition 0 while `producer`'s transaction is open; `end` it (commit or abort)
    after HELD_S. Return what the restore read and how long it took."""
    ender = threading.Timer(
        HELD_S, lambda: producer.commit_transaction(30) if end == "commit" else producer.abort_transaction(30)
    )
    started = time.monotonic()
    ender.start()
    try:
        restored = read_latest_per_key(kafka, topic, [0], timeout_s=30)
    finally:
        ender.join()
    return restored[0], time.monotonic() - started


def test_a_restore_waits_for_a_transaction_open_when_it_began_and_holds_its_records(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    topic = topics.processor_state
    committed = open_transaction(kafka_settings, topic, {b"A": b"1", b"B": b"1"})
    committed.commit_transaction(30)
    pending = open_transaction(kafka_settings, topic, {b"A": b"2", b"C": b"1"})

    restored, took_s = restore_while(kafka_settings, topic, "commit", pending)

    assert restored == {b"A": b"2", b"B": b"1", b"C": b"1"}
    assert took_s >= HELD_S * 0.9, "the restore ended before the transaction did"


def test_a_restore_waits_out_an_aborted_transaction_and_leaves_its_records_out(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    topic = topics.processor_state
    committed = open_transaction(kafka_settings, topic, {b"A": b"1"})
    committed.commit_transaction(30)
    doomed = open_transaction(kafka_settings, topic, {b"A": b"2", b"B": b"1"})

    restored, took_s = restore_while(kafka_settings, topic, "abort", doomed)

    assert restored == {b"A": b"1"}
    assert took_s >= HELD_S * 0.9


def test_a_restore_of_empty_and_tombstoned_partitions(
    kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    topic = topics.processor_state
    producer = open_transaction(kafka_settings, topic, {b"A": b"1", b"B": b"1"})
    producer.produce(topic, key=b"A", value=None, partition=0)
    producer.commit_transaction(30)

    restored = read_latest_per_key(kafka_settings, topic, [0, 1], timeout_s=30)

    assert restored == {0: {b"B": b"1"}, 1: {}}
