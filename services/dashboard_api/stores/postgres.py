"""dashboard_api's PostgreSQL: one pool for every store, and one way a query fails."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tapewire.db import connect_kwargs
from tapewire.errors import StoreUnavailable
from tapewire.settings import PostgresSettings


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


async def fetch_all(
    pool: AsyncConnectionPool, query: sql.Composed | sql.SQL | str, params: Sequence[Any] | Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of a query; every failure (no connection, PostgreSQL's error) as StoreUnavailable."""
    try:
        async with pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()
    except PoolTimeout as exc:
        raise StoreUnavailable("postgresql: no connection available (is it running?)") from exc
    except psycopg.Error as exc:
        # The first line says what; the rest (SQL and a caret) is for the log, not for clients.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(f"postgresql: {first_line}") from exc
