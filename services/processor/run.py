"""The processor's loop: raw ticks in, enriched states out, exactly once, in Kafka transactions.

Per batch, inside one Kafka transaction: every new state to `tt_processed_data`, the latest
state of each instrument to the compacted changelog `tt_processor_state`, undecodable or
invalid records to the DLQ, and the consumer offsets of the batch. Either all of it becomes
visible to read_committed readers or none of it does. A failed transaction is aborted, the
consumer is rewound to the batch's first offsets and the in-memory states are left as they
were, so the retry computes exactly the same states.

Output for raw partition p goes to partition p of the processed topic and of the changelog.
A processor that is assigned p therefore restores p's instruments from changelog partition p,
which holds exactly the states that the committed raw offsets of p account for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from tapewire import dead_letters
from tapewire.consume_loop import next_offsets, run_batches
from tapewire.dead_letters import Refused, decode_raw_tick
from tapewire.errors import KafkaFailure, TapewireError
from tapewire.kafka import record_position
from tapewire.v1 import market_pb2 as pb

from .codec import state_from_proto, state_to_proto
from .enrich import Position, State, apply
from .metrics import ProcessorMetrics
from .settings import ProcessorSettings

log = logging.getLogger(__name__)

# partitions -> {partition: {instrument key: latest changelog value}}
Restore = Callable[[list[int]], dict[int, dict[bytes, bytes]]]


class ProducerFenced(TapewireError):
    """The transactional producer hit a fatal error (e.g. a newer instance fenced it): exit."""


class Processor:
    """Owns the in-memory states of the instruments on the partitions assigned to it."""

    def __init__(
        self,
        settings: ProcessorSettings,
        consumer: Consumer,
        producer: Producer,
        restore: Restore,
        metrics: ProcessorMetrics,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._restore = restore
        self._metrics = metrics
        self._clock = clock
        self._states: dict[str, State] = {}
        self._unrestored: set[int] = set()

    # -- rebalance callbacks (run inside poll, between batches: no transaction is open) ----------

    def on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Restored lazily before the next batch, inside the retried part of the loop.
        self._unrestored.update(tp.partition for tp in partitions)
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in partitions)})

    def on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self._unrestored -= gone
        self._states = {name: s for name, s in self._states.items() if s.source.partition not in gone}
        log.info("partitions revoked", extra={"partitions": sorted(gone)})

    # -- the batch ---------------------------------------------------------------------------

    def handle(self, batch: list[Message]) -> None:
        self._restore_assigned()
        now_ns = self._clock()
        pending: dict[str, State] = {}
        changed: list[State] = []
        dead: list[tuple[Message, Refused]] = []
        for message in batch:
            where = record_position(message)
            if where is None:
                log.warning("consumer error", extra={"error": str(message.error())})
                continue
            try:
                tick = decode_raw_tick(message.value(), now_ns, self._settings.max_record_bytes)
            except Refused as reason:
                dead.append((message, reason))
                continue
            previous = pending.get(tick.instrument) or self._states.get(tick.instrument)
            position = Position(where[1], where[2])
            if _already_applied(previous, position):
                self._metrics.ticks.labels("duplicate").inc()
                continue
            state = apply(previous, tick, position)
            pending[tick.instrument] = state
            changed.append(state)
        self._commit(batch, changed, pending, dead)
        self._states.update(pending)
        self._count(changed, dead)

    def _commit(
        self,
        batch: list[Message],
        changed: list[State],
        latest: dict[str, State],
        dead: list[tuple[Message, Refused]],
    ) -> None:
        """Publish the batch's outputs and offsets in one transaction, or raise after aborting it."""
        topics = self._settings.topics
        processed_ns = self._clock()
        try:
            self._producer.begin_transaction()
            for state in changed:
                value = state_to_proto(state, processed_ns).SerializeToString()
                self._produce(topics.processed, state.source.partition, state.instrument.encode(), value)
            for state in latest.values():
                value = state_to_proto(state, processed_ns).SerializeToString()
                self._produce(
                    topics.processor_state, state.source.partition, state.instrument.encode(), value
                )
            for message, reason in dead:
                self._dead_letter(message, reason)
            self._producer.send_offsets_to_transaction(
                next_offsets(batch), self._consumer.consumer_group_metadata(), self._settings.flush_timeout_s
            )
            self._producer.commit_transaction(self._settings.flush_timeout_s)
        except KafkaException as exc:
            self._abort(exc)
        self._metrics.transactions.labels("committed").inc()
        for state in changed:
            if state.ingest_ns:
                self._metrics.ingest_to_processed.observe(max(0, processed_ns - state.ingest_ns) / 1e9)

    def _abort(self, exc: KafkaException) -> None:
        error = exc.args[0]
        if error.fatal():
            raise ProducerFenced(f"transactional producer failed fatally: {error.str()}") from exc
        self._metrics.transactions.labels("aborted").inc()
        try:
            self._producer.abort_transaction(self._settings.flush_timeout_s)
        except KafkaException as abort_exc:
            if abort_exc.args[0].fatal():
                raise ProducerFenced(f"could not abort transaction: {abort_exc}") from abort_exc
            raise KafkaFailure(f"abort failed, will retry: {abort_exc}", retriable=True) from abort_exc
        raise KafkaFailure(f"transaction aborted: {error.str()}", error.code(), retriable=True) from exc

    def _produce(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, Any]] | None = None,
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, partition=partition, headers=headers)
                return
            except BufferError:
                self._producer.poll(0.05)  # librdkafka's queue is full: let deliveries drain

    def _dead_letter(self, message: Message, dead: Refused) -> None:
        headers: list[tuple[str, Any]] = list(
            dead_letters.headers(
                dead,
                message.topic() or "",
                message.partition() or 0,
                message.offset() or 0,
                "processor",
                self._clock(),
            )
        )
        partition = (message.partition() or 0) % self._settings.topics.partitions
        self._produce(self._settings.topics.raw_dlq, partition, message.key(), message.value(), headers)
        log.warning(
            "record dead-lettered",
            extra={
                "code": dead.code,
                "reason": str(dead),
                "partition": message.partition(),
                "offset": message.offset(),
            },
        )

    def _count(self, changed: list[State], dead: list[tuple[Message, Refused]]) -> None:
        self._metrics.ticks.labels("applied").inc(len(changed))
        if dead:
            self._metrics.ticks.labels("dead_lettered").inc(len(dead))
            for _message, reason in dead:
                self._metrics.dead_lettered.labels(reason.code).inc()

    def _restore_assigned(self) -> None:
        if not self._unrestored:
            return
        partitions = sorted(self._unrestored)
        started = time.monotonic()
        restored = 0
        for values in self._restore(partitions).values():
            for value in values.values():
                state = state_from_proto(pb.InstrumentState.FromString(value))
                self._states[state.instrument] = state
                restored += 1
        self._unrestored.clear()
        self._metrics.states_restored.inc(restored)
        log.info(
            "states restored",
            extra={
                "partitions": partitions,
                "instruments": restored,
                "seconds": round(time.monotonic() - started, 3),
            },
        )


def _already_applied(state: State | None, position: Position) -> bool:
    """True when the state already reflects the tick at `position`.

    Transactions make this impossible within one consumer group; it guards against a group
    reset or a new group id replaying ticks the changelog already accounts for.
    """
    return (
        state is not None
        and state.source.partition == position.partition
        and state.source.offset >= position.offset
    )


def run(
    settings: ProcessorSettings,
    consumer: Consumer,
    producer: Producer,
    restore: Restore,
    metrics: ProcessorMetrics,
    stop: threading.Event,
) -> None:
    """Consume until `stop` is set, then leave the group cleanly. `producer` is transactional."""
    producer.init_transactions(settings.flush_timeout_s)
    processor = Processor(settings, consumer, producer, restore, metrics)
    consumer.subscribe(
        [settings.topics.raw],
        on_assign=processor.on_assign,
        on_revoke=processor.on_revoke,
        on_lost=processor.on_revoke,
    )
    try:
        run_batches(consumer, processor.handle, stop, settings.loop, metrics.loop)
    finally:
        consumer.close()  # leaves the group at once, so the partitions move without waiting a session timeout
