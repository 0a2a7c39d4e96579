"""What an open Kafka transaction has changed, until it commits.

The processor keeps one transaction open across many poll batches and commits it on a cadence
(`PROCESSOR_COMMIT_INTERVAL_MS`, or sooner at `PROCESSOR_COMMIT_MAX_RECORDS`), so commits stop
gating the flow: new states are produced as each batch is handled, and only durability waits
for the commit. `Pending` holds everything the processor must either merge into its committed
in-memory state (the commit succeeded) or drop (it was aborted): the instruments' latest
states, the alert books and events, the commands positions, and the offsets the transaction
spans, so that an abort can rewind the consumer to the first record it contained. Pure
bookkeeping: no Kafka calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Message, TopicPartition
from opentelemetry.trace import Span

from tapewire.consume_loop import batch_bounds
from tapewire.dead_letters import Refused

from .alerts import Book, Event
from .enrich import State


@dataclass(frozen=True, slots=True)
class Encoded:
    """A new state and its wire form (`tapewire.v1.InstrumentState`), encoded once; `span` is
    its stage's span when its tick was sampled (tapewire.tracing), ended once it is produced."""

    state: State
    value: bytes
    span: Span | None = None


@dataclass
class Pending:
    """What the open transaction changed; `opened_at` is on the monotonic clock."""

    opened_at: float
    states: dict[str, State] = field(default_factory=dict)  # the latest per instrument
    latest: dict[str, Encoded] = field(default_factory=dict)  # ... and its wire form (changelog)
    books: dict[str, Book] = field(default_factory=dict)  # the latest of each changed book
    events: list[Event] = field(default_factory=list)
    dead: list[tuple[Message, Refused]] = field(default_factory=list)
    command_offsets: dict[int, int] = field(default_factory=dict)  # partition -> last applied
    command_outcomes: Counter[str] = field(default_factory=Counter)
    applied: int = 0
    records: int = 0
    _starts: dict[tuple[str, int], int] = field(default_factory=dict)
    _ends: dict[tuple[str, int], int] = field(default_factory=dict)

    def include(self, batch: list[Message]) -> None:
        """Account for a batch's records (their count and offsets) in this transaction."""
        self.records += len(batch)
        for where, (first, last) in batch_bounds(batch).items():
            self._starts[where] = min(first, self._starts.get(where, first))
            self._ends[where] = max(last, self._ends.get(where, last))

    def next_offsets(self) -> list[TopicPartition]:
        """What to commit with the transaction: the offset after each partition's last record."""
        return [TopicPartition(topic, partition, last + 1) for (topic, partition), last in self._ends.items()]

    def rewind_to(self, batch: Iterable[Message] = ()) -> list[TopicPartition]:
        """Where to seek after an abort: each partition's first record in the transaction or in
        `batch` (handled, or being handled, when it failed), whichever is earlier."""
        starts = dict(self._starts)
        for where, (first, _last) in batch_bounds(batch).items():
            starts[where] = min(first, starts.get(where, first))
        return [TopicPartition(topic, partition, first) for (topic, partition), first in starts.items()]

    def due(self, now: float, interval_s: float, max_records: int) -> bool:
        return self.records > 0 and (now - self.opened_at >= interval_s or self.records >= max_records)
