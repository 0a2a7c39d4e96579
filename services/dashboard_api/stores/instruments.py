"""Reading the instrument master from PostgreSQL (table `instruments`, kept by history_writer)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from tapewire.errors import StoreUnavailable
from tapewire.reference.instrument import Instrument, InvalidInstrument, days_text, instrument_from_fields

from .postgres import fetch_all

log = logging.getLogger(__name__)

# Every entry there is: a desk's universe is thousands, not millions.
MAX_ENTRIES = 10_000
# Every dashboard asks at start and then every minute or so: a thousand of them would otherwise
# read the whole table some twenty times a second. A failure is remembered longer, so that while
# PostgreSQL is away requests do not each wait out the pool's timeout; the last entries read
# are served meanwhile (a dashboard that lost its details would reformat every price).
CACHE_S = 1.0
FAILURE_CACHE_S = 5.0
_ALL = f"""
SELECT symbol, name, asset_class, currency, venue, tick_size::text, decimals, lot_size::text, timezone, hours,
       array_to_string(days, ','), pre_open,
       -- ISO dates whatever the server's DateStyle
       array_to_string(array(SELECT to_char(day, 'YYYY-MM-DD') FROM unnest(holidays) AS day), ',')
FROM instruments ORDER BY symbol LIMIT {MAX_ENTRIES + 1}
"""


class InstrumentStore:
    def __init__(self, pool: AsyncConnectionPool, clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._clock = clock
        self._cached: tuple[float, list[Instrument]] | None = None
        self._failed: tuple[float, StoreUnavailable] | None = None
        # One read at a time: requests that miss the cache together wait for that one read.
        self._reading = asyncio.Lock()

    async def entries(self) -> list[Instrument]:
        """Every entry of the master, by symbol, at most CACHE_S old. While PostgreSQL cannot
        answer, the last entries read (logged as stale); StoreUnavailable only when none ever were."""
        async with self._reading:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < CACHE_S:
                return self._cached[1]
            try:
                entries = await self._read(now)
            except StoreUnavailable as exc:
                if self._cached is None:
                    raise
                log.warning(
                    "instrument master unavailable: serving the last entries read", extra={"error": str(exc)}
                )
                return self._cached[1]
            self._cached = (now, entries)
            return entries

    async def _read(self, now: float) -> list[Instrument]:
        if self._failed is not None and now - self._failed[0] < FAILURE_CACHE_S:
            raise self._failed[1]
        try:
            rows = await fetch_all(self._pool, _ALL, ())
        except StoreUnavailable as exc:
            self._failed = (self._clock(), exc)  # from when the answer came: the wait may be long
            raise
        self._failed = None
        if len(rows) > MAX_ENTRIES:
            rows = rows[:MAX_ENTRIES]
            log.warning(
                "instrument master over its read limit: entries beyond it are not listed",
                extra={"limit": MAX_ENTRIES},
            )
        return [entry for entry in map(_entry, rows) if entry is not None]


def _entry(row: tuple[object, ...]) -> Instrument | None:
    """A row as an entry; None (logged) for one this host cannot read, e.g. a time zone its
    tzdata does not know: one bad row must not take the listing down."""
    try:
        return _parsed(row)
    except InvalidInstrument as exc:
        log.warning("instrument row skipped", extra={"instrument": row[0], "error": str(exc)})
        return None


def _parsed(row: tuple[object, ...]) -> Instrument:
    (
        symbol,
        name,
        asset_class,
        currency,
        venue,
        tick_size,
        shown,
        lot_size,
        timezone,
        hours,
        days,
        pre_open,
        holidays,
    ) = row
    return instrument_from_fields(
        {
            "symbol": symbol,
            "name": name,
            "asset_class": asset_class,
            "currency": currency,
            "venue": venue,
            "tick_size": tick_size,
            "decimals": str(shown),
            "lot_size": lot_size,
            "timezone": timezone,
            "hours": hours,
            "days": days_text(int(day) for day in str(days).split(",") if day),
            "pre_open": pre_open,
            "holidays": holidays,
        }
    )
