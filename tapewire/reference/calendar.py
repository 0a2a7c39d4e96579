"""Trading calendars: the session an instant belongs to and the market status at it. Pure: no I/O, no clock.

A session is named by its trading date (the local date in the calendar's zone on which it closes) and runs
from its start to the next session's start, where a session starts at its pre-open when the calendar has
one, else at its open. So every trade belongs to exactly one session: pre-market trades to the session
they lead into (their change is from the close just before them), trades after the close (extended hours,
late prints) to the session that closed. `days` are the trading dates (ISO weekdays). Regular hours
"HH:MM-HH:MM": when close <= open, the session opens on the previous calendar day at `open` (CME Globex:
"17:00-16:00", days Mon-Fri: Monday's session opens Sunday 17:00 Chicago and closes Monday 16:00; Friday's
closes Friday 16:00 and runs until Sunday's start). "24/7": one session per calendar day of the zone,
[00:00, next 00:00), close = the next start. A holiday (a date of `holidays`) has no session: the one
before runs on to the next start. Early closes are not modelled.

Market status at t: "pre_open" in [pre_open, open) of a session, "open" in [open, close), "closed" otherwise
(from the close to the next session's start); 24/7 is always "open".

Scheduled times are wall-clock times on their local date (09:30 New York is 14:30 UTC in winter, 13:30 in
summer). Trading dates are counted in days since 1970-01-01, ISO weekdays run 1 (Monday) to 7 (Sunday).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ALL_DAYS = (1, 2, 3, 4, 5, 6, 7)
MON_FRI = (1, 2, 3, 4, 5)
ALWAYS = "24/7"
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MIDNIGHT = time(0, 0)
_HHMM = re.compile(r"\A([01][0-9]|2[0-3]):([0-5][0-9])\Z")
_ISO_DATE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_SEPARATORS = re.compile(r"[,;\s]+")
MAX_HOLIDAYS = 2_000  # some eighty years of a venue's holidays
_DAY_NUMBERS = {name.lower(): number for number, name in enumerate(WEEKDAYS, start=1)}

MarketStatus = Literal["open", "pre_open", "closed"]


@dataclass(frozen=True, slots=True)
class TradingCalendar:
    """When an instrument trades. Usually built by `parse_calendar`; the constructor checks the invariants."""

    timezone: str
    open: time | None  # None: 24/7 (close is None too)
    close: time | None
    days: tuple[int, ...]  # the trading dates' ISO weekdays, ascending and unique
    pre_open: time | None = None
    # Trading dates (days since 1970-01-01) of `days` on which it does not trade: a venue's
    # holidays. The session before one runs on until the next session's start.
    holidays: frozenset[int] = frozenset()
    # Loaded once, as session_at converts several local times per call; not part of equality or the hash.
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", _load_zone(self.timezone))
        _check_hours(self.open, self.close, self.pre_open)
        _check_days(self.days, self.always_open)
        if self.holidays and self.always_open:
            raise ValueError("holidays: not allowed with '24/7' hours (it trades every day)")
        if len(self.holidays) > MAX_HOLIDAYS:
            raise ValueError(f"holidays: {len(self.holidays)} dates; at most {MAX_HOLIDAYS}")

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    @property
    def always_open(self) -> bool:
        return self.open is None

    @property
    def overnight(self) -> bool:
        """Whether a session opens on the calendar day before its trading date (close <= open)."""
        return self.open is not None and self.close is not None and self.close <= self.open

    def hours_text(self) -> str:
        if self.open is None or self.close is None:
            return ALWAYS
        return f"{self.open:%H:%M}-{self.close:%H:%M}"

    def days_text(self) -> str:
        """A run of consecutive ISO weekdays as "Mon-Fri", others as a list: "Mon,Wed,Fri"."""
        return _days_text(self.days)

    def pre_open_text(self) -> str:
        return "" if self.pre_open is None else f"{self.pre_open:%H:%M}"

    def holiday_dates(self) -> list[str]:
        """The holidays as ISO dates, in order."""
        return [date.fromordinal(day + _EPOCH_ORDINAL).isoformat() for day in sorted(self.holidays)]


@dataclass(frozen=True, slots=True)
class SessionWindow:
    """One session: its trading date and its scheduled instants (Unix epoch ns)."""

    day: int  # the trading date, days since 1970-01-01
    start_ns: int  # its pre-open, or its open without one: its trades start here
    open_ns: int
    close_ns: int
    next_start_ns: int  # the next session's start: this session's trades end there


def parse_calendar(
    timezone: str,
    hours: str,
    days: str | Sequence[int] = "",
    pre_open: str = "",
    holidays: str | Iterable[str] = "",
) -> TradingCalendar:
    """A calendar from its text form (reference files, proto); ValueError names the bad field and value.

    `days` are names ("Mon-Fri", "Mon,Wed,Fri", "Sun-Thu") or ISO weekdays; none given means Mon-Fri for
    regular hours and all seven days for "24/7".
    """
    pre = _parse_time("pre_open", pre_open) if pre_open else None
    closed = _parse_holidays(holidays)
    if hours == ALWAYS:
        return TradingCalendar(timezone, None, None, _parse_days(days) or ALL_DAYS, pre, closed)
    opening, dash, closing = hours.partition("-")
    if not (dash and _HHMM.match(opening) and _HHMM.match(closing)):
        raise ValueError(f"hours: {hours!r} is not 'HH:MM-HH:MM' (24-hour clock, 00:00 to 23:59) or '24/7'")
    open_at, close_at = _parse_time("hours", opening), _parse_time("hours", closing)
    return TradingCalendar(timezone, open_at, close_at, _parse_days(days) or MON_FRI, pre, closed)


def session_at(calendar: TradingCalendar, t_ns: int) -> SessionWindow:
    """The session in force at t: the latest session whose start is at or before t."""
    # Sessions start in the order of their trading dates, and none dated after the day after t's local date
    # (an overnight session opens the day before its date) can have started yet.
    local = datetime.fromtimestamp(t_ns // NS_PER_SECOND, calendar.zone)
    day = local.toordinal() - _EPOCH_ORDINAL + 1
    while not (_trades_on(calendar, day) and (start_ns := _start_ns(calendar, day)) <= t_ns):
        day -= 1
    next_start_ns = _start_ns(calendar, _next_trading_day(calendar, day))
    open_ns = _open_ns(calendar, day)
    close_ns = next_start_ns if calendar.close is None else _instant(calendar.zone, day, calendar.close)
    # A close in a spring-forward gap reads an hour later, and can pass the next session's start.
    close_ns = min(close_ns, next_start_ns)
    return SessionWindow(day, start_ns, open_ns, close_ns, next_start_ns)


def market_status(calendar: TradingCalendar, t_ns: int) -> tuple[MarketStatus, int]:
    """The status at t and the instant it next changes (0 when it never does: 24/7)."""
    if calendar.always_open:
        return "open", 0
    window = session_at(calendar, t_ns)
    if t_ns < window.open_ns:
        return "pre_open", window.open_ns
    if t_ns < window.close_ns:
        return "open", _open_until(calendar, window)
    return "closed", window.next_start_ns


class SessionClock:
    """session_at for one calendar, remembering the last window: O(1) while t stays inside it.

    The processor asks once per trade (~20k/s), and consecutive trades nearly always share a session.
    """

    __slots__ = ("_window", "calendar")

    def __init__(self, calendar: TradingCalendar) -> None:
        self.calendar = calendar
        self._window = SessionWindow(0, 0, 0, 0, 0)  # an empty interval: the first call computes

    def window(self, t_ns: int) -> SessionWindow:
        window = self._window
        if window.start_ns <= t_ns < window.next_start_ns:
            return window
        window = self._window = session_at(self.calendar, t_ns)
        return window


def _instant(zone: ZoneInfo, day: int, at: time) -> int:
    """Wall-clock time `at` on local date `day`, in epoch ns (exact: scheduled times are whole minutes)."""
    # zoneinfo's default fold=0 reads a time with the offset in force before a transition: a time in a
    # spring-forward gap lands that much later (02:30 New York on the changeover Sunday is 03:30 EDT), and a
    # time repeated by a fall-back is its first occurrence.
    local = datetime.combine(date.fromordinal(day + _EPOCH_ORDINAL), at, tzinfo=zone)
    return int(local.timestamp()) * NS_PER_SECOND


def _trades_on(calendar: TradingCalendar, day: int) -> bool:
    # 1970-01-01 was a Thursday (ISO 4).
    return (day + 3) % 7 + 1 in calendar.days and day not in calendar.holidays


def _next_trading_day(calendar: TradingCalendar, day: int) -> int:
    day += 1
    while not _trades_on(calendar, day):
        day += 1
    return day


def _at_opening(calendar: TradingCalendar, day: int, at: time) -> int:
    """`at` on the local date the session of trading date `day` opens."""
    return _instant(calendar.zone, day - 1 if calendar.overnight else day, at)


def _open_ns(calendar: TradingCalendar, day: int) -> int:
    return _at_opening(calendar, day, _MIDNIGHT if calendar.open is None else calendar.open)


def _start_ns(calendar: TradingCalendar, day: int) -> int:
    open_ns = _open_ns(calendar, day)
    if calendar.pre_open is None:
        return open_ns
    # A pre-open in a spring-forward gap reads later (fold 0) and may pass the open: then it starts there.
    return min(_at_opening(calendar, day, calendar.pre_open), open_ns)


def _open_until(calendar: TradingCalendar, window: SessionWindow) -> int:
    """When an open market closes: a session closing where the next opens ("17:00-17:00") runs on."""
    for _ in range(7):
        if window.close_ns != window.next_start_ns:
            return window.close_ns
        following = session_at(calendar, window.next_start_ns)
        if following.start_ns != following.open_ns:  # it starts with a pre-open (pre_open == close)
            return window.close_ns
        window = following
    return 0  # back-to-back sessions every day of the week: it never closes


def _load_zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of zones ("America")
        raise ValueError(f"timezone: unknown time zone {timezone!r}") from None


def _parse_time(name: str, text: str) -> time:
    match = _HHMM.match(text)
    if match is None:
        raise ValueError(f"{name}: {text!r} is not 'HH:MM' (24-hour clock, 00:00 to 23:59)")
    return time(int(match[1]), int(match[2]))


def _parse_days(days: str | Iterable[int]) -> tuple[int, ...]:
    """The ISO weekdays, ascending; () when none are given."""
    numbers = _day_names(days) if isinstance(days, str) else list(days)
    for day in numbers:
        if not 1 <= day <= 7:
            raise ValueError(f"days: {day!r} is not an ISO weekday (1 = Monday .. 7 = Sunday)")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"days: {days!r} names a weekday twice")
    return tuple(sorted(numbers))


def _parse_holidays(holidays: str | Iterable[str]) -> frozenset[int]:
    """ISO dates separated by commas, semicolons or spaces ("2026-11-26;2026-12-25"), as trading dates."""
    texts = _SEPARATORS.split(holidays.strip()) if isinstance(holidays, str) else list(holidays)
    return frozenset(_iso_day(text) for text in texts if text)


def _iso_day(text: str) -> int:
    if _ISO_DATE.match(text):
        try:
            return date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL
        except ValueError:  # 2026-02-30
            pass
    raise ValueError(f"holidays: {text!r} is not a date (YYYY-MM-DD)")


def _day_names(text: str) -> list[int]:
    """Names and ranges, any case: "Mon-Fri", "mon,wed,fri"; a range may wrap past Sunday ("Sun-Thu")."""
    numbers: list[int] = []
    for item in text.split(",") if text else ():
        first, dash, last = item.partition("-")
        start = _day_name(first, text)
        end = _day_name(last, text) if dash else start
        numbers.extend((start - 1 + step) % 7 + 1 for step in range((end - start) % 7 + 1))
    return numbers


def _day_name(name: str, text: str) -> int:
    number = _DAY_NUMBERS.get(name.strip().lower())
    if number is None:
        raise ValueError(f"days: unknown weekday {name!r} in {text!r} (use Mon Tue Wed Thu Fri Sat Sun)")
    return number


def _days_text(days: tuple[int, ...]) -> str:
    first, last = days[0], days[-1]
    if len(days) > 1 and last - first == len(days) - 1:
        return f"{WEEKDAYS[first - 1]}-{WEEKDAYS[last - 1]}"
    return ",".join(WEEKDAYS[day - 1] for day in days)


def _check_hours(open_at: time | None, close_at: time | None, pre_open: time | None) -> None:
    if (open_at is None) != (close_at is None):
        raise ValueError("hours: open and close must both be set, or both be None for 24/7")
    for name, at in (("hours", open_at), ("hours", close_at), ("pre_open", pre_open)):
        if at is not None and (at.tzinfo is not None or at.second or at.microsecond):
            raise ValueError(f"{name}: {at!r} is not a whole minute of local (naive) time")
    if pre_open is not None and open_at is None:
        raise ValueError(f"pre_open: {pre_open:%H:%M} is not allowed with '24/7' hours")
    if pre_open is not None and open_at is not None and pre_open >= open_at:
        raise ValueError(f"pre_open: {pre_open:%H:%M} is not before the open {open_at:%H:%M}")
    # A session starts at its pre-open: in an overnight calendar that is the evening the one before
    # closes, and it must not start before that close.
    if (
        pre_open is not None
        and open_at is not None
        and close_at is not None
        and pre_open < close_at <= open_at
    ):
        raise ValueError(
            f"pre_open: {pre_open:%H:%M} is before the close {close_at:%H:%M} of the session before"
        )


def _check_days(days: tuple[int, ...], always_open: bool) -> None:
    if not days or list(days) != sorted(set(days)) or not 1 <= days[0] <= days[-1] <= 7:
        raise ValueError(f"days: {days!r} are not ascending, unique ISO weekdays (1 = Monday .. 7 = Sunday)")
    if always_open and days != ALL_DAYS:
        raise ValueError(f"days: {_days_text(days)} with '24/7' hours (24/7 trades all seven days: Mon-Sun)")


# The default for instruments without a calendar: one session per UTC calendar day.
UTC_DAYS = TradingCalendar("UTC", None, None, ALL_DAYS)
