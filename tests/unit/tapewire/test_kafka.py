"""tapewire.kafka's pure helpers: the client configurations and reading a record's position
and time."""

from __future__ import annotations

from typing import Any, cast

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Message

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
