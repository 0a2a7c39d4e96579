"""Each instrument's trading calendar, as the instrument master says now (tapewire/reference).

The processor asks for an instrument's session clock on every trade, so clocks are cached:
one per distinct calendar (every US equity shares New York's), found per instrument in a dict.
An instrument the master does not know trades one UTC day per session, as before calendars.

A calendar that changes takes effect from the next batch the processor reads: a session
already running keeps the trading date it has, and rolls when a trade falls in a later one.
"""

from __future__ import annotations

from tapewire.reference.calendar import UTC_DAYS, SessionClock, TradingCalendar
from tapewire.reference.master import MasterFeed


class Calendars:
    def __init__(self, feed: MasterFeed | None = None) -> None:
        self._feed = feed
        self._clocks: dict[str, SessionClock] = {}
        self._by_calendar: dict[TradingCalendar, SessionClock] = {}

    def refresh(self) -> None:
        """Take the master's changes since the last call (never waits)."""
        if self._feed is not None:
            for symbol in self._feed.poll():
                self._clocks.pop(symbol, None)

    def clock(self, instrument: str) -> SessionClock:
        clock = self._clocks.get(instrument)
        if clock is None:
            entry = None if self._feed is None else self._feed.master.get(instrument)
            calendar = UTC_DAYS if entry is None else entry.calendar
            clock = self._by_calendar.get(calendar)
            if clock is None:
                clock = self._by_calendar[calendar] = SessionClock(calendar)
            self._clocks[instrument] = clock
        return clock

    def close(self) -> None:
        if self._feed is not None:
            self._feed.close()
