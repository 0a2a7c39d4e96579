"""Reading OHLCV bars from PostgreSQL (tables bars_1s and bars_1m, see tapewire/db/migrations)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tapewire.db import connect_kwargs
from tapewire.errors import StoreUnavailable
from tapewire.settings import PostgresSettings

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


def open_pool(postgres: PostgresSettings, max_size: int, timeout_s: float) -> AsyncConnectionPool:
    """A pool that connects in the background: the API starts even while PostgreSQL is down."""
    kwargs: dict[str, str | bool] = dict(connect_kwargs(postgres))
    conninfo = str(kwargs.pop("conninfo"))
    kwargs["autocommit"] = True
    return AsyncConnectionPool(
        conninfo,
        kwargs=kwargs,
        min_size=1,
        max_size=max_size,
        timeout=timeout_s,
        # A cheap round trip before handing a connection out, so a PostgreSQL restart costs
        # no failed request.
        check=AsyncConnectionPool.check_connection,
        open=False,
        name="dashboard_api",
    )


class BarStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def recent(self, instrument: str, interval: Interval, limit: int) -> list[BarRow]:
        """The last `limit` bars of `instrument`, oldest first."""
        query = sql.SQL(_RECENT).format(table=_TABLES[interval])
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query, (instrument, limit))
                rows = await cursor.fetchall()
        except PoolTimeout as exc:
            raise StoreUnavailable("postgresql: no connection available (is it running?)") from exc
        except psycopg.Error as exc:
            # The first line says what; the rest (SQL and a caret) is for the log, not for clients.
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"postgresql: {first_line}") from exc
        return [BarRow(*row) for row in rows]
