"""The history writer: processed states and the instrument master into PostgreSQL, as a sink of
their topics.

It consumes `tt_processed_data` (read_committed: only what the processor committed) in a
consumer group of its own and upserts each instrument's latest state and the bars those states
carry. Every upsert is guarded by version, so at-least-once delivery is enough: a replayed
batch changes nothing. Because it is a sink rather than part of the processor's transaction,
PostgreSQL being down delays history (the writer rewinds and backs off, holding no more than a
batch) but never live prices; and because it is a process of its own, its decoding and
PostgreSQL work never take the processor's interpreter lock.

The instrument master (compacted `tt_instruments`, one partition) is consumed in the same group:
its entries are upserted into `instruments`, its tombstones delete, in offset order, so the
table is what the topic says once the writer has caught up.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, Message
from google.protobuf.message import DecodeError

from tapewire.consume_loop import LoopMetrics, LoopSettings, run_batches
from tapewire.reference.instrument import Instrument
from tapewire.reference.master import read_record
from tapewire.settings import TopicSettings
from tapewire.v1 import market_pb2 as pb

from .store import HistoryStore, VersionedBar

log = logging.getLogger(__name__)


def latest_rows(
    batch: list[Message],
) -> tuple[list[pb.InstrumentState], list[VersionedBar], list[VersionedBar]]:
    """The newest state per instrument, and the newest value of every bar, in a batch."""
    states: dict[str, pb.InstrumentState] = {}
    # The state that last changed each bar: the rows are built from these only, so a bar that
    # changed 50 times in a batch costs one conversion, not 50 (it was a third of the CPU).
    bars_1s: dict[tuple[str, int], pb.InstrumentState] = {}
    bars_1m: dict[tuple[str, int], pb.InstrumentState] = {}
    for message in batch:
        value = message.value()
        if message.error() is not None or value is None:
            continue
        try:
            state = pb.InstrumentState.FromString(value)
        except DecodeError:
            log.error(
                "undecodable processed state",
                extra={"partition": message.partition(), "offset": message.offset()},
            )
            continue
        if state.instrument in states and states[state.instrument].version >= state.version:
            continue
        states[state.instrument] = state
        if state.bar_1s.start_time_ns:
            bars_1s[(state.instrument, state.bar_1s.start_time_ns)] = state
        if state.bar_1m.start_time_ns:
            bars_1m[(state.instrument, state.bar_1m.start_time_ns)] = state
    return (
        list(states.values()),
        [versioned_bar(state, state.bar_1s) for state in bars_1s.values()],
        [versioned_bar(state, state.bar_1m) for state in bars_1m.values()],
    )


def versioned_bar(state: pb.InstrumentState, bar: pb.Bar) -> VersionedBar:
    """One of `state`'s bars as stored: stamped with the state's version and session VWAP."""
    return VersionedBar(state.instrument, bar, state.version, state.vwap)


def master_rows(batch: list[Message]) -> tuple[list[Instrument], list[str]]:
    """What a batch of the master topic leaves: the entries to upsert and the symbols to delete
    (the last record of each symbol decides)."""
    latest: dict[str, Instrument | None] = {}
    for message in batch:
        if message.error() is not None:
            continue
        record = read_record(message.key(), message.value())
        if record is not None:
            symbol, entry = record
            latest[symbol] = entry
    entries = [entry for entry in latest.values() if entry is not None]
    return entries, [symbol for symbol, entry in latest.items() if entry is None]


class HistoryWriter:
    def __init__(self, store: HistoryStore, master_topic: str) -> None:
        self._store = store
        self._master_topic = master_topic

    def handle(self, batch: list[Message]) -> None:
        master = [message for message in batch if message.topic() == self._master_topic]
        if master:
            entries, removed = master_rows(master)
            self._store.write_instruments(entries, removed)
            batch = [message for message in batch if message.topic() != self._master_topic]
        states, bars_1s, bars_1m = latest_rows(batch)
        if states:
            self._store.write(states, bars_1s, bars_1m)


def run_history(
    consumer: Consumer,
    topics: TopicSettings,
    store: HistoryStore,
    loop: LoopSettings,
    metrics: LoopMetrics,
    stop: threading.Event,
) -> None:
    """Write history until `stop` is set."""
    consumer.subscribe([topics.processed, topics.instruments])
    try:
        run_batches(consumer, HistoryWriter(store, topics.instruments).handle, stop, loop, metrics)
    finally:
        consumer.close()
        store.close()
