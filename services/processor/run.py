"""The processor's loop: raw ticks and alert commands in, enriched states and alert events out,
exactly once, in Kafka transactions.

Per batch, inside one Kafka transaction: every new state to `tt_processed_data`, the latest
state of each instrument to the compacted changelog `tt_processor_state`, every alert event to
`tt_alert_events` (key: user id), every changed alert book to the compacted changelog
`tt_processor_alerts`, undecodable or invalid ticks to the DLQ, and the consumer offsets of the
batch, for both input topics. Either all of it becomes visible to read_committed readers or
none of it does. A failed transaction is aborted, the consumer is rewound to the batch's first
offsets and the in-memory states and books are left as they were, so the retry computes
exactly the same outputs.

Output for raw partition p goes to partition p of the processed topic and of both changelogs.
A processor that is assigned p therefore restores p's instruments from changelog partition p,
which holds exactly the states and books that the committed offsets of p account for.

Alerts (rules in alerts.py) live with their instrument's ticks: dashboard_api keys commands by
instrument, so commands partition p carries the commands of raw partition p's instruments, and
the consumer uses the `range` assignor, which gives one member the same partition numbers of
equally partitioned topics (cooperative-sticky balances each topic on its own and would split
them). Records are applied in the order of the batch, which keeps each partition's offset
order; between the two topics there is no order to keep. Range is an eager assignor: every
rebalance revokes all partitions and the states and books are restored from the changelogs.

Skipping what is already applied matters only when a new consumer group (or a reset of this
one) re-reads the inputs: within one group the transactions already make it impossible. Ticks
are guarded by their instrument state's source position (`_already_applied`); an alert is
evaluated only on a tick its state applies, so triggers need no guard of their own. Commands
are guarded per partition by the `#commands` position record in the alerts changelog (see
alert_codec.py), written in the same transaction as the books it accounts for.

Poison isolation: a record is dead-lettered (in the same transaction) when it is not a valid
`Tick` (tapewire.dead_letters: undecodable, oversized, breaking a rule, or under a key that is
not its instrument) and also when applying a valid tick raises (`processing_failed`, the
exception as the reason): nothing of it reaches the states, and the partition moves on. Only a
transient error (Kafka, a store) fails the batch to be retried. Every check depends on the record
alone (its exchange time is bounded by the record's own timestamp, not the clock), so a batch
retried after an abort sets aside exactly the same records and computes exactly the same states.

A command that addresses no alert (undecodable, neither create nor cancel, no alert or user id)
is logged, counted (processor_alert_commands_total{outcome="malformed"}) and skipped: the raw
DLQ and `tools.dlq` speak ticks, and a command is a user's request of the moment, not market
data worth replaying later. A command that addresses an alert but breaks a rule is answered
with a REJECTED event, which reaches its user.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from tapewire import dead_letters
from tapewire.consume_loop import next_offsets, run_batches
from tapewire.dead_letters import Refused, decode_raw_tick, processing_failed
from tapewire.errors import KafkaFailure, TapewireError
from tapewire.kafka import record_position, record_time_ns
from tapewire.ticks import RawTick, Trade
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb

from . import alerts
from .alert_codec import (
    COMMANDS_POSITION_KEY,
    MalformedCommand,
    book_from_proto,
    book_to_proto,
    decode_command,
    event_to_proto,
    position_record,
)
from .alerts import Book, Event, Limits, Status
from .codec import state_from_proto, state_to_proto
from .enrich import Position, State, apply
from .metrics import ProcessorMetrics
from .settings import ProcessorSettings

log = logging.getLogger(__name__)

# (changelog topic, partitions) -> {partition: {key: latest changelog value}}
Restore = Callable[[str, list[int]], dict[int, dict[bytes, bytes]]]

# Gives one member the same partition numbers of the raw and commands topics (module docstring).
CO_PARTITIONING_ASSIGNOR = "range"
# librdkafka's "unassigned" partition: the producer's partitioner picks one from the key.
BY_KEY = -1
# What applying one valid tick may raise without the batch being at fault. MemoryError is left
# out: it says nothing about the tick, and the process had better stop.
_POISON = (ArithmeticError, ValueError, TypeError, LookupError, AttributeError, AssertionError, RuntimeError)
ApplyTick = Callable[[State | None, RawTick, Position], State]


class ProducerFenced(TapewireError):
    """The transactional producer hit a fatal error (e.g. a newer instance fenced it): exit."""


@dataclass(frozen=True, slots=True)
class _Encoded:
    """A new state and its wire form (`tapewire.v1.InstrumentState`), encoded once."""

    state: State
    value: bytes


@dataclass
class _Batch:
    """What one batch changes; merged into the processor only once its transaction committed."""

    states: dict[str, State] = field(default_factory=dict)  # the latest per instrument
    changed: list[_Encoded] = field(default_factory=list)  # every new state, in order
    encoded: dict[str, _Encoded] = field(default_factory=dict)  # the latest per instrument
    dead: list[tuple[Message, Refused]] = field(default_factory=list)
    books: dict[str, Book] = field(default_factory=dict)  # the latest of each changed book
    events: list[Event] = field(default_factory=list)
    command_offsets: dict[int, int] = field(default_factory=dict)  # partition -> last applied
    command_outcomes: Counter[str] = field(default_factory=Counter)


class Processor:
    """Owns the in-memory states and alert books of the partitions assigned to it."""

    def __init__(
        self,
        settings: ProcessorSettings,
        consumer: Consumer,
        producer: Producer,
        restore: Restore,
        metrics: ProcessorMetrics,
        clock: Callable[[], int] = time.time_ns,
        apply_tick: ApplyTick = apply,
    ) -> None:
        self._settings = settings
        self._apply = apply_tick
        self._topics = settings.topics
        self._consumer = consumer
        self._producer = producer
        self._restore = restore
        self._metrics = metrics
        self._clock = clock
        self._limits = Limits(settings.max_alerts_per_instrument, settings.max_alert_book_bytes)
        self._states: dict[str, State] = {}
        self._books: dict[str, Book] = {}
        self._command_offsets: dict[int, int] = {}
        self._unrestored: set[int] = set()

    # -- rebalance callbacks (run inside poll, between batches: no transaction is open) ----------

    def on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Restored lazily before the next batch, inside the retried part of the loop.
        self._unrestored.update(tp.partition for tp in partitions)
        raw = sorted(tp.partition for tp in partitions if tp.topic == self._topics.raw)
        commands = sorted(tp.partition for tp in partitions if tp.topic == self._topics.commands)
        log.info("partitions assigned", extra={"partitions": raw, "command_partitions": commands})
        if raw != commands:
            # Only a member without `range`, or topics of different sizes, can cause this:
            # the alerts of the unmatched partitions would never meet their instruments' trades.
            log.error(
                "raw and commands partitions are not co-partitioned",
                extra={"partitions": raw, "command_partitions": commands},
            )

    def on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self._unrestored -= gone
        self._states = {name: s for name, s in self._states.items() if s.source.partition not in gone}
        self._books = {name: b for name, b in self._books.items() if b.source.partition not in gone}
        self._command_offsets = {p: o for p, o in self._command_offsets.items() if p not in gone}
        self._metrics.active_alerts.set(self._active_alerts())
        log.info("partitions revoked", extra={"partitions": sorted(gone)})

    # -- the batch ---------------------------------------------------------------------------

    def handle(self, batch: list[Message]) -> None:
        self._restore_assigned()
        now_ns = self._clock()
        work = _Batch()
        for message in batch:
            where = record_position(message)
            if where is None:
                log.warning("consumer error", extra={"error": str(message.error())})
                continue
            topic, partition, offset = where
            if topic == self._topics.commands:
                self._command(message, Position(partition, offset), work)
            else:
                self._tick(message, Position(partition, offset), work, now_ns)
        self._commit(batch, work)
        self._states.update(work.states)
        self._merge_books(work)
        self._count(work)

    def _tick(self, message: Message, position: Position, work: _Batch, now_ns: int) -> None:
        try:
            tick = decode_raw_tick(
                message.value(),
                record_time_ns(message) or now_ns,
                self._settings.max_record_bytes,
                key=message.key(),
            )
        except Refused as reason:
            work.dead.append((message, reason))
            return
        previous = work.states.get(tick.instrument) or self._states.get(tick.instrument)
        if _already_applied(previous, position):
            self._metrics.ticks.labels("duplicate").inc()
            return
        try:
            state, encoded, alerted = self._enrich(previous, tick, position, work, now_ns)
        except _POISON as exc:
            # A valid tick that the rules cannot apply is a bug, not a reason to stop the
            # partition: it is set aside like an invalid one, with the exception as the reason.
            # Nothing of it reached `work`, so the states stay as they were.
            log.exception("applying a tick failed", extra={"offset": position.offset})
            work.dead.append((message, processing_failed(exc)))
            return
        work.states[tick.instrument] = state
        work.changed.append(encoded)
        work.encoded[tick.instrument] = encoded
        if alerted is not None:
            work.books[tick.instrument], triggered = alerted
            work.events.extend(triggered)

    def _enrich(
        self, previous: State | None, tick: RawTick, position: Position, work: _Batch, processed_ns: int
    ) -> tuple[State, _Encoded, tuple[Book, Sequence[Event]] | None]:
        """The new state, its wire form and, when the tick triggers alerts, the book and events."""
        state = self._apply(previous, tick, position)
        encoded = _Encoded(state, state_to_proto(state, processed_ns).SerializeToString())
        if not isinstance(tick, Trade):
            return state, encoded, None
        book = self._book(tick.instrument, work)
        if book is None:
            return state, encoded, None
        book, triggered = alerts.on_trade(book, tick.price, state)
        return state, encoded, ((book, triggered) if triggered else None)

    def _command(self, message: Message, position: Position, work: _Batch) -> None:
        partition = position.partition
        if position.offset <= work.command_offsets.get(partition, self._command_offsets.get(partition, -1)):
            work.command_outcomes["duplicate"] += 1
            return
        work.command_offsets[partition] = position.offset
        try:
            command = decode_command(message.value(), self._settings.max_record_bytes)
        except MalformedCommand as exc:
            work.command_outcomes["malformed"] += 1
            log.warning(
                "malformed alert command skipped",
                extra={
                    "code": exc.code,
                    "reason": str(exc),
                    "partition": partition,
                    "offset": position.offset,
                },
            )
            return
        state = work.states.get(command.instrument) or self._states.get(command.instrument)
        book = self._book(command.instrument, work)
        outcome = alerts.apply_command(
            book,
            command,
            _text(message.key()),
            position,
            self._limits,
            ticks_partition=state.source.partition if state is not None else None,
        )
        if outcome.book is not book and outcome.book is not None:
            work.books[command.instrument] = outcome.book
        work.events.extend(outcome.events)
        work.command_outcomes[outcome.label] += 1

    def _book(self, instrument: str, work: _Batch) -> Book | None:
        # Not `or`: an emptied book is falsy, and it must hide the older one.
        return work.books[instrument] if instrument in work.books else self._books.get(instrument)

    def _merge_books(self, work: _Batch) -> None:
        for instrument, book in work.books.items():
            if len(book):
                self._books[instrument] = book
            else:
                self._books.pop(instrument, None)
        self._command_offsets.update(work.command_offsets)
        if work.books:
            self._metrics.active_alerts.set(self._active_alerts())

    def _active_alerts(self) -> int:
        return sum(len(book) for book in self._books.values())

    def _commit(self, batch: list[Message], work: _Batch) -> None:
        """Publish the batch's outputs and offsets in one transaction, or raise after aborting it."""
        topics = self._topics
        processed_ns = self._clock()
        try:
            self._producer.begin_transaction()
            for encoded in work.changed:
                state = encoded.state
                self._produce(
                    topics.processed, state.source.partition, state.instrument.encode(), encoded.value
                )
            # The changelog holds the latest state of each instrument: the very bytes just published.
            for encoded in work.encoded.values():
                state = encoded.state
                self._produce(
                    topics.processor_state, state.source.partition, state.instrument.encode(), encoded.value
                )
            self._produce_alerts(work, processed_ns)
            for message, reason in work.dead:
                self._dead_letter(message, reason)
            self._producer.send_offsets_to_transaction(
                next_offsets(batch), self._consumer.consumer_group_metadata(), self._settings.flush_timeout_s
            )
            self._producer.commit_transaction(self._settings.flush_timeout_s)
        except KafkaException as exc:
            self._abort(exc)
        self._metrics.transactions.labels("committed").inc()
        for encoded in work.changed:
            if encoded.state.ingest_ns:
                self._metrics.ingest_to_processed.observe(
                    max(0, processed_ns - encoded.state.ingest_ns) / 1e9
                )

    def _produce_alerts(self, work: _Batch, processed_ns: int) -> None:
        """Alert events (partitioned by user id), changed books (an empty one as a tombstone) and
        the commands position of every partition that had commands."""
        topics = self._topics
        for event in work.events:
            value = event_to_proto(event, processed_ns).SerializeToString()
            self._produce(topics.alert_events, BY_KEY, event.alert.user_id.encode(), value)
        for instrument, book in work.books.items():
            stored = book_to_proto(book).SerializeToString() if len(book) else None
            self._produce(topics.processor_alerts, book.source.partition, instrument.encode(), stored)
        for partition, offset in work.command_offsets.items():
            record = position_record(partition, offset)
            self._produce(topics.processor_alerts, partition, COMMANDS_POSITION_KEY, record)

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

    def _count(self, work: _Batch) -> None:
        self._metrics.ticks.labels("applied").inc(len(work.changed))
        if work.dead:
            self._metrics.ticks.labels("dead_lettered").inc(len(work.dead))
            for _message, reason in work.dead:
                self._metrics.dead_lettered.labels(reason.code).inc()
        for label, count in work.command_outcomes.items():
            self._metrics.alert_commands.labels(label).inc(count)
        triggered = sum(1 for event in work.events if event.status == Status.TRIGGERED)
        if triggered:
            self._metrics.alerts_triggered.inc(triggered)

    def _restore_assigned(self) -> None:
        if not self._unrestored:
            return
        partitions = sorted(self._unrestored)
        started = time.monotonic()
        restored = 0
        for values in self._restore(self._topics.processor_state, partitions).values():
            for value in values.values():
                state = state_from_proto(pb.InstrumentState.FromString(value))
                self._states[state.instrument] = state
                restored += 1
        books = self._restore_books(partitions)
        self._unrestored.clear()
        self._metrics.states_restored.inc(restored)
        self._metrics.alert_books_restored.inc(books)
        self._metrics.active_alerts.set(self._active_alerts())
        log.info(
            "states restored",
            extra={
                "partitions": partitions,
                "instruments": restored,
                "alert_books": books,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def _restore_books(self, partitions: list[int]) -> int:
        """Load the alert books and commands positions of `partitions`; return how many books."""
        restored = 0
        for partition, values in self._restore(self._topics.processor_alerts, partitions).items():
            for key, value in values.items():
                message = apb.AlertBook.FromString(value)
                if key == COMMANDS_POSITION_KEY:
                    self._command_offsets[partition] = message.source.offset
                    continue
                book = book_from_proto(message)
                self._books[book.instrument] = book
                restored += 1
        return restored


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


def _text(key: bytes | None) -> str:
    """A record key as text; one that is not UTF-8 matches no instrument."""
    try:
        return key.decode() if key is not None else ""
    except UnicodeDecodeError:
        return ""


def run(
    settings: ProcessorSettings,
    consumer: Consumer,
    producer: Producer,
    restore: Restore,
    metrics: ProcessorMetrics,
    stop: threading.Event,
    apply_tick: ApplyTick = apply,
) -> None:
    """Consume until `stop` is set, then leave the group cleanly. `producer` is transactional and
    `consumer` must use CO_PARTITIONING_ASSIGNOR."""
    producer.init_transactions(settings.flush_timeout_s)
    processor = Processor(settings, consumer, producer, restore, metrics, apply_tick=apply_tick)
    consumer.subscribe(
        [settings.topics.raw, settings.topics.commands],
        on_assign=processor.on_assign,
        on_revoke=processor.on_revoke,
        on_lost=processor.on_revoke,
    )
    try:
        run_batches(consumer, processor.handle, stop, settings.loop, metrics.loop)
    finally:
        consumer.close()  # leaves the group at once, so the partitions move without waiting a session timeout
