"""Test doubles for the ingester's unit tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

from confluent_kafka import KafkaError, Message

from services.ingester.publish import DeliveryCallback
from services.ingester.records import Record, encode, stamped
from tapewire.ticks import RawTick, Trade


class FakeProducer:
    """An in-memory stand-in for `confluent_kafka.Producer`.

    Like librdkafka it holds at most `capacity` unacknowledged records (then `produce` raises
    `BufferError`) and runs delivery callbacks only from `poll` and `flush`. With `acks` off it
    behaves like a producer whose broker is down: nothing is ever acknowledged.
    """

    def __init__(self, capacity: int = 100_000, acks: bool = True, error: KafkaError | None = None) -> None:
        self.capacity = capacity
        self.acks = acks
        self.error = error  # reported to every delivery callback instead of success
        self.raise_on_produce: Exception | None = None
        self.raise_for_key: dict[bytes, Exception] = {}  # produce() raises this for records of that key
        self.fail_key: dict[bytes, KafkaError] = {}  # deliveries of that key fail with this
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.headers: list[list[tuple[str, str | bytes | None]] | None] = []  # per produce() call, as given
        self.buffer_errors = 0
        self._pending: list[tuple[KafkaError | None, DeliveryCallback]] = []
        self._lock = threading.Lock()
        self._activity = threading.Event()

    def produce(
        self,
        topic: str,
        *,
        value: bytes,
        key: bytes,
        on_delivery: DeliveryCallback,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        with self._lock:
            self.headers.append(headers)
            if self.raise_on_produce is not None:
                raise self.raise_on_produce
            if key in self.raise_for_key:
                raise self.raise_for_key[key]
            if len(self._pending) >= self.capacity:
                self.buffer_errors += 1
                raise BufferError("Local: Queue full")
            self.sent.append((topic, key, value))
            self._pending.append((self.fail_key.get(key, self.error), on_delivery))
        self._activity.set()

    def poll(self, timeout: float) -> int:
        served = self._serve()
        if not served and timeout > 0:
            self._activity.wait(timeout)
            self._activity.clear()
            served = self._serve()
        return served

    def flush(self, timeout: float) -> int:
        self._serve()
        return len(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    def _serve(self) -> int:
        if not self.acks:
            return 0
        with self._lock:
            callbacks, self._pending = self._pending, []
        for error, callback in callbacks:
            callback(error, Message())
        return len(callbacks)


class ListSource:
    """A source that yields the given ticks, then ends (or raises `error` at the end)."""

    name = "list"

    def __init__(self, ticks: list[RawTick], error: Exception | None = None) -> None:
        self._ticks = ticks
        self._error = error

    def read(self, stop: threading.Event) -> Iterator[RawTick]:
        for tick in self._ticks:
            if stop.is_set():
                return
            yield tick
        if self._error is not None:
            raise self._error


class EndlessSource:
    """Yields the same tick until stopped."""

    name = "endless"

    def __init__(self, tick: RawTick) -> None:
        self._tick = tick

    def read(self, stop: threading.Event) -> Iterator[RawTick]:
        while not stop.is_set():
            yield self._tick


NOW_NS = 1_763_649_000_000_000_000


def trade(instrument: str, sequence: int, ingest_time_ns: int = 0) -> Trade:
    """A valid trade of 100 at 10.5, stamped NOW_NS."""
    return Trade(
        instrument=instrument,
        venue="SIM",
        price=Decimal("10.5"),
        size=Decimal(100),
        sequence=sequence,
        exchange_time_ns=NOW_NS,
        ingest_time_ns=ingest_time_ns,
    )


def record(tick: RawTick, max_bytes: int = 4_096) -> Record:
    """`tick` encoded as the queue holds it, stamped with the tick's own `ingest_time_ns`."""
    return stamped(encode(tick, max_bytes), tick.ingest_time_ns)
