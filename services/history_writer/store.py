"""PostgreSQL: the latest state of every instrument and the bar history, as history_writer
writes them.

Every write is an upsert guarded by version (`WHERE stored.version < new.version`), so
replaying a batch after a crash, or two processors briefly both owning a partition during a
rebalance, can never move a row backwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg

from tapewire import decimals
from tapewire.db import connect_kwargs
from tapewire.errors import StoreUnavailable
from tapewire.settings import PostgresSettings
from tapewire.v1 import market_pb2 as pb

T = TypeVar("T")
Cursor = psycopg.Cursor[Any]

_UPSERT_STATES = """
INSERT INTO instrument_state AS stored
    (instrument, version, source_partition, source_offset, last_price, bid_price, ask_price, vwap,
     session_volume, state, updated_at)
SELECT *, now() FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::bigint[], %s::numeric[], %s::numeric[],
                            %s::numeric[], %s::numeric[], %s::numeric[], %s::bytea[])
ON CONFLICT (instrument) DO UPDATE SET
    version = EXCLUDED.version, source_partition = EXCLUDED.source_partition,
    source_offset = EXCLUDED.source_offset, last_price = EXCLUDED.last_price,
    bid_price = EXCLUDED.bid_price, ask_price = EXCLUDED.ask_price, vwap = EXCLUDED.vwap,
    session_volume = EXCLUDED.session_volume, state = EXCLUDED.state, updated_at = now()
WHERE stored.version < EXCLUDED.version
"""

_UPSERT_BARS = """
INSERT INTO {table} AS stored
    (instrument, start_time, open, high, low, close, volume, trade_count, version, vwap)
SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::numeric[], %s::numeric[], %s::numeric[],
                     %s::numeric[], %s::numeric[], %s::bigint[], %s::bigint[], %s::numeric[])
ON CONFLICT (instrument, start_time) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count, version = EXCLUDED.version,
    vwap = EXCLUDED.vwap
WHERE stored.version < EXCLUDED.version
"""


@dataclass(frozen=True, slots=True)
class VersionedBar:
    instrument: str
    bar: pb.Bar
    version: int
    # The session VWAP of the state that last changed the bar (the one at `version`), so it
    # moves with the bar under the same version guard; "" while that state did not know it
    # (no session volume yet), stored as NULL, not zero.
    vwap: str


class HistoryStore:
    """One connection, reopened on demand; every failure surfaces as StoreUnavailable."""

    def __init__(self, postgres: PostgresSettings) -> None:
        self._postgres = postgres
        self._conn: psycopg.Connection[Any] | None = None

    def write(
        self,
        states: Sequence[pb.InstrumentState],
        bars_1s: Sequence[VersionedBar],
        bars_1m: Sequence[VersionedBar],
    ) -> None:
        """Upsert states and bars in one transaction."""

        def work(cur: Cursor) -> None:
            if states:
                cur.execute(_UPSERT_STATES, _state_columns(states))
            if bars_1s:
                cur.execute(_UPSERT_BARS.format(table="bars_1s"), _bar_columns(bars_1s))
            if bars_1m:
                cur.execute(_UPSERT_BARS.format(table="bars_1m"), _bar_columns(bars_1m))

        self._run(work)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self, work: Callable[[Cursor], T]) -> T:
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                return work(cur)
        except psycopg.OperationalError as exc:
            self.close()
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(**connect_kwargs(self._postgres), autocommit=True, connect_timeout=5)
        return self._conn


def _state_columns(states: Sequence[pb.InstrumentState]) -> tuple[list[object], ...]:
    return (
        [s.instrument for s in states],
        [s.version for s in states],
        [s.source.partition for s in states],
        [s.source.offset for s in states],
        [_numeric(s.last_price) for s in states],
        [_numeric(s.bid_price) for s in states],
        [_numeric(s.ask_price) for s in states],
        [_numeric(s.vwap) for s in states],
        [_numeric(s.session_volume) or Decimal(0) for s in states],
        [s.SerializeToString() for s in states],
    )


def _bar_columns(bars: Sequence[VersionedBar]) -> tuple[list[object], ...]:
    return (
        [b.instrument for b in bars],
        [datetime.fromtimestamp(b.bar.start_time_ns / 1e9, UTC) for b in bars],
        [_numeric(b.bar.open) for b in bars],
        [_numeric(b.bar.high) for b in bars],
        [_numeric(b.bar.low) for b in bars],
        [_numeric(b.bar.close) for b in bars],
        [_numeric(b.bar.volume) for b in bars],
        [b.bar.trade_count for b in bars],
        [b.version for b in bars],
        [_numeric(b.vwap) for b in bars],
    )


def _numeric(text: str) -> Decimal | None:
    """A decimal the processor wrote, or NULL when it left the field empty."""
    return decimals.parse(text)
