"""A load generator for the fault suite: sequence-numbered ticks at a fixed rate, on a thread.

Every tick carries its instrument's own sequence number (1, 2, 3, ...). The generator keeps
exactly the ticks the broker acknowledged (a delivery report without error), with the
partition and offset they landed at: tapewire's guarantees start at the acknowledgement, so
these are what the checker expects to find everywhere downstream.

Exchange times are 1 ms apart from a fixed instant, so every run's ticks fall in one UTC day
(one session) whatever the wall clock says.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from functools import partial

from confluent_kafka import KafkaError, Message, Producer

from tapewire.kafka import producer_config
from tapewire.settings import KafkaSettings
from tapewire.ticks import Quote, RawTick, Trade, to_proto

T0_NS = 1_763_649_000 * 10**9  # 2025-11-20 14:30:00 UTC
TICK_SPACING_NS = 1_000_000
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Acked:
    """A tick the broker acknowledged, and where it landed."""

    instrument: str
    sequence: int
    size: Decimal | None  # trades only
    price: Decimal | None  # trades only
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class LoadProfile:
    rate: float = 400.0  # ticks per second over all instruments
    duration_s: float = 30.0
    instruments: int = 20
    trade_ratio: float = 0.8
    seed: int = 20251120

    def names(self) -> list[str]:
        return [f"FLT{n:02d}" for n in range(self.instruments)]


class LoadGen:
    """Produces `profile.rate` ticks a second for `profile.duration_s` on a thread, then flushes."""

    def __init__(self, kafka: KafkaSettings, topic: str, profile: LoadProfile) -> None:
        self._thread = threading.Thread(target=self._run, name="loadgen", daemon=True)
        self.profile = profile
        self._kafka = kafka
        self._topic = topic
        self._rng = random.Random(profile.seed)
        self._cents = {name: 10_000 + 500 * n for n, name in enumerate(profile.names())}
        self._sequences: Counter[str] = Counter()
        self._silenced: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._acked: list[Acked] = []
        self._acked_by_instrument: Counter[str] = Counter()
        self.errors: list[str] = []
        self.sent = 0
        self.finished_at: float | None = None  # time.monotonic() once every tick was settled
        self._halt = threading.Event()

    # -- what the test sees -------------------------------------------------------------------

    def start(self) -> LoadGen:
        self._thread.start()
        return self

    def silence(self, instruments: list[str]) -> None:
        """Send nothing more for these instruments (the rest keep the full rate)."""
        self._silenced = self._silenced | frozenset(instruments)

    def stop(self) -> None:
        """End early (the ticks already produced are still flushed)."""
        self._halt.set()

    def acked(self) -> list[Acked]:
        with self._lock:
            return list(self._acked)

    def acked_count(self, instrument: str) -> int:
        with self._lock:
            return self._acked_by_instrument[instrument]

    def finish(self, timeout_s: float) -> float:
        """Wait for the run to end; return when (monotonic) its last tick was settled."""
        self._thread.join(timeout_s)
        assert not self._thread.is_alive() and self.finished_at is not None, (
            f"load still running after {timeout_s}s"
        )
        assert not self.errors, f"{len(self.errors)} ticks not acknowledged, first: {self.errors[0]}"
        return self.finished_at

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        producer = Producer(producer_config(self._kafka, "faults-loadgen"))
        started = time.monotonic()
        total = int(self.profile.rate * self.profile.duration_s)
        for index in range(total):
            due = started + index / self.profile.rate
            while (wait := due - time.monotonic()) > 0 and not self._halt.is_set():
                producer.poll(wait)  # serves delivery reports while pacing
            if self._halt.is_set():
                break
            tick = self._next_tick(index)
            value = to_proto(tick).SerializeToString()
            self._produce(producer, tick, value)
        remaining = producer.flush(60)
        if remaining:
            self.errors.append(f"{remaining} ticks still unacknowledged after a 60 s flush")
        self.finished_at = time.monotonic()

    def _produce(self, producer: Producer, tick: RawTick, value: bytes) -> None:
        report = partial(self._on_delivery, tick)
        while True:
            try:
                producer.produce(self._topic, key=tick.instrument.encode(), value=value, on_delivery=report)
                self.sent += 1
                return
            except BufferError:
                producer.poll(0.05)

    def _on_delivery(self, tick: RawTick, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.errors.append(f"{tick.instrument}#{tick.sequence}: {error.str()}")
            return
        trade = isinstance(tick, Trade)
        acked = Acked(
            instrument=tick.instrument,
            sequence=tick.sequence,
            size=tick.size if trade else None,
            price=tick.price if trade else None,
            partition=message.partition() or 0,
            offset=message.offset() or 0,
        )
        with self._lock:
            self._acked.append(acked)
            self._acked_by_instrument[tick.instrument] += 1

    def _next_tick(self, index: int) -> RawTick:
        active = [name for name in self.profile.names() if name not in self._silenced]
        name = self._rng.choice(active)
        self._sequences[name] += 1
        self._cents[name] = max(100, self._cents[name] + self._rng.randint(-5, 5))
        price = self._cents[name] * CENT
        sequence, exchange_ns, ingest_ns = (
            self._sequences[name],
            T0_NS + index * TICK_SPACING_NS,
            time.time_ns(),
        )
        if self._rng.random() < self.profile.trade_ratio:
            size = Decimal(self._rng.randint(1, 500)) / 10  # exact: 0.1 to 50.0
            return Trade(name, "FLT", price, size, sequence, exchange_ns, ingest_ns)
        bid_size, ask_size = (Decimal(self._rng.randint(1, 9) * 100) for _ in range(2))
        return Quote(
            name, "FLT", price - CENT, bid_size, price + CENT, ask_size, sequence, exchange_ns, ingest_ns
        )
