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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from tapewire import dead_letters, tracing
from tapewire.consume_loop import TRANSIENT_ERRORS, first_offsets, rewind_to, run_batches
from tapewire.dead_letters import Refused, decode_raw_tick, processing_failed
from tapewire.errors import KafkaFailure, TapewireError, Wedged
from tapewire.kafka import record_position, record_time_ns
from tapewire.reference.calendar import SessionClock
from tapewire.ticks import RawTick, Trade
from tapewire.tracing import Tracer
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
from .calendars import Calendars
from .codec import StateEncoder, state_from_proto
from .enrich import Position, State, apply
from .metrics import ProcessorMetrics
from .settings import ProcessorSettings
from .transaction import Encoded, Pending

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
ApplyTick = Callable[[State | None, RawTick, Position, SessionClock], State]


class ProducerFenced(TapewireError):
    """The transactional producer cannot go on (a newer instance fenced it, it failed fatally,
    or a commit's outcome stayed unknown): exit, and the restart's init_transactions settles
    whatever it left open."""


class TransactionStuck(Wedged):
    """A transaction call has not returned long after its timeout: the process ends at once, as
    after a kill -9, which the fault suite proves safe (the broker aborts the open transaction at
    its timeout, and the partitions move on at the session timeout)."""


# A transaction call gets the rest of its transaction timeout, and at least this much.
MIN_CALL_TIMEOUT_S = 1.0
# How long past its own timeout a transaction call may take before it counts as stuck.
STUCK_GRACE_S = 10.0


class Processor:
    """Owns the in-memory states and alert books of the partitions assigned to it, and the open
    transaction (`Pending`) of what it has produced since the last commit."""

    def __init__(
        self,
        settings: ProcessorSettings,
        consumer: Consumer,
        producers: Sequence[Producer],
        restore: Restore,
        metrics: ProcessorMetrics,
        clock: Callable[[], int] = time.time_ns,
        apply_tick: ApplyTick = apply,
        tracer: Tracer = tracing.DISABLED,
        calendars: Calendars | None = None,
    ) -> None:
        if not producers:
            raise ValueError("a processor needs at least one transactional producer")
        self._settings = settings
        self._apply = apply_tick
        self._topics = settings.topics
        self._consumer = consumer
        # Transactions take turns over these (see `commit`); `_producer` is the current one.
        self._producers = tuple(producers)
        self._producer = self._producers[0]
        self._restore = restore
        self._metrics = metrics
        self._clock = clock
        self._tracer = tracer
        self._calendars = calendars if calendars is not None else Calendars()
        self._limits = Limits(settings.max_alerts_per_instrument, settings.max_alert_book_bytes)
        self._states: dict[str, State] = {}
        self._encoder = StateEncoder()
        self._books: dict[str, Book] = {}
        self._command_offsets: dict[int, int] = {}
        self._unrestored: set[int] = set()
        # (topic, partition) assigned to this member now, and whether any was taken away since
        # the last batch (see `_owned_records`).
        self._owned: set[tuple[str, int]] = set()
        self._revoked = False
        self._pending: Pending | None = None  # the open transaction, if any
        self._calls = TransactionCalls()

    def close(self) -> None:
        """Let go of the transaction calls' thread (one still stuck in librdkafka stays behind)."""
        self._calls.close()

    # -- rebalance callbacks (run inside poll, between batches) ------------------------------

    def on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Restored lazily before the next batch, inside the retried part of the loop.
        self._unrestored.update(tp.partition for tp in partitions)
        self._owned.update((tp.topic, tp.partition) for tp in partitions)
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
        # The group generation is still ours: commit what the open transaction holds, so that
        # the next owner starts exactly where it ends. If that fails it is aborted, and the next
        # owner redoes it from the last commit.
        try:
            self.commit()
        except TRANSIENT_ERRORS as exc:
            log.warning("commit on revoke failed; aborting", extra={"error": str(exc)})
            self._abandon_quietly()
        self._forget({tp.partition for tp in partitions})

    def on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The group has moved on without us: committing now would be fenced. Abort instead.
        self._abandon_quietly()
        self._forget({tp.partition for tp in partitions})

    def _forget(self, gone: set[int]) -> None:
        self._revoked = True
        self._owned = {(topic, partition) for topic, partition in self._owned if partition not in gone}
        self._unrestored -= gone
        self._encoder.forget(name for name, s in self._states.items() if s.source.partition in gone)
        self._states = {name: s for name, s in self._states.items() if s.source.partition not in gone}
        self._books = {name: b for name, b in self._books.items() if b.source.partition not in gone}
        self._command_offsets = {p: o for p, o in self._command_offsets.items() if p not in gone}
        self._metrics.active_alerts.set(self._active_alerts())
        log.info("partitions revoked", extra={"partitions": sorted(gone)})

    # -- the batch ---------------------------------------------------------------------------

    def handle(self, batch: list[Message]) -> None:
        """Apply a batch inside the open transaction and publish its new states at once; commit
        when the cadence says so. On a transient error everything since the last commit is
        aborted and the consumer rewound to it (then the error is raised for the loop to back off)."""
        changed: list[Encoded] = []
        batch = self._owned_records(batch)
        if not batch:
            return
        try:
            self._restore_assigned()
            self._calendars.refresh()
            pending = self._open()
            pending.include(batch)
            self._apply_batch(batch, pending, changed)
            self._publish(changed)
            self.commit_if_due()
        except TRANSIENT_ERRORS as exc:
            if self._tracer.enabled:  # the batch is retried, and its ticks traced again
                reason = f"{type(exc).__name__}: {exc}"
                tracing.all_failed((encoded.span for encoded in changed), reason, self._clock())
            self._roll_back(batch, exc)

    def _owned_records(self, batch: list[Message]) -> list[Message]:
        """The batch without the records of partitions revoked while it was being polled.

        A batch is one poll() and then one consume(): a rebalance served inside consume()
        revokes partitions after poll() has already returned one of their records (and
        librdkafka drops only those still queued). Such a record must not be applied: its
        instrument's state is forgotten, so it would restart at version 1, and the open
        transaction would commit its offset for a partition another member now owns."""
        if not self._revoked:
            return batch
        self._revoked = False
        owned = self._owned
        kept = [message for message in batch if (message.topic(), message.partition()) in owned]
        if len(kept) < len(batch):
            self._metrics.ticks.labels("revoked").inc(len(batch) - len(kept))
            log.info("records of revoked partitions left out", extra={"records": len(batch) - len(kept)})
        return kept

    def _apply_batch(self, batch: list[Message], pending: Pending, changed: list[Encoded]) -> None:
        """Apply `batch` inside `pending`, appending each new state to `changed`."""
        now_ns = self._clock()
        for message in batch:
            where = record_position(message)
            if where is None:
                log.warning("consumer error", extra={"error": str(message.error())})
                continue
            topic, partition, offset = where
            if topic == self._topics.commands:
                self._command(message, Position(partition, offset), pending)
            else:
                self._tick(message, Position(partition, offset), pending, changed, now_ns)

    def _publish(self, changed: list[Encoded]) -> None:
        """The live path: every new state to the processed topic now, inside the open transaction."""
        processed = self._topics.processed
        for encoded in changed:
            state = encoded.state
            headers = None if encoded.span is None else tracing.headers(encoded.span)
            self._produce(
                processed, state.source.partition, state.instrument.encode(), encoded.value, headers
            )
        self._producer.poll(0)  # serve delivery reports, so their queue never grows
        now_ns = self._clock()
        if self._tracer.enabled:
            tracing.all_ended((encoded.span for encoded in changed), now_ns)
        for encoded in changed:
            if encoded.state.ingest_ns:
                self._metrics.ingest_to_processed.observe(max(0, now_ns - encoded.state.ingest_ns) / 1e9)

    def _tick(
        self, message: Message, position: Position, pending: Pending, changed: list[Encoded], now_ns: int
    ) -> None:
        try:
            tick = decode_raw_tick(
                message.value(),
                record_time_ns(message) or now_ns,
                self._settings.max_record_bytes,
                key=message.key(),
            )
        except Refused as reason:
            self._dead_letter(message, reason, pending)
            return
        previous = pending.states.get(tick.instrument) or self._states.get(tick.instrument)
        if _already_applied(previous, position):
            self._metrics.ticks.labels("duplicate").inc()
            return
        try:
            state, encoded, alerted = self._enrich(previous, tick, position, pending, now_ns)
        except _POISON as exc:
            # A valid tick that the rules cannot apply is a bug, not a reason to stop the
            # partition: it is set aside like an invalid one, with the exception as the reason.
            # Nothing of it reached `pending`, so the states stay as they were.
            log.exception("applying a tick failed", extra={"offset": position.offset})
            self._dead_letter(message, processing_failed(exc), pending)
            return
        if self._tracer.enabled:
            encoded = self._traced(message, encoded, now_ns)
        pending.states[tick.instrument] = state
        pending.latest[tick.instrument] = encoded
        pending.applied += 1
        changed.append(encoded)
        if alerted is not None:
            pending.books[tick.instrument], triggered = alerted
            pending.events.extend(triggered)

    def _traced(self, message: Message, encoded: Encoded, batch_ns: int) -> Encoded:
        """For a sampled tick (its record carries a trace context): a span from the start of its
        batch to the moment its new state is produced. That, not the commit, is when it moves on:
        cache_updater reads the processed topic uncommitted (see its run.py)."""
        parent = tracing.from_headers(message.headers())
        if parent is None:
            return encoded
        state = encoded.state
        attributes = {"instrument": state.instrument, "version": state.version, "offset": state.source.offset}
        return Encoded(
            state, encoded.value, self._tracer.start("processor apply", batch_ns, parent, attributes)
        )

    def _enrich(
        self, previous: State | None, tick: RawTick, position: Position, pending: Pending, processed_ns: int
    ) -> tuple[State, Encoded, tuple[Book, Sequence[Event]] | None]:
        """The new state, its wire form and, when the tick triggers alerts, the book and events."""
        state = self._apply(previous, tick, position, self._calendars.clock(tick.instrument))
        encoded = Encoded(state, self._encoder.encode(state, processed_ns))
        if not isinstance(tick, Trade):
            return state, encoded, None
        book = self._book(tick.instrument, pending)
        if book is None:
            return state, encoded, None
        book, triggered = alerts.on_trade(book, tick.price, state)
        return state, encoded, ((book, triggered) if triggered else None)

    def _command(self, message: Message, position: Position, pending: Pending) -> None:
        partition = position.partition
        if position.offset <= pending.command_offsets.get(
            partition, self._command_offsets.get(partition, -1)
        ):
            pending.command_outcomes["duplicate"] += 1
            return
        pending.command_offsets[partition] = position.offset
        try:
            command = decode_command(message.value(), self._settings.max_record_bytes)
        except MalformedCommand as exc:
            pending.command_outcomes["malformed"] += 1
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
        state = pending.states.get(command.instrument) or self._states.get(command.instrument)
        book = self._book(command.instrument, pending)
        outcome = alerts.apply_command(
            book,
            command,
            _text(message.key()),
            position,
            self._limits,
            ticks_partition=state.source.partition if state is not None else None,
        )
        if outcome.book is not book and outcome.book is not None:
            pending.books[command.instrument] = outcome.book
        pending.events.extend(outcome.events)
        pending.command_outcomes[outcome.label] += 1

    def _book(self, instrument: str, pending: Pending) -> Book | None:
        # Not `or`: an emptied book is falsy, and it must hide the older one.
        return pending.books[instrument] if instrument in pending.books else self._books.get(instrument)

    def _active_alerts(self) -> int:
        return sum(len(book) for book in self._books.values())

    # -- the transaction ---------------------------------------------------------------------

    def _open(self) -> Pending:
        if self._pending is None:
            self._producer.begin_transaction()
            self._pending = Pending(opened_at=time.monotonic())
        return self._pending

    def commit_if_due(self) -> None:
        """Commit the open transaction when it is old or large enough (the loop calls this when
        idle too, so a quiet partition's last records are committed on time)."""
        pending, settings = self._pending, self._settings
        if pending is not None and pending.due(
            time.monotonic(), settings.commit_interval_ms / 1000, settings.commit_max_records
        ):
            try:
                self.commit()
            except TRANSIENT_ERRORS as exc:
                self._roll_back([], exc)

    def commit(self) -> None:
        """Commit the open transaction (if any): the changelogs, alert events, dead letters and
        offsets join the states already produced; then merge it into the committed state."""
        pending = self._pending
        if pending is None:
            return
        topics = self._topics
        # The changelog holds the latest state of each instrument: the very bytes published.
        for encoded in pending.latest.values():
            state = encoded.state
            self._produce(
                topics.processor_state, state.source.partition, state.instrument.encode(), encoded.value
            )
        self._produce_alerts(pending, self._clock())
        offsets = pending.next_offsets()
        producer, patience_s = self._producer, self._settings.transaction_timeout_ms / 1000
        if offsets:
            metadata = self._consumer.consumer_group_metadata()
            try:
                self._calls.repeating(
                    lambda t: producer.send_offsets_to_transaction(offsets, metadata, t), patience_s
                )
            except KafkaException as exc:
                raise _failure(exc) from exc  # nothing committed yet: abort and retry (unless fatal)
        try:
            self._calls.repeating(producer.commit_transaction, patience_s)
        except KafkaException as exc:
            failure = _failure(exc, committing=True)
            if isinstance(failure, ProducerFenced):
                self._pending = None  # nothing is left to end: the restart's init_transactions settles it
            raise failure from exc
        self._pending = None
        self._take_turns()
        self._merge(pending)

    def _take_turns(self) -> None:
        """The next transaction goes to the next producer. The broker writes a commit's markers
        after it has answered; until they are written, a new transaction of the same
        transactional id cannot add partitions (CONCURRENT_TRANSACTIONS), and librdkafka retries
        that every 20 ms, holding back the first states of every transaction. Another id is
        not held back. Order is kept: the committed producer has flushed every record, so all
        of the next transaction's records follow them in each partition."""
        index = self._producers.index(self._producer)
        self._producer = self._producers[(index + 1) % len(self._producers)]

    def _merge(self, pending: Pending) -> None:
        self._states.update(pending.states)
        for instrument, book in pending.books.items():
            if len(book):
                self._books[instrument] = book
            else:
                self._books.pop(instrument, None)
        self._command_offsets.update(pending.command_offsets)
        if pending.books:
            self._metrics.active_alerts.set(self._active_alerts())
        self._metrics.transactions.labels("committed").inc()
        self._count(pending)

    def _roll_back(self, batch: list[Message], exc: Exception) -> None:
        """Abort everything since the last commit, rewind the consumer to its first records and
        raise, for the loop to retry after a backoff. The in-memory states are as they were at
        the last commit, so the retry computes exactly the same outputs."""
        # With no transaction open (the failure came before the first record of one, e.g. in
        # the restore after an assignment) the batch alone says where to go back to.
        positions = self._pending.rewind_to(batch) if self._pending is not None else first_offsets(batch)
        try:
            self._abandon()
        finally:
            rewind_to(self._consumer, positions)
        if isinstance(exc, KafkaFailure):
            raise exc
        raise KafkaFailure(f"transaction aborted: {exc}", retriable=True) from exc

    def _abandon_quietly(self) -> None:
        """Abort inside a rebalance callback: a failure is logged, not raised through poll()
        (the broker aborts a transaction left open at its timeout)."""
        try:
            self._abandon()
        except KafkaFailure as exc:
            log.warning("abort failed", extra={"error": str(exc)})

    def _abandon(self) -> None:
        """Abort the open transaction (if any) and drop what it held."""
        if self._pending is None:
            return
        self._pending = None
        self._metrics.transactions.labels("aborted").inc()
        try:
            self._calls.repeating(
                self._producer.abort_transaction, self._settings.transaction_timeout_ms / 1000
            )
        except KafkaException as abort_exc:
            # Fatal, or still failing after a transaction timeout: no new transaction can begin
            # on this producer. A restart's init_transactions settles whatever it left open.
            raise ProducerFenced(f"could not abort transaction: {abort_exc}") from abort_exc

    def _produce_alerts(self, pending: Pending, processed_ns: int) -> None:
        """Alert events (partitioned by user id), changed books (an empty one as a tombstone) and
        the commands position of every partition that had commands."""
        topics = self._topics
        for event in pending.events:
            value = event_to_proto(event, processed_ns).SerializeToString()
            self._produce(topics.alert_events, BY_KEY, event.alert.user_id.encode(), value)
        for instrument, book in pending.books.items():
            stored = book_to_proto(book).SerializeToString() if len(book) else None
            self._produce(topics.processor_alerts, book.source.partition, instrument.encode(), stored)
        for partition, offset in pending.command_offsets.items():
            record = position_record(partition, offset)
            self._produce(topics.processor_alerts, partition, COMMANDS_POSITION_KEY, record)

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
            except KafkaException as exc:
                raise _failure(exc) from exc

    def _dead_letter(self, message: Message, dead: Refused, pending: Pending) -> None:
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
        pending.dead.append((message, dead))
        log.warning(
            "record dead-lettered",
            extra={
                "code": dead.code,
                "reason": str(dead),
                "partition": message.partition(),
                "offset": message.offset(),
            },
        )

    def _count(self, pending: Pending) -> None:
        self._metrics.ticks.labels("applied").inc(pending.applied)
        if pending.dead:
            self._metrics.ticks.labels("dead_lettered").inc(len(pending.dead))
            for _message, reason in pending.dead:
                self._metrics.dead_lettered.labels(reason.code).inc()
        for label, count in pending.command_outcomes.items():
            self._metrics.alert_commands.labels(label).inc(count)
        triggered = sum(1 for event in pending.events if event.status == Status.TRIGGERED)
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


class TransactionCalls:
    """Runs the transaction calls (send offsets, commit, abort: `call(timeout_s)`) on one
    long-lived thread of their own, so that a call can be given up on when it does not return.
    librdkafka's send_offsets_to_transaction can block far past its timeout while the group
    coordinator moves (confluentinc/librdkafka#5456, #5511), and no call can be interrupted."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transaction-call")
        self._sleep = sleep

    def repeating(self, call: Callable[[float], None], patience_s: float) -> None:
        """Run a call that librdkafka lets its caller repeat: on a retriable error (a request
        timed out, the coordinator moved, a leader is being elected) the same call is made
        again, and it carries on where the last one left off. Doing anything else then is
        wrong: an abort would race the commit that librdkafka is still driving in the
        background, and if that commit lands, the retried batch counts twice.

        Errors that are fatal, that require an abort, or that persist for `patience_s` (the
        transaction timeout: by then the broker has settled the transaction) are raised."""
        deadline = time.monotonic() + patience_s
        delay_s = 0.05
        while True:
            try:
                self.bounded(call, max(deadline - time.monotonic(), MIN_CALL_TIMEOUT_S))
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not _repeatable(error) or time.monotonic() + delay_s > deadline:
                    raise
                log.warning("transaction call failed, repeating it", extra={"error": error.str()})
                self._sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)

    def bounded(self, call: Callable[[float], None], timeout_s: float) -> None:
        """`call(timeout_s)`, waited for STUCK_GRACE_S longer than its own timeout; a call still
        running then raises TransactionStuck (and keeps the thread: the process is to end)."""
        grace_s = timeout_s + STUCK_GRACE_S
        try:
            self._worker.submit(call, timeout_s).result(grace_s)
        except TimeoutError:
            raise TransactionStuck(f"a transaction call has not returned in {grace_s:.0f}s") from None

    def close(self) -> None:
        self._worker.shutdown(wait=False)


def _repeatable(error: KafkaError) -> bool:
    """The same transaction call may be made again (see `TransactionCalls.repeating`)."""
    return error.retriable() and not (error.fatal() or error.txn_requires_abort())


def _failure(exc: KafkaException, committing: bool = False) -> TapewireError:
    """A Kafka error in a transaction: fatal ones end the process, the rest are retried. A
    commit still failing with a repeatable error after a transaction timeout of repeats ends
    it too: whether it committed is unknown, so neither an abort (it would conflict with the
    commit librdkafka still drives) nor a retry of the batch is safe."""
    error = exc.args[0]
    if error.fatal():
        return ProducerFenced(f"transactional producer failed fatally: {error.str()}")
    if committing and _repeatable(error):
        return ProducerFenced(f"transaction outcome unknown: {error.str()}")
    return KafkaFailure(f"transaction failed: {error.str()}", error.code(), retriable=True)


def _text(key: bytes | None) -> str:
    """A record key as text; one that is not UTF-8 matches no instrument."""
    try:
        return key.decode() if key is not None else ""
    except UnicodeDecodeError:
        return ""


def run(
    settings: ProcessorSettings,
    consumer: Consumer,
    producers: Sequence[Producer],
    restore: Restore,
    metrics: ProcessorMetrics,
    stop: threading.Event,
    apply_tick: ApplyTick = apply,
    tracer: Tracer = tracing.DISABLED,
    calendars: Calendars | None = None,
) -> None:
    """Consume until `stop` is set, then leave the group cleanly. `producers` are transactional
    (with ids of their own; transactions take turns over them) and `consumer` must use
    CO_PARTITIONING_ASSIGNOR. `calendars` are the instruments' trading calendars (default: one
    UTC day per session for every instrument)."""
    for producer in producers:
        producer.init_transactions(settings.flush_timeout_s)
    processor = Processor(
        settings,
        consumer,
        producers,
        restore,
        metrics,
        apply_tick=apply_tick,
        tracer=tracer,
        calendars=calendars,
    )
    consumer.subscribe(
        [settings.topics.raw, settings.topics.commands],
        on_assign=processor.on_assign,
        on_revoke=processor.on_revoke,
        on_lost=processor.on_lost,
    )
    leave = True
    try:
        run_batches(consumer, processor.handle, stop, settings.loop, metrics.loop, processor.commit_if_due)
        processor.commit()  # what is open at a clean stop is committed, not left to time out
    except Wedged:
        leave = False  # leaving would ask the stuck producer to end its transaction again
        raise
    finally:
        if leave:  # leave the group at once, so the partitions move without waiting a session timeout
            consumer.close()
        processor.close()
