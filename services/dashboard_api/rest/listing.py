"""GET /api/instruments and gRPC ListInstruments: which instruments there are, with the master's
entry of each and where its market stands now.

An instrument is listed when it has a state (it has traded or quoted) or an entry in the master
(it is known, perhaps not traded yet: a desk adds it to a watchlist before the open). The
master is read from PostgreSQL; when PostgreSQL cannot answer, the instruments with a state are
listed without details rather than not at all, because the dashboard checks its token with this
call and its live prices come from Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from tapewire.errors import StoreUnavailable
from tapewire.reference.calendar import MarketStatus, TradingCalendar, market_status
from tapewire.reference.instrument import ASSET_CLASSES, Instrument, to_json

from ..stores.instruments import MAX_ENTRIES, InstrumentStore
from ..stores.states import StateStore

log = logging.getLogger(__name__)

MAX_QUERY_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Details:
    entry: Instrument
    status: MarketStatus
    until_ns: int  # when the status next changes; 0 for never (24/7)

    def json(self) -> dict[str, object]:
        return {**_entry_json(self.entry), "market_status": self.status, "status_until_ns": self.until_ns}


# An entry's own JSON changes only with the entry: rendered once, not on every request.
@lru_cache(maxsize=MAX_ENTRIES)
def _entry_json(entry: Instrument) -> dict[str, object]:
    return to_json(entry)


@dataclass(frozen=True, slots=True)
class Listing:
    instruments: list[str]
    details: list[Details]  # the master's entries among `instruments`, in their order

    def json(self) -> dict[str, object]:
        return {"instruments": self.instruments, "details": [details.json() for details in self.details]}


def check_filter(query: str, asset_class: str) -> str | None:
    """Why a filter is refused, or None."""
    if len(query) > MAX_QUERY_LENGTH or not query.isprintable():
        return f"q must be at most {MAX_QUERY_LENGTH} printable characters"
    if asset_class and asset_class not in ASSET_CLASSES:
        return f"asset_class must be one of {', '.join(ASSET_CLASSES)}"
    return None


def listing(
    with_state: Iterable[str], entries: Iterable[Instrument], query: str, asset_class: str, now_ns: int
) -> Listing:
    """Pure: the instruments with a state or an entry that pass the filter, sorted. `query`
    matches a substring of the symbol or the name, any case; an instrument without an entry has
    no name and no asset class."""
    needle = query.casefold()
    by_symbol = {entry.symbol: entry for entry in entries}
    names = set(by_symbol) | set(with_state)
    chosen = []
    for symbol in sorted(names):
        entry = by_symbol.get(symbol)
        if asset_class and (entry is None or entry.asset_class != asset_class):
            continue
        if (
            needle
            and needle not in symbol.casefold()
            and (entry is None or needle not in entry.name.casefold())
        ):
            continue
        chosen.append(symbol)
    details = []
    statuses: dict[TradingCalendar, tuple[MarketStatus, int]] = {}  # most entries share a calendar
    for symbol in chosen:
        entry = by_symbol.get(symbol)
        if entry is not None:
            status = statuses.get(entry.calendar)
            if status is None:
                status = statuses[entry.calendar] = market_status(entry.calendar, now_ns)
            details.append(Details(entry, *status))
    return Listing(chosen, details)


async def find(
    states: StateStore, master: InstrumentStore, query: str = "", asset_class: str = ""
) -> Listing:
    """The listing now. StoreUnavailable only when Redis cannot answer."""
    with_state = await states.instruments()
    try:
        entries = await master.entries()
    except StoreUnavailable as exc:
        log.warning("instrument master unavailable: listing without details", extra={"error": str(exc)})
        entries = []
    return listing(with_state, entries, query, asset_class, time.time_ns())
