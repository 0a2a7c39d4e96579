"""Reading OHLCV bars from PostgreSQL (tables bars_1s and bars_1m, see tapewire/db/migrations)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from .postgres import fetch_all

Interval = Literal["1s", "1m"]
INTERVALS: tuple[Interval, ...] = ("1s", "1m")
_TABLES: dict[Interval, sql.Identifier] = {"1s": sql.Identifier("bars_1s"), "1m": sql.Identifier("bars_1m")}

# The most recent `limit` bars, returned oldest first; the primary key (instrument, start_time)
# serves the inner scan backwards.
_RECENT = """
SELECT start_time, open, high, low, close, volume, trade_count, vwap FROM (
    SELECT start_time, open, high, low, close, volume, trade_count, vwap FROM {table}
    WHERE instrument = %s ORDER BY start_time DESC LIMIT %s
) AS recent ORDER BY start_time
"""


@dataclass(frozen=True, slots=True)
class BarRow:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int
    # The instrument's session VWAP as of the bar's last change; None when it was not known
    # (or the bar predates migration 0002).
    vwap: Decimal | None


class BarStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def recent(self, instrument: str, interval: Interval, limit: int) -> list[BarRow]:
        """The last `limit` bars of `instrument`, oldest first."""
        query = sql.SQL(_RECENT).format(table=_TABLES[interval])
        return [BarRow(*row) for row in await fetch_all(self._pool, query, (instrument, limit))]
