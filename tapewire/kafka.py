"""Thin, typed helpers over confluent-kafka shared by the services.

Nothing here talks to the network in a constructor: building a config is pure, and every
function that does I/O says so in its name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tapewire.errors import ConfigurationError, KafkaFailure
from tapewire.settings import CHANGELOG_TOPIC_CONFIG, KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


def producer_config(kafka: KafkaSettings, client_id: str, **overrides: Any) -> dict[str, Any]:
    """An idempotent, acks=all producer: no loss and no duplicates from its own retries."""
    conf: dict[str, Any] = {
        **kafka.as_librdkafka_dict(),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        # A small linger batches bursts without adding noticeable latency to a live feed.
        "linger.ms": kafka.linger_ms,
        "compression.type": "lz4",
        # Retry transient broker trouble for up to 2 minutes before reporting a failure.
        "delivery.timeout.ms": 120_000,
    }
    conf.update(overrides)
    return conf


def transactional_producer_config(
    kafka: KafkaSettings, client_id: str, transactional_id: str, transaction_timeout_ms: int = 15_000
) -> dict[str, Any]:
    """A producer for consume-process-produce transactions.

    The transaction timeout bounds how long a crashed instance's open transaction can hold back
    read_committed readers (and a restore) before the broker aborts it.
    """
    return producer_config(
        kafka,
        client_id,
        **{
            "transactional.id": transactional_id,
            "transaction.timeout.ms": transaction_timeout_ms,
            # librdkafka requires a record's delivery timeout to fit in its transaction's.
            "delivery.timeout.ms": transaction_timeout_ms,
        },
    )


def consumer_config(kafka: KafkaSettings, group_id: str, client_id: str, **overrides: Any) -> dict[str, Any]:
    """A consumer that commits only when told to, starting from the beginning of new partitions."""
    conf: dict[str, Any] = {
        **kafka.as_librdkafka_dict(),
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        # See KafkaSettings.fetch_wait_max_ms.
        "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
        # Cap what librdkafka prefetches per partition so a slow stage holds bounded memory.
        "queued.max.messages.kbytes": 16_384,
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
    }
    conf.update(overrides)
    return conf


def ensure_topics(
    kafka: KafkaSettings,
    topics: Mapping[str, int],
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the topics that do not exist yet (name -> partitions, with optional per-topic
    configs); existing ones are kept as they are."""
    admin = AdminClient(dict(kafka.as_librdkafka_dict()))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            existing = admin.list_topics(timeout=5).topics
            break
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise KafkaFailure(f"broker at {kafka.bootstrap_servers} not reachable: {exc}") from exc
            time.sleep(0.5)
    missing = [
        NewTopic(
            name,
            num_partitions=n,
            replication_factor=replication_factor,
            config=dict((configs or {}).get(name, {})),
        )
        for name, n in topics.items()
        if name not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
        try:
            future.result()
            log.info("created topic", extra={"topic": name})
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaFailure(f"could not create topic {name}: {exc}", exc.args[0].code()) from exc


def ensure_all_topics(kafka: KafkaSettings, topics: TopicSettings, timeout_s: float = 30.0) -> None:
    """Create every topic tapewire uses (TopicSettings.all_topics), the changelogs compacted,
    each with its min.insync.replicas."""
    durability = {"min.insync.replicas": str(topics.effective_min_insync_replicas)}
    ensure_topics(
        kafka,
        topics.all_topics(),
        topics.replication_factor,
        timeout_s,
        configs={
            name: {**durability, **(CHANGELOG_TOPIC_CONFIG if name in topics.compacted else {})}
            for name in topics.all_topics()
        },
    )


def poll_batch(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Wait up to `timeout_s` for the first message, then take what is already queued.

    `consume(n, timeout)` alone waits for n messages *or* the timeout, which adds up to the
    whole timeout of latency per hop at low rates.
    """
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    return [first, *consumer.consume(max_messages - 1, 0)]


def flush_or_raise(producer: Producer, timeout_s: float) -> None:
    """Wait until every produced record is acknowledged, or raise."""
    remaining = producer.flush(timeout_s)
    if remaining:
        raise KafkaFailure(f"{remaining} records not acknowledged within {timeout_s}s", retriable=True)


def produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    on_delivery: Callable[[KafkaError | None, Message], None],
    headers: list[tuple[str, Any]] | None = None,
) -> None:
    """Produce, waiting while librdkafka's own queue is full instead of dropping."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


class DeliveryTracker:
    """Counts delivery failures reported to `on_delivery` so a batch can fail as a whole."""

    def __init__(self) -> None:
        self._failures: list[str] = []

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(f"{message.topic()}: {error.str()}")

    def wait(self, producer: Producer, timeout_s: float) -> None:
        """Wait for every outstanding record; raise if any was not acknowledged."""
        try:
            flush_or_raise(producer, timeout_s)
        finally:
            failures, self._failures = self._failures, []
        if failures:
            raise KafkaFailure(f"{len(failures)} records not delivered, first: {failures[0]}", retriable=True)


def message_error(message: Message) -> KafkaError | None:
    """The error carried by a consumed message, ignoring end-of-partition notices."""
    error = message.error()
    if error is None or error.code() == KafkaError._PARTITION_EOF:
        return None
    return error


def reader_config(kafka: KafkaSettings, group_id: str) -> dict[str, Any]:
    """A consumer that is assigned partitions (it never joins `group_id`, nor commits), reads
    only committed records and says when it reaches the end of a partition."""
    return {
        **kafka.as_librdkafka_dict(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    }


def read_latest_per_key(
    kafka: KafkaSettings, topic: str, partitions: Iterable[int], timeout_s: float = 60.0
) -> dict[int, dict[bytes, bytes]]:
    """partition -> {key: latest value} of committed records, reading each partition to its end.

    For restoring state from a compacted changelog. Reads with `assign()` (no group, no commits);
    a null value (tombstone) removes its key.

    The end is each partition's high watermark when the restore begins, not its last stable
    offset: a transaction whose records are below it is waited for until it ends (a commit
    adds them, an abort leaves them out). Its input offsets may already be committed, since a
    commit marker reaches each partition on its own after the producer has been answered (on a
    cluster, only after an election when the partition's leader has died); stopping at the
    stable offset would restore a state older than those offsets. The wait is bounded by the
    writer's transaction.timeout.ms, after which the broker aborts what a crashed writer left.
    """
    latest: dict[int, dict[bytes, bytes]] = {p: {} for p in partitions}
    deadline = time.monotonic() + timeout_s
    try:
        pending = _non_empty_partitions(kafka, topic, latest, deadline)
    except KafkaException as exc:
        raise KafkaFailure(f"restore of {topic} failed: {exc}", retriable=True) from exc
    consumer = Consumer(reader_config(kafka, "tapewire-restore"))
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        while pending:
            if time.monotonic() > deadline:
                raise KafkaFailure(
                    f"restore of {topic} partitions {sorted(pending)} did not finish in {timeout_s}s",
                    retriable=True,
                )
            for message in consumer.consume(10_000, 0.5):
                _fold_latest(message, pending, latest)
    except KafkaException as exc:
        raise KafkaFailure(f"restore of {topic} failed: {exc}", retriable=True) from exc
    finally:
        consumer.close()
    return latest


# Answers a watermark query can get while a partition's leader is being elected or is not yet
# known to the broker asked: a topic created a moment ago, or a leader that just died.
LEADERLESS = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)


def watermark_offsets(consumer: Consumer, topic: str, partition: int, deadline: float) -> tuple[int, int]:
    """(low, high) offsets of a partition, asked of its leader; asked again while the partition
    has no leader, until `deadline` (time.monotonic)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=max(1.0, min(10.0, deadline - time.monotonic()))
            )
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in LEADERLESS or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _non_empty_partitions(
    kafka: KafkaSettings, topic: str, partitions: Iterable[int], deadline: float
) -> dict[int, int]:
    """partition -> high watermark, for the partitions that hold anything. Asked by a
    read_uncommitted client: a read_committed one is told the last stable offset instead."""
    consumer = Consumer({**reader_config(kafka, "tapewire-restore"), "isolation.level": "read_uncommitted"})
    ends: dict[int, int] = {}
    try:
        for partition in partitions:
            low, high = watermark_offsets(consumer, topic, partition, deadline)
            if high > low:
                ends[partition] = high
    finally:
        consumer.close()
    return ends


def _fold_latest(message: Message, pending: dict[int, int], latest: dict[int, dict[bytes, bytes]]) -> None:
    partition = message.partition()
    error = message.error()
    if partition is None or partition not in pending:
        return
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            # The last stable offset: past the end, or short of it while a transaction is open.
            offset = message.offset()
            if offset is not None and offset >= pending[partition]:
                del pending[partition]
            return
        raise KafkaFailure(f"restore read failed: {error.str()}", error.code(), retriable=error.retriable())
    key, value, offset = message.key(), message.value(), message.offset()
    if key is not None:
        if value is None:
            latest[partition].pop(key, None)
        else:
            latest[partition][key] = value
    if offset is not None and offset + 1 >= pending[partition]:
        del pending[partition]


def record_position(message: Message) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of a consumed record; None for an error event."""
    if message_error(message) is not None:
        return None
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None or offset < 0:
        return None
    return topic, partition, offset


def record_time_ns(message: Message) -> int | None:
    """The record's timestamp (the producer's create time or the broker's append time) in Unix ns;
    None when it has none (only records of the pre-0.10 message format)."""
    kind, ms = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE or ms is None or ms < 0:
        return None
    return int(ms) * 1_000_000


def partition_counts(kafka: KafkaSettings, names: list[str], timeout_s: float = 30.0) -> dict[str, int]:
    """Partitions per topic, waiting for topics just created to show in the metadata (a broker
    that has only just started can answer before it knows them)."""
    consumer = Consumer({**kafka.as_librdkafka_dict(), "group.id": "tapewire-metadata"})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            metadata = consumer.list_topics(timeout=10)
            missing = [
                name
                for name in names
                if not metadata.topics.get(name) or not metadata.topics[name].partitions
            ]
            if not missing:
                return {name: len(metadata.topics[name].partitions) for name in names}
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"topics {missing} are not in the broker's metadata after {timeout_s:.0f}s"
                )
            time.sleep(0.5)
    finally:
        consumer.close()
