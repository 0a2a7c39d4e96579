"""The processor's loop: raw ticks in, enriched states out to Kafka and PostgreSQL.

Per batch: decode and validate each record (failures go to the DLQ), apply it to its
instrument's state, publish the new states, wait for the broker's acknowledgements, upsert
PostgreSQL, and only then commit the consumer offsets (tapewire.consume_loop). A crash at any
point replays the batch; ticks already reflected in PostgreSQL are recognised by their source
offset and skipped, so aggregates never count a tick twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from google.protobuf.message import DecodeError

from tapewire.consume_loop import run_batches
from tapewire.errors import InvalidTick
from tapewire.kafka import DeliveryTracker, produce, record_position
from tapewire.ticks import RawTick, Trade, from_proto
from tapewire.v1 import market_pb2 as pb

from .codec import state_from_proto, state_to_proto
from .enrich import Position, State, apply
from .metrics import ProcessorMetrics
from .settings import ProcessorSettings
from .store import StateStore, VersionedBar

log = logging.getLogger(__name__)


class DeadLetter(Exception):
    """A raw record that cannot be processed; `code` is a bounded label for metrics."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Processor:
    """Owns the in-memory states of the instruments on the partitions assigned to it."""

    def __init__(
        self,
        settings: ProcessorSettings,
        producer: Producer,
        store: StateStore,
        metrics: ProcessorMetrics,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._states: dict[str, State] = {}
        self._unloaded: set[int] = set()
        self._delivery = DeliveryTracker()

    # -- rebalance callbacks (run inside poll, between batches) --------------------------------

    def on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # States are loaded lazily before the next batch, inside the retried part of the loop,
        # so an unreachable PostgreSQL delays processing instead of failing a callback.
        self._unloaded.update(tp.partition for tp in partitions)
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in partitions)})

    def on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self._unloaded -= gone
        self._states = {name: s for name, s in self._states.items() if s.source.partition not in gone}
        log.info("partitions revoked", extra={"partitions": sorted(gone)})

    # -- the batch -----------------------------------------------------------------------------

    def handle(self, batch: list[Message]) -> None:
        self._load_assigned_states()
        now_ns = self._clock()
        pending: dict[str, State] = {}
        changed: list[State] = []
        traded: list[State] = []
        for message in batch:
            where = record_position(message)
            if where is None:
                log.warning("consumer error", extra={"error": str(message.error())})
                continue
            try:
                tick = self._decode(message, now_ns)
            except DeadLetter as dead:
                self._dead_letter(message, dead)
                continue
            previous = pending.get(tick.instrument) or self._states.get(tick.instrument)
            position = Position(where[1], where[2])
            if _already_applied(previous, position):
                self._metrics.ticks.labels("duplicate").inc()
                continue
            state = apply(previous, tick, position)
            pending[tick.instrument] = state
            changed.append(state)
            if isinstance(tick, Trade):
                traded.append(state)
        self._publish_and_store(changed, traded)
        self._states.update(pending)

    def _publish_and_store(self, changed: list[State], traded: list[State]) -> None:
        processed_ns = self._clock()
        topic = self._settings.topics.processed
        finals: dict[str, pb.InstrumentState] = {}
        for state in changed:
            message = state_to_proto(state, processed_ns)
            produce(
                self._producer,
                topic,
                state.instrument.encode(),
                message.SerializeToString(),
                self._delivery.on_delivery,
            )
            finals[state.instrument] = message
            if state.ingest_ns:
                self._metrics.ingest_to_processed.observe(max(0, processed_ns - state.ingest_ns) / 1e9)
        self._delivery.wait(self._producer, self._settings.flush_timeout_s)
        self._store.write(list(finals.values()), *_touched_bars(traded))
        self._metrics.ticks.labels("applied").inc(len(changed))

    def _decode(self, message: Message, now_ns: int) -> RawTick:
        value: bytes | None = message.value()
        if value is None:
            raise DeadLetter("empty", "record has no value")
        if len(value) > self._settings.max_record_bytes:
            raise DeadLetter(
                "too_large", f"record of {len(value)} bytes exceeds {self._settings.max_record_bytes}"
            )
        try:
            wire = pb.Tick.FromString(value)
        except DecodeError as exc:
            raise DeadLetter("undecodable", f"not a tapewire.v1.Tick: {exc}") from exc
        try:
            return from_proto(wire, now_ns)
        except InvalidTick as exc:
            raise DeadLetter("invalid", str(exc)) from exc

    def _dead_letter(self, message: Message, dead: DeadLetter) -> None:
        headers: list[tuple[str, Any]] = [
            ("tapewire-error", str(dead)),
            ("tapewire-error-code", dead.code),
            ("tapewire-source-topic", message.topic()),
            ("tapewire-source-partition", str(message.partition())),
            ("tapewire-source-offset", str(message.offset())),
            ("tapewire-service", "processor"),
            ("tapewire-failed-at-ns", str(self._clock())),
        ]
        produce(
            self._producer,
            self._settings.topics.raw_dlq,
            message.key(),
            message.value(),
            self._delivery.on_delivery,
            headers=headers,
        )
        self._metrics.ticks.labels("dead_lettered").inc()
        self._metrics.dead_lettered.labels(dead.code).inc()
        log.warning(
            "record dead-lettered",
            extra={
                "code": dead.code,
                "reason": str(dead),
                "partition": message.partition(),
                "offset": message.offset(),
            },
        )

    def _load_assigned_states(self) -> None:
        if not self._unloaded:
            return
        partitions = sorted(self._unloaded)
        loaded = [state_from_proto(m) for m in self._store.load_states(partitions)]
        for state in loaded:
            current = self._states.get(state.instrument)
            if current is None or current.version < state.version:
                self._states[state.instrument] = state
        self._unloaded.clear()
        self._metrics.instruments.inc(len(loaded))
        log.info("states loaded", extra={"partitions": partitions, "instruments": len(loaded)})


def _already_applied(state: State | None, position: Position) -> bool:
    """True when the state already reflects the tick at `position` (a replay after a crash)."""
    return (
        state is not None
        and state.source.partition == position.partition
        and state.source.offset >= position.offset
    )


def _touched_bars(traded: list[State]) -> tuple[list[VersionedBar], list[VersionedBar]]:
    """The final value of every bar the batch's trades changed, with the version that set it."""
    bars_1s: dict[tuple[str, int], VersionedBar] = {}
    bars_1m: dict[tuple[str, int], VersionedBar] = {}
    for state in traded:
        if state.bar_1s is None or state.bar_1m is None:
            continue
        bars_1s[(state.instrument, state.bar_1s.start_ns)] = VersionedBar(
            state.instrument, state.bar_1s, state.version
        )
        bars_1m[(state.instrument, state.bar_1m.start_ns)] = VersionedBar(
            state.instrument, state.bar_1m, state.version
        )
    return list(bars_1s.values()), list(bars_1m.values())


def run(
    settings: ProcessorSettings,
    consumer: Consumer,
    producer: Producer,
    store: StateStore,
    metrics: ProcessorMetrics,
    stop: threading.Event,
) -> None:
    """Consume until `stop` is set, then leave the group cleanly."""
    processor = Processor(settings, producer, store, metrics)
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
        producer.flush(settings.flush_timeout_s)
        store.close()
