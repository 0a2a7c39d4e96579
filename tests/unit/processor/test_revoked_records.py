"""A batch polled across a rebalance: records of a partition revoked while the batch was being
polled are left out, so an instrument whose state was forgotten never restarts at version 1.
The broker and producer are faked (pure bookkeeping of the processor's partitions)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any, cast

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from services.processor.metrics import ProcessorMetrics
from services.processor.run import Processor
from services.processor.settings import ProcessorSettings
from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.ticks import Trade, to_proto
from tapewire.v1 import market_pb2 as pb

TOPICS = TopicSettings()
T0 = 1_763_649_000_000_000_000


class FakeMessage:
    def __init__(self, partition: int, offset: int, instrument: str, sequence: int) -> None:
        tick = Trade(instrument, "XNAS", D("10"), D("1"), sequence, T0 + sequence, T0)
        self._where = (TOPICS.raw, partition, offset)
        self._key, self._value = instrument.encode(), to_proto(tick).SerializeToString()

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, T0 // 1_000_000)

    def headers(self) -> None:
        return None

    def error(self) -> None:
        return None


class FakeProducer:
    """A transactional producer that remembers what each committed transaction held."""

    def __init__(self) -> None:
        self.open: list[tuple[str, int, bytes]] = []
        self.committed: list[tuple[str, int, bytes]] = []
        self.offsets: list[list[TopicPartition]] = []

    def begin_transaction(self) -> None:
        self.open = []

    def produce(self, topic: str, value: bytes, key: bytes, partition: int, headers: Any = None) -> None:
        self.open.append((topic, partition, value))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], metadata: Any, timeout: float
    ) -> None:
        self.offsets.append(offsets)

    def commit_transaction(self, timeout: float) -> None:
        self.committed += self.open
        self.open = []

    def abort_transaction(self, timeout: float) -> None:
        self.open = []


class FakeConsumer:
    def consumer_group_metadata(self) -> object:
        return object()

    def seek(self, partition: TopicPartition) -> None:
        pass


def test_records_of_a_partition_revoked_during_the_poll_are_left_out() -> None:
    settings = ProcessorSettings(
        kafka=KafkaSettings(bootstrap_servers="b:9092"), topics=TOPICS, group_id="g", metrics_port=0
    )
    producer = FakeProducer()
    processor = Processor(
        settings,
        cast(Consumer, FakeConsumer()),
        [cast(Producer, producer)],
        lambda topic, partitions: {p: {} for p in partitions},
        ProcessorMetrics(CollectorRegistry()),
    )
    try:
        mine = [TopicPartition(TOPICS.raw, 0), TopicPartition(TOPICS.commands, 0)]
        theirs = [TopicPartition(TOPICS.raw, 2), TopicPartition(TOPICS.commands, 2)]
        processor.on_assign(cast(Consumer, None), [*mine, *theirs])
        processor.handle([cast(Any, FakeMessage(2, 40, "LATE", 1)), cast(Any, FakeMessage(0, 7, "KEPT", 1))])
        # A rebalance inside the next batch's consume(): partition 2 goes to another member
        # after poll() returned one of its records.
        processor.on_revoke(cast(Consumer, None), theirs)
        processor.handle([cast(Any, FakeMessage(2, 41, "LATE", 2)), cast(Any, FakeMessage(0, 8, "KEPT", 2))])
        processor.commit()
    finally:
        processor.close()
    states = [
        pb.InstrumentState.FromString(value)
        for topic, _, value in producer.committed
        if topic == TOPICS.processed
    ]
    assert [(s.instrument, s.version) for s in states] == [("LATE", 1), ("KEPT", 1), ("KEPT", 2)]
    # Nor was an offset of partition 2 committed after its revocation.
    assert [(tp.partition, tp.offset) for tp in producer.offsets[-1] if tp.topic == TOPICS.raw] == [(0, 9)]
