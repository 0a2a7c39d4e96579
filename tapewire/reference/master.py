"""The instrument master as a service holds it: the latest entry per symbol of the compacted topic
tt_instruments (the source of truth, replayable; key: symbol, value: tapewire.v1.Instrument, a
null value removes the symbol), and how entries get there (`publish`).

A process that needs the master reads the whole topic once at start (`MasterFeed.catch_up`), then
takes what arrives between its own units of work (`MasterFeed.poll`, never blocking): a new or
changed instrument is seen without a restart, a few milliseconds after it is published.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from google.protobuf.message import DecodeError

from tapewire.errors import KafkaFailure
from tapewire.kafka import DeliveryTracker, produce, producer_config, reader_config
from tapewire.settings import KafkaSettings
from tapewire.v1 import reference_pb2 as rpb

from .instrument import Instrument, InvalidInstrument, from_proto, to_proto

log = logging.getLogger(__name__)


class InstrumentMaster:
    """symbol -> entry; what the topic's records amount to, applied in order."""

    def __init__(self, entries: Iterable[Instrument] = ()) -> None:
        self._entries = {entry.symbol: entry for entry in entries}

    def get(self, symbol: str) -> Instrument | None:
        return self._entries.get(symbol)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._entries.values())

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of the topic."""
        record = read_record(key, value)
        if record is None:
            return
        symbol, entry = record
        if entry is None:
            self._entries.pop(symbol, None)
        else:
            self._entries[symbol] = entry


def read_record(key: bytes | None, value: bytes | None) -> tuple[str, Instrument | None] | None:
    """(symbol, its entry, or None when the record removes it); None for a record to skip (no
    key, or an invalid entry: logged, because a bad record in the topic must not stop every
    service that reads it)."""
    if key is None:
        return None
    symbol = key.decode("utf-8", "replace")
    if value is None:
        return symbol, None
    try:
        entry = from_proto(rpb.Instrument.FromString(value))
    except (DecodeError, InvalidInstrument) as exc:
        log.warning("invalid instrument record skipped", extra={"instrument": symbol, "error": str(exc)})
        return None
    if entry.symbol != symbol:
        log.warning("instrument record under another key skipped", extra={"instrument": symbol})
        return None
    return symbol, entry


class MasterFeed:
    """A consumer without a group over every partition of the master topic, from its beginning."""

    def __init__(self, kafka: KafkaSettings, topic: str, master: InstrumentMaster | None = None) -> None:
        self.master = master if master is not None else InstrumentMaster()
        self._topic = topic
        self._consumer = Consumer(reader_config(kafka, "tapewire-instruments"))
        self._started = False

    def catch_up(self, timeout_s: float = 30.0) -> int:
        """Read the topic to its end; how many entries the master then holds."""
        try:
            metadata = self._consumer.list_topics(self._topic, timeout=timeout_s).topics[self._topic]
            partitions = list(metadata.partitions)
            self._consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions])
            self._started = True
            pending = set(partitions)
            while pending:
                message = self._consumer.poll(timeout_s)
                if message is None:
                    raise KafkaFailure(
                        f"reading {self._topic} to its end took over {timeout_s}s", retriable=True
                    )
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition() or 0)
                    continue
                self._take(message)
        except KafkaException as exc:
            raise KafkaFailure(f"reading {self._topic} failed: {exc}", retriable=True) from exc
        return len(self.master)

    def poll(self, max_records: int = 1_000) -> list[str]:
        """Apply what has arrived since, without waiting; the symbols it set or removed."""
        if not self._started:
            return []
        touched = []
        for message in self._consumer.consume(max_records, 0):
            key = message.key()
            if self._take(message) and key is not None:
                touched.append(key.decode("utf-8", "replace"))
        return touched

    def close(self) -> None:
        self._consumer.close()

    def _take(self, message: Message) -> bool:
        """Apply a record; whether it was one (not an error or end-of-partition notice)."""
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("instrument master read error", extra={"error": error.str()})
            return False
        self.master.apply(message.key(), message.value())
        return True


def read_master(kafka: KafkaSettings, topic: str, timeout_s: float = 30.0) -> InstrumentMaster:
    """The whole master as the topic holds it now (for a command or a check, not a service)."""
    feed = MasterFeed(kafka, topic)
    try:
        feed.catch_up(timeout_s)
    finally:
        feed.close()
    return feed.master


def publish(kafka: KafkaSettings, topic: str, entries: Iterable[Instrument], timeout_s: float = 30.0) -> int:
    """Publish entries to the master topic and wait for Kafka's acknowledgement of every one
    (idempotent, acks=all); how many were published. Raises KafkaFailure if any was not."""
    return _send(kafka, topic, ((e.symbol, to_proto(e).SerializeToString()) for e in entries), timeout_s)


def remove(kafka: KafkaSettings, topic: str, symbols: Iterable[str], timeout_s: float = 30.0) -> int:
    """Remove symbols from the master (a tombstone each, which compaction keeps for a while so
    that every reader sees it); how many were removed."""
    return _send(kafka, topic, ((symbol, None) for symbol in symbols), timeout_s)


def _send(
    kafka: KafkaSettings, topic: str, records: Iterable[tuple[str, bytes | None]], timeout_s: float
) -> int:
    producer = Producer(producer_config(kafka, "tapewire-instruments"))
    tracker = DeliveryTracker()
    count = 0
    for symbol, value in records:
        produce(producer, topic, symbol.encode(), value, tracker.on_delivery)
        count += 1
    tracker.wait(producer, timeout_s)
    return count
