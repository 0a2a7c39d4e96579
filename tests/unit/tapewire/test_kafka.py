"""tapewire.kafka's pure helpers: the client configurations, reading a record's position
and time, and a restore's patience with a partition that has no leader yet."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    KafkaException,
    Message,
)

from tapewire import kafka
from tapewire.kafka import consumer_config, producer_config, record_time_ns, transactional_producer_config
from tapewire.settings import KafkaSettings

KAFKA = KafkaSettings(
    bootstrap_servers="b:9092", linger_ms=0.0, fetch_wait_max_ms=100, session_timeout_ms=7000
)


def test_producers_are_idempotent_acks_all_with_the_settings_linger() -> None:
    conf = producer_config(KAFKA, "c")
    assert (conf["enable.idempotence"], conf["acks"], conf["linger.ms"]) == (True, "all", 0.0)
    assert conf["bootstrap.servers"] == "b:9092" and conf["client.id"] == "c"


def test_a_transactional_producer_delivers_within_its_transaction_timeout() -> None:
    conf = transactional_producer_config(KAFKA, "c", "tx-1", 9000)
    assert (conf["transactional.id"], conf["transaction.timeout.ms"], conf["delivery.timeout.ms"]) == (
        "tx-1",
        9000,
        9000,
    )


def test_consumers_commit_only_when_told_read_committed_unless_overridden() -> None:
    conf = consumer_config(KAFKA, "g", "c")
    assert conf["enable.auto.commit"] is False and conf["isolation.level"] == "read_committed"
    assert (conf["fetch.wait.max.ms"], conf["session.timeout.ms"], conf["group.id"]) == (100, 7000, "g")
    live = consumer_config(KAFKA, "g", "c", **{"isolation.level": "read_uncommitted"})
    assert live["isolation.level"] == "read_uncommitted"


class Stamped:
    def __init__(self, kind: int, ms: int) -> None:
        self._timestamp = (kind, ms)

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


def at(kind: int, ms: int) -> Message:
    return cast(Message, cast(Any, Stamped(kind, ms)))


def test_a_records_time_is_its_timestamp_in_nanoseconds_or_none() -> None:
    assert record_time_ns(at(TIMESTAMP_CREATE_TIME, 1_700_000_000_123)) == 1_700_000_000_123_000_000
    assert record_time_ns(at(TIMESTAMP_NOT_AVAILABLE, 0)) is None
    assert record_time_ns(at(TIMESTAMP_CREATE_TIME, -1)) is None


class LeaderlessFor:
    """A Consumer stand-in whose watermark query fails with `code` for its first `failures` calls."""

    def __init__(self, code: int, failures: int) -> None:
        self.code, self.failures, self.calls = code, failures, 0

    def __call__(self, conf: dict[str, Any]) -> LeaderlessFor:
        return self

    def get_watermark_offsets(self, partition: Any, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(KafkaError(self.code))
        return (0, 5) if partition.partition == 0 else (3, 3)

    def close(self) -> None:
        pass


def test_a_restore_asks_again_while_a_partition_has_no_leader(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = LeaderlessFor(KafkaError.NOT_LEADER_FOR_PARTITION, failures=2)
    monkeypatch.setattr(kafka, "Consumer", fake)
    monkeypatch.setattr(kafka.time, "sleep", lambda s: None)
    ends = kafka._non_empty_partitions(KAFKA, "t", [0, 1], time.monotonic() + 60)
    assert ends == {0: 5} and fake.calls == 4


def test_a_restore_gives_up_on_a_leaderless_partition_at_its_deadline_and_at_once_on_other_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka.time, "sleep", lambda s: None)
    for code, deadline in (
        (KafkaError.LEADER_NOT_AVAILABLE, time.monotonic() - 1),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, time.monotonic() + 60),
    ):
        fake = LeaderlessFor(code, failures=10)
        monkeypatch.setattr(kafka, "Consumer", fake)
        with pytest.raises(KafkaException):
            kafka._non_empty_partitions(KAFKA, "t", [0], deadline)
        assert fake.calls == 1
