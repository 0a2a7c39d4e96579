"""PostgreSQL: the latest state of every instrument, the bar history and the instrument master,
as history_writer writes them.

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
from tapewire.reference.instrument import Instrument
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


# The master's rows follow the topic's records in offset order (one partition), so the last
# write wins and a replayed batch ends where the first attempt did: no version guard is needed.
_UPSERT_INSTRUMENTS = """
INSERT INTO instruments AS stored
    (symbol, name, asset_class, currency, venue, tick_size, decimals, lot_size, timezone, hours, days,
     pre_open, holidays, updated_at)
SELECT symbol, name, asset_class, currency, venue, tick_size, decimals, lot_size, timezone, hours,
       string_to_array(days, ',')::smallint[], pre_open, string_to_array(holidays, ',')::date[], now()
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::numeric[], %s::smallint[],
            %s::numeric[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
    AS new(symbol, name, asset_class, currency, venue, tick_size, decimals, lot_size, timezone, hours, days,
           pre_open, holidays)
ON CONFLICT (symbol) DO UPDATE SET
    name = EXCLUDED.name, asset_class = EXCLUDED.asset_class, currency = EXCLUDED.currency,
    venue = EXCLUDED.venue, tick_size = EXCLUDED.tick_size, decimals = EXCLUDED.decimals,
    lot_size = EXCLUDED.lot_size, timezone = EXCLUDED.timezone, hours = EXCLUDED.hours,
    days = EXCLUDED.days, pre_open = EXCLUDED.pre_open, holidays = EXCLUDED.holidays, updated_at = now()
"""
_DELETE_INSTRUMENTS = "DELETE FROM instruments WHERE symbol = ANY(%s::text[])"


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

    def write_instruments(self, entries: Sequence[Instrument], removed: Sequence[str]) -> None:
        """Upsert entries of the master and delete removed symbols, in one transaction."""

        def work(cur: Cursor) -> None:
            if removed:
                cur.execute(_DELETE_INSTRUMENTS, (list(removed),))
            if entries:
                cur.execute(_UPSERT_INSTRUMENTS, _instrument_columns(entries))

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


def _instrument_columns(entries: Sequence[Instrument]) -> tuple[list[object], ...]:
    return (
        [e.symbol for e in entries],
        [e.name for e in entries],
        [e.asset_class for e in entries],
        [e.currency for e in entries],
        [e.venue for e in entries],
        [e.tick_size for e in entries],
        [e.decimals for e in entries],
        [e.lot_size for e in entries],
        [e.calendar.timezone for e in entries],
        [e.calendar.hours_text() for e in entries],
        [",".join(str(day) for day in e.calendar.days) for e in entries],
        [e.calendar.pre_open_text() for e in entries],
        [",".join(e.calendar.holiday_dates()) for e in entries],
    )


def _numeric(text: str) -> Decimal | None:
    """A decimal the processor wrote, or NULL when it left the field empty."""
    return decimals.parse(text)
