"""Trading calendars: sessions and market status against hand-computed UTC instants.

Week used below: Mon 2026-01-05 .. Sun 2026-01-11 (winter: New York UTC-5, Chicago UTC-6).
US DST 2026 starts Sunday 2026-03-08 and ends Sunday 2026-11-01 (summer: New York UTC-4, Chicago UTC-5).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapewire.reference.calendar import (
    ALL_DAYS,
    NS_PER_DAY,
    UTC_DAYS,
    SessionClock,
    SessionWindow,
    TradingCalendar,
    market_status,
    parse_calendar,
    session_at,
)
from tapewire.v1 import reference_pb2 as rpb

NY = parse_calendar("America/New_York", "09:30-16:00", "Mon-Fri", "04:00")
NY_PLAIN = parse_calendar("America/New_York", "09:30-16:00", "Mon-Fri")
CME = parse_calendar("America/Chicago", "17:00-16:00", "Mon-Fri")
CME_PRE = parse_calendar("America/Chicago", "17:00-16:00", "Mon-Fri", "16:45")
CME_PRE_AT_CLOSE = parse_calendar("America/Chicago", "17:00-16:00", "Mon-Fri", "16:00")
FX = parse_calendar("America/New_York", "17:00-17:00", "Mon-Fri")
TOKYO_ALWAYS = parse_calendar("Asia/Tokyo", "24/7")
SUNDAYS = parse_calendar("Europe/London", "10:00-14:00", "Sun")
PRE_OPEN_IN_GAP = parse_calendar("America/New_York", "03:00-12:00", "Mon-Sun", "02:30")
CALENDARS = [
    NY,
    NY_PLAIN,
    CME,
    CME_PRE,
    CME_PRE_AT_CLOSE,
    FX,
    TOKYO_ALWAYS,
    SUNDAYS,
    UTC_DAYS,
    PRE_OPEN_IN_GAP,
    parse_calendar("Europe/Berlin", "22:00-08:00", [2, 4]),
    parse_calendar("Europe/Berlin", "22:00-08:00", [2, 4], "21:00"),
    # Holidays, among them a run of them and one right after a DST change.
    parse_calendar("America/New_York", "09:30-16:00", "Mon-Fri", "04:00", "2026-03-09,2026-11-26,2026-11-27"),
    parse_calendar("America/Chicago", "17:00-16:00", "Mon-Fri", "16:45", "2026-04-03,2026-12-24,2026-12-25"),
]
# 2025-12-01 .. 2027-01-01: both 2026 DST changes in every zone above.
TIMES = st.integers(min_value=1_764_547_200 * 10**9, max_value=1_798_761_600 * 10**9)


def utc(text: str) -> int:
    """A UTC instant written as ISO text ("2026-01-06T14:30"), in epoch ns."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


def day(text: str) -> int:
    return (date.fromisoformat(text) - date(1970, 1, 1)).days


def window(
    date_text: str, start_utc: str, open_utc: str, close_utc: str, next_start_utc: str
) -> SessionWindow:
    return SessionWindow(day(date_text), utc(start_utc), utc(open_utc), utc(close_utc), utc(next_start_utc))


# New York equities, "09:30-16:00" Mon-Fri, pre_open 04:00: sessions run 04:00 to the next 04:00.

NY_MONDAY = window(  # Mon 04:00, 09:30, 16:00 .. Tue 04:00
    "2026-01-05", "2026-01-05T09:00", "2026-01-05T14:30", "2026-01-05T21:00", "2026-01-06T09:00"
)
NY_TUESDAY = window(  # Tue 04:00, 09:30, 16:00 .. Wed 04:00
    "2026-01-06", "2026-01-06T09:00", "2026-01-06T14:30", "2026-01-06T21:00", "2026-01-07T09:00"
)
NY_FRIDAY = window(  # Fri 04:00, 09:30, 16:00 .. Mon 04:00
    "2026-01-09", "2026-01-09T09:00", "2026-01-09T14:30", "2026-01-09T21:00", "2026-01-12T09:00"
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc("2026-01-05T09:00"), NY_MONDAY),  # Mon 04:00: the pre-open starts the session
        (utc("2026-01-05T14:30"), NY_MONDAY),  # Mon 09:30: the open
        (utc("2026-01-05T23:00"), NY_MONDAY),  # Mon 18:00: extended hours count in the session
        (utc("2026-01-06T01:00"), NY_MONDAY),  # Mon 20:00: after-hours
        (utc("2026-01-06T08:59:59") + 999_999_999, NY_MONDAY),  # Tue 03:59:59.999999999
        (utc("2026-01-06T09:00"), NY_TUESDAY),  # Tue 04:00 starts Tuesday's session
        (utc("2026-01-06T12:00"), NY_TUESDAY),  # Tue 07:00: pre-market counts in Tuesday's
        (utc("2026-01-06T14:30"), NY_TUESDAY),  # Tue 09:30
        (utc("2026-01-10T17:00"), NY_FRIDAY),  # Sat 12:00
        (utc("2026-01-12T08:59"), NY_FRIDAY),  # Mon 03:59
        (utc("2026-01-12T08:59:59") + 999_999_999, NY_FRIDAY),  # Mon 03:59:59.999999999
        (
            utc("2026-01-12T09:00"),  # Mon 04:00
            window(
                "2026-01-12", "2026-01-12T09:00", "2026-01-12T14:30", "2026-01-12T21:00", "2026-01-13T09:00"
            ),
        ),
    ],
)
def test_new_york_sessions(at: int, expected: SessionWindow) -> None:
    assert session_at(NY, at) == expected


@pytest.mark.parametrize(
    ("at", "status", "until"),
    [
        (utc("2026-01-06T08:59"), "closed", utc("2026-01-06T09:00")),  # Tue 03:59 until 04:00
        (utc("2026-01-06T09:00"), "pre_open", utc("2026-01-06T14:30")),  # Tue 04:00 until 09:30
        (utc("2026-01-06T12:00"), "pre_open", utc("2026-01-06T14:30")),  # Tue 07:00 until 09:30
        (utc("2026-01-06T14:29:59") + 999_999_999, "pre_open", utc("2026-01-06T14:30")),  # Tue 09:29:59.9..
        (utc("2026-01-06T14:30"), "open", utc("2026-01-06T21:00")),  # Tue 09:30 until 16:00
        (utc("2026-01-06T17:00"), "open", utc("2026-01-06T21:00")),  # Tue 12:00 until 16:00
        (utc("2026-01-06T21:00"), "closed", utc("2026-01-07T09:00")),  # Tue 16:00 until Wed 04:00
        (utc("2026-01-06T01:00"), "closed", utc("2026-01-06T09:00")),  # Mon 20:00 until Tue 04:00
        (utc("2026-01-09T21:00"), "closed", utc("2026-01-12T09:00")),  # Fri 16:00 until Mon 04:00
        (utc("2026-01-11T12:00"), "closed", utc("2026-01-12T09:00")),  # Sun 07:00 until Mon 04:00
    ],
)
def test_new_york_status(at: int, status: str, until: int) -> None:
    assert market_status(NY, at) == (status, until)


# New York without a pre-open: sessions start at the open, 09:30 to the next 09:30.

NY_PLAIN_MONDAY = window(  # Mon 09:30, 09:30, 16:00 .. Tue 09:30
    "2026-01-05", "2026-01-05T14:30", "2026-01-05T14:30", "2026-01-05T21:00", "2026-01-06T14:30"
)
NY_PLAIN_FRIDAY = window(  # Fri 09:30, 09:30, 16:00 .. Mon 09:30
    "2026-01-09", "2026-01-09T14:30", "2026-01-09T14:30", "2026-01-09T21:00", "2026-01-12T14:30"
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc("2026-01-05T14:30"), NY_PLAIN_MONDAY),  # Mon 09:30: the open
        (utc("2026-01-05T23:00"), NY_PLAIN_MONDAY),  # Mon 18:00
        (utc("2026-01-06T09:00"), NY_PLAIN_MONDAY),  # Tue 04:00: pre-market counts in Monday's
        (utc("2026-01-06T14:29:59") + 999_999_999, NY_PLAIN_MONDAY),  # Tue 09:29:59.999999999
        (
            utc("2026-01-06T14:30"),  # Tue 09:30
            window(
                "2026-01-06", "2026-01-06T14:30", "2026-01-06T14:30", "2026-01-06T21:00", "2026-01-07T14:30"
            ),
        ),
        (utc("2026-01-10T17:00"), NY_PLAIN_FRIDAY),  # Sat 12:00
        (utc("2026-01-12T14:29:59") + 999_999_999, NY_PLAIN_FRIDAY),  # Mon 09:29:59.999999999
    ],
)
def test_new_york_without_pre_open_sessions(at: int, expected: SessionWindow) -> None:
    assert session_at(NY_PLAIN, at) == expected


@pytest.mark.parametrize(
    ("at", "status", "until"),
    [
        (utc("2026-01-06T09:00"), "closed", utc("2026-01-06T14:30")),  # Tue 04:00 until 09:30
        (utc("2026-01-06T14:30"), "open", utc("2026-01-06T21:00")),  # Tue 09:30 until 16:00
        (utc("2026-01-06T21:00"), "closed", utc("2026-01-07T14:30")),  # Tue 16:00 until Wed 09:30
        (utc("2026-01-09T21:00"), "closed", utc("2026-01-12T14:30")),  # Fri 16:00 until Mon 09:30
    ],
)
def test_new_york_without_pre_open_status(at: int, status: str, until: int) -> None:
    assert market_status(NY_PLAIN, at) == (status, until)


# CME Globex, "17:00-16:00" Mon-Fri, America/Chicago.

CME_MONDAY = window(  # Sun 17:00, 17:00, Mon 16:00 .. Mon 17:00
    "2026-01-12", "2026-01-11T23:00", "2026-01-11T23:00", "2026-01-12T22:00", "2026-01-12T23:00"
)
CME_FRIDAY = window(  # Thu 17:00, 17:00, Fri 16:00 .. Sun 17:00
    "2026-01-09", "2026-01-08T23:00", "2026-01-08T23:00", "2026-01-09T22:00", "2026-01-11T23:00"
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc("2026-01-09T21:59"), CME_FRIDAY),  # Fri 15:59
        (utc("2026-01-10T18:00"), CME_FRIDAY),  # Sat 12:00: after Friday's close, still Friday's
        (utc("2026-01-11T22:59"), CME_FRIDAY),  # Sun 16:59
        (utc("2026-01-11T23:00"), CME_MONDAY),  # Sun 17:00 opens Monday's session
        (utc("2026-01-12T22:30"), CME_MONDAY),  # Mon 16:30: the maintenance break is Monday's
        (
            utc("2026-01-12T23:00"),  # Mon 17:00
            window(
                "2026-01-13", "2026-01-12T23:00", "2026-01-12T23:00", "2026-01-13T22:00", "2026-01-13T23:00"
            ),
        ),
    ],
)
def test_cme_sessions(at: int, expected: SessionWindow) -> None:
    assert session_at(CME, at) == expected


@pytest.mark.parametrize(
    ("at", "status", "until"),
    [
        (utc("2026-01-11T23:00"), "open", utc("2026-01-12T22:00")),  # Sun 17:00 until Mon 16:00
        (utc("2026-01-12T22:30"), "closed", utc("2026-01-12T23:00")),  # Mon 16:30 (break) until 17:00
        (utc("2026-01-16T22:00"), "closed", utc("2026-01-18T23:00")),  # Fri 16:00 until Sun 17:00
    ],
)
def test_cme_status(at: int, status: str, until: int) -> None:
    assert market_status(CME, at) == (status, until)


# CME with a pre-open at 16:45: sessions run 16:45 to the next 16:45.

CME_PRE_MONDAY = window(  # Sun 16:45, 17:00, Mon 16:00 .. Mon 16:45
    "2026-01-12", "2026-01-11T22:45", "2026-01-11T23:00", "2026-01-12T22:00", "2026-01-12T22:45"
)
CME_PRE_FRIDAY = window(  # Thu 16:45, 17:00, Fri 16:00 .. Sun 16:45
    "2026-01-09", "2026-01-08T22:45", "2026-01-08T23:00", "2026-01-09T22:00", "2026-01-11T22:45"
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc("2026-01-09T21:59"), CME_PRE_FRIDAY),  # Fri 15:59
        (utc("2026-01-10T18:00"), CME_PRE_FRIDAY),  # Sat 12:00
        (utc("2026-01-11T22:44:59") + 999_999_999, CME_PRE_FRIDAY),  # Sun 16:44:59.999999999
        (utc("2026-01-11T22:45"), CME_PRE_MONDAY),  # Sun 16:45: the pre-open starts Monday's session
        (utc("2026-01-11T23:00"), CME_PRE_MONDAY),  # Sun 17:00
        (utc("2026-01-12T22:30"), CME_PRE_MONDAY),  # Mon 16:30: the break is Monday's
        (
            utc("2026-01-12T22:45"),  # Mon 16:45
            window(
                "2026-01-13", "2026-01-12T22:45", "2026-01-12T23:00", "2026-01-13T22:00", "2026-01-13T22:45"
            ),
        ),
    ],
)
def test_cme_with_pre_open_sessions(at: int, expected: SessionWindow) -> None:
    assert session_at(CME_PRE, at) == expected


@pytest.mark.parametrize(
    ("at", "status", "until"),
    [
        (utc("2026-01-11T22:44"), "closed", utc("2026-01-11T22:45")),  # Sun 16:44 until 16:45
        (utc("2026-01-11T22:45"), "pre_open", utc("2026-01-11T23:00")),  # Sun 16:45 until 17:00
        (utc("2026-01-11T23:00"), "open", utc("2026-01-12T22:00")),  # Sun 17:00 until Mon 16:00
        (utc("2026-01-12T22:00"), "closed", utc("2026-01-12T22:45")),  # Mon 16:00 until 16:45
        (utc("2026-01-12T22:45"), "pre_open", utc("2026-01-12T23:00")),  # Mon 16:45 until 17:00
        (utc("2026-01-16T22:00"), "closed", utc("2026-01-18T22:45")),  # Fri 16:00 until Sun 16:45
    ],
)
def test_cme_with_pre_open_status(at: int, status: str, until: int) -> None:
    assert market_status(CME_PRE, at) == (status, until)


def test_pre_open_at_the_close() -> None:
    # "17:00-16:00" with pre_open 16:00: each session starts where the one before closes, in its pre-open.
    monday = window(  # Sun 16:00, 17:00, Mon 16:00 .. Mon 16:00
        "2026-01-12", "2026-01-11T22:00", "2026-01-11T23:00", "2026-01-12T22:00", "2026-01-12T22:00"
    )
    assert session_at(CME_PRE_AT_CLOSE, utc("2026-01-11T22:00")) == monday
    assert session_at(CME_PRE_AT_CLOSE, utc("2026-01-12T22:00")).day == day("2026-01-13")
    assert market_status(CME_PRE_AT_CLOSE, utc("2026-01-12T21:00")) == (
        "open",
        utc("2026-01-12T22:00"),
    )  # Mon 15:00
    assert market_status(CME_PRE_AT_CLOSE, utc("2026-01-12T22:00")) == ("pre_open", utc("2026-01-12T23:00"))
    assert market_status(CME_PRE_AT_CLOSE, utc("2026-01-16T22:00")) == (
        "closed",
        utc("2026-01-18T22:00"),
    )  # Fri


# Daylight saving time: scheduled times are wall-clock times of their local date.


def test_new_york_across_spring_forward() -> None:
    friday = window(  # Fri 04:00 EST, 09:30 EST, 16:00 EST .. Mon 04:00 EDT
        "2026-03-06", "2026-03-06T09:00", "2026-03-06T14:30", "2026-03-06T21:00", "2026-03-09T08:00"
    )
    assert session_at(NY, utc("2026-03-06T14:30")) == friday  # Fri 09:30 EST
    assert session_at(NY, utc("2026-03-08T16:00")) == friday  # Sun 12:00 EDT
    assert session_at(NY, utc("2026-03-09T07:59")) == friday  # Mon 03:59 EDT
    monday = window(  # Mon 04:00, 09:30, 16:00 EDT .. Tue 04:00 EDT
        "2026-03-09", "2026-03-09T08:00", "2026-03-09T13:30", "2026-03-09T20:00", "2026-03-10T08:00"
    )
    assert session_at(NY, utc("2026-03-09T08:00")) == monday  # Mon 04:00 EDT
    assert market_status(NY, utc("2026-03-06T21:00")) == ("closed", utc("2026-03-09T08:00"))  # Mon 04:00 EDT
    plain_friday = window(  # Fri 09:30 EST .. Mon 09:30 EDT
        "2026-03-06", "2026-03-06T14:30", "2026-03-06T14:30", "2026-03-06T21:00", "2026-03-09T13:30"
    )
    assert session_at(NY_PLAIN, utc("2026-03-09T08:00")) == plain_friday  # Mon 04:00 EDT


def test_cme_across_spring_forward() -> None:
    # Friday's opens Thu 17:00 CST; Monday's opens Sun 17:00 CDT and closes Mon 16:00 CDT.
    friday = window(
        "2026-03-06", "2026-03-05T23:00", "2026-03-05T23:00", "2026-03-06T22:00", "2026-03-08T22:00"
    )
    assert session_at(CME, utc("2026-03-08T21:59")) == friday
    monday = window(
        "2026-03-09", "2026-03-08T22:00", "2026-03-08T22:00", "2026-03-09T21:00", "2026-03-09T22:00"
    )
    assert session_at(CME, utc("2026-03-08T22:00")) == monday
    # With the pre-open: Thu 16:45 CST .. Sun 16:45 CDT, then Sun 16:45 CDT .. Mon 16:45 CDT.
    pre_friday = window(
        "2026-03-06", "2026-03-05T22:45", "2026-03-05T23:00", "2026-03-06T22:00", "2026-03-08T21:45"
    )
    assert session_at(CME_PRE, utc("2026-03-08T21:44")) == pre_friday
    pre_monday = window(
        "2026-03-09", "2026-03-08T21:45", "2026-03-08T22:00", "2026-03-09T21:00", "2026-03-09T21:45"
    )
    assert session_at(CME_PRE, utc("2026-03-08T21:45")) == pre_monday


def test_across_fall_back() -> None:
    ny_friday = window(  # Fri 04:00, 09:30, 16:00 EDT .. Mon 04:00 EST
        "2026-10-30", "2026-10-30T08:00", "2026-10-30T13:30", "2026-10-30T20:00", "2026-11-02T09:00"
    )
    assert session_at(NY, utc("2026-11-01T12:00")) == ny_friday  # Sun 07:00 EST
    cme_friday = window(  # Thu 17:00 CDT .. Fri 16:00 CDT .. Sun 17:00 CST
        "2026-10-30", "2026-10-29T22:00", "2026-10-29T22:00", "2026-10-30T21:00", "2026-11-01T23:00"
    )
    assert session_at(CME, utc("2026-10-31T12:00")) == cme_friday
    cme_monday = window(  # Sun 17:00 CST .. Mon 16:00 CST .. Mon 17:00 CST
        "2026-11-02", "2026-11-01T23:00", "2026-11-01T23:00", "2026-11-02T22:00", "2026-11-02T23:00"
    )
    assert session_at(CME, utc("2026-11-01T23:00")) == cme_monday  # Sun 17:00 CST
    pre_monday = window(  # Sun 16:45 CST, 17:00 CST .. Mon 16:00 CST .. Mon 16:45 CST
        "2026-11-02", "2026-11-01T22:45", "2026-11-01T23:00", "2026-11-02T22:00", "2026-11-02T22:45"
    )
    assert session_at(CME_PRE, utc("2026-11-01T22:45")) == pre_monday


def test_times_in_a_gap_or_a_fold_use_fold_0() -> None:
    # 02:30 does not exist in New York on 2026-03-08: read with EST it is 07:30 UTC (03:30 EDT).
    gap = parse_calendar("America/New_York", "02:30-12:00", "Sun")
    assert session_at(gap, utc("2026-03-08T12:00")).open_ns == utc("2026-03-08T07:30")
    # 01:30 happens twice in New York on 2026-11-01: the first time, EDT, 05:30 UTC.
    fold = parse_calendar("America/New_York", "01:30-12:00", "Sun")
    assert session_at(fold, utc("2026-11-01T12:00")).open_ns == utc("2026-11-01T05:30")
    pre_fold = parse_calendar("America/New_York", "03:00-12:00", "Sun", "01:30")
    assert session_at(pre_fold, utc("2026-11-01T12:00")).start_ns == utc("2026-11-01T05:30")  # 01:30 EDT


def test_pre_open_in_a_gap_after_the_open_starts_at_the_open() -> None:
    # 02:30 read as 03:30 EDT (07:30 UTC) is after the 03:00 EDT open (07:00 UTC): the session starts there.
    sunday = session_at(PRE_OPEN_IN_GAP, utc("2026-03-08T07:00"))
    assert (sunday.day, sunday.start_ns, sunday.open_ns) == (
        day("2026-03-08"),
        utc("2026-03-08T07:00"),
        utc("2026-03-08T07:00"),
    )
    assert session_at(PRE_OPEN_IN_GAP, utc("2026-03-08T06:59")).day == day("2026-03-07")  # Sun 01:59 EST
    assert market_status(PRE_OPEN_IN_GAP, utc("2026-03-08T07:00")) == ("open", utc("2026-03-08T16:00"))
    assert market_status(PRE_OPEN_IN_GAP, utc("2026-03-08T06:59")) == ("closed", utc("2026-03-08T07:00"))


# 24/7 calendars: one session per local calendar day.


def test_utc_days_roll_at_midnight() -> None:
    last = utc("2026-01-06T23:59:59") + 999_999_999
    assert session_at(UTC_DAYS, last) == window(
        "2026-01-06", "2026-01-06", "2026-01-06", "2026-01-07", "2026-01-07"
    )
    assert session_at(UTC_DAYS, last + 1) == window(
        "2026-01-07", "2026-01-07", "2026-01-07", "2026-01-08", "2026-01-08"
    )
    assert market_status(UTC_DAYS, last) == ("open", 0)


def test_always_open_rolls_at_local_midnight() -> None:
    # Tokyo is UTC+9: 2026-01-07 00:00 JST is 2026-01-06 15:00 UTC.
    assert session_at(TOKYO_ALWAYS, utc("2026-01-06T14:59:59")).day == day("2026-01-06")
    assert session_at(TOKYO_ALWAYS, utc("2026-01-06T15:00")) == window(
        "2026-01-07", "2026-01-06T15:00", "2026-01-06T15:00", "2026-01-07T15:00", "2026-01-07T15:00"
    )
    # New York's 2026-03-08 lasts 23 hours: 00:00 EST to 00:00 EDT.
    ny_always = parse_calendar("America/New_York", "24/7")
    assert session_at(ny_always, utc("2026-03-08T12:00")) == window(
        "2026-03-08", "2026-03-08T05:00", "2026-03-08T05:00", "2026-03-09T04:00", "2026-03-09T04:00"
    )


@given(TIMES | st.integers(min_value=0, max_value=2**62))
def test_utc_days_is_the_utc_day(t: int) -> None:
    session = session_at(UTC_DAYS, t)
    assert session.day == t // NS_PER_DAY
    start, end = session.day * NS_PER_DAY, (session.day + 1) * NS_PER_DAY
    assert (session.start_ns, session.open_ns, session.close_ns, session.next_start_ns) == (
        start,
        start,
        end,
        end,
    )


# Other shapes.


def test_back_to_back_sessions_stay_open_until_the_weekend() -> None:
    # FX, "17:00-17:00" New York: Monday's session opens Sunday 17:00, the last closes Friday 17:00.
    assert session_at(FX, utc("2026-01-11T22:00")) == window(  # Sun 17:00 .. Mon 17:00
        "2026-01-12", "2026-01-11T22:00", "2026-01-11T22:00", "2026-01-12T22:00", "2026-01-12T22:00"
    )
    assert market_status(FX, utc("2026-01-06T17:00")) == ("open", utc("2026-01-09T22:00"))  # Tue 12:00
    assert market_status(FX, utc("2026-01-09T22:00")) == ("closed", utc("2026-01-11T22:00"))  # Fri 17:00
    every_day = parse_calendar("America/New_York", "17:00-17:00", "Mon-Sun")
    assert market_status(every_day, utc("2026-01-06T17:00")) == ("open", 0)


def test_one_trading_day_a_week_and_the_epoch() -> None:
    # Sundays only, London (UTC+0 in winter): a Wednesday belongs to the Sunday before.
    sunday = window(
        "2026-01-04", "2026-01-04T10:00", "2026-01-04T10:00", "2026-01-04T14:00", "2026-01-11T10:00"
    )
    assert session_at(SUNDAYS, utc("2026-01-07T12:00")) == sunday
    # 1970-01-01 was a Thursday; 1969-12-28 10:00 London was 09:00 UTC (British Standard Time, UTC+1).
    assert session_at(SUNDAYS, 0) == window(
        "1969-12-28", "1969-12-28T09:00", "1969-12-28T09:00", "1969-12-28T13:00", "1970-01-04T09:00"
    )


# SessionClock: the same windows as session_at, remembered.


@given(st.sampled_from(CALENDARS), st.lists(TIMES, max_size=50), st.booleans())
def test_session_clock_agrees_with_session_at(
    calendar: TradingCalendar, times: list[int], ordered: bool
) -> None:
    clock = SessionClock(calendar)
    for t in sorted(times) if ordered else times:
        assert clock.window(t) == session_at(calendar, t)


@given(st.sampled_from(CALENDARS), TIMES, st.lists(st.integers(-3 * NS_PER_DAY, 3 * NS_PER_DAY), max_size=30))
def test_session_clock_near_one_time(calendar: TradingCalendar, start: int, steps: list[int]) -> None:
    clock = SessionClock(calendar)
    for step in steps:  # walks forwards and backwards across session boundaries
        start += step
        assert clock.window(start) == session_at(calendar, start)


def test_session_clock_keeps_the_window() -> None:
    clock = SessionClock(NY)
    first = clock.window(utc("2026-01-06T15:00"))  # Tue 10:00
    assert first == NY_TUESDAY
    assert clock.window(first.start_ns) is first  # Tue 04:00: the pre-open is inside
    assert clock.window(first.next_start_ns - 1) is first
    assert clock.window(first.next_start_ns) == session_at(NY, first.next_start_ns) != first
    assert clock.window(first.start_ns) is not first
    assert clock.window(first.start_ns) == first
    assert clock.window(first.start_ns - 1) == NY_MONDAY
    assert clock.calendar is NY


@given(st.sampled_from(CALENDARS), TIMES)
def test_session_clock_at_the_edges(calendar: TradingCalendar, t: int) -> None:
    clock, w = SessionClock(calendar), session_at(calendar, t)
    edges = (w.next_start_ns - 1, w.next_start_ns, w.start_ns, w.start_ns - 1, w.open_ns, w.open_ns - 1)
    for at in (t, *edges, w.close_ns, w.close_ns - 1):  # back and forth
        assert clock.window(at) == session_at(calendar, at)


@given(st.sampled_from(CALENDARS), TIMES)
def test_windows_and_status_are_consistent(calendar: TradingCalendar, t: int) -> None:
    session = session_at(calendar, t)
    assert session.start_ns <= t < session.next_start_ns
    assert session.start_ns <= session.open_ns < session.close_ns <= session.next_start_ns
    assert session_at(calendar, session.start_ns) == session
    assert session_at(calendar, session.next_start_ns - 1) == session
    status, until = market_status(calendar, t)
    if until:
        assert until > t
        assert market_status(calendar, until - 1)[0] == status
        assert market_status(calendar, until)[0] != status
    else:
        assert status == "open"
    if status == "pre_open":  # from the start (the pre-open) until the open
        assert session.start_ns <= t < session.open_ns == until
    elif status == "open":  # until the close, or a later one for back-to-back sessions
        assert session.open_ns <= t < session.close_ns <= until or until == 0
    else:  # from the close until the next session's start
        assert session.close_ns <= t < session.next_start_ns == until


# parse_calendar and the text forms.


def test_parse_defaults() -> None:
    assert TradingCalendar("America/New_York", time(9, 30), time(16), (1, 2, 3, 4, 5), time(4)) == NY
    assert parse_calendar("UTC", "24/7") == UTC_DAYS
    assert CME_PRE_AT_CLOSE.pre_open == time(16)  # overnight: a pre-open at the close is allowed
    assert parse_calendar("UTC", "24/7", "mon-sun") == UTC_DAYS
    assert parse_calendar("UTC", "09:00-17:00").days == (1, 2, 3, 4, 5)
    assert parse_calendar("UTC", "09:00-17:00", []).days == (1, 2, 3, 4, 5)
    assert parse_calendar("Asia/Riyadh", "10:00-15:00", "Sun-Thu").days == (1, 2, 3, 4, 7)
    assert parse_calendar("UTC", "09:00-17:00", "fri, mon-tue").days == (1, 2, 5)
    assert parse_calendar("UTC", "09:00-17:00", rpb.TradingCalendar(days=[5, 1, 3]).days).days == (1, 3, 5)


def test_properties() -> None:
    assert (NY.always_open, NY.overnight, CME.overnight, FX.overnight) == (False, False, True, True)
    assert CME_PRE.overnight and not NY_PLAIN.overnight
    assert (UTC_DAYS.always_open, UTC_DAYS.overnight) == (True, False)
    assert NY.zone is NY.zone and NY.zone.key == "America/New_York"
    assert hash(NY) == hash(parse_calendar("America/New_York", "09:30-16:00", [1, 2, 3, 4, 5], "04:00"))
    assert {NY: 1}[parse_calendar("America/New_York", "09:30-16:00", "", "04:00")] == 1


@pytest.mark.parametrize(
    ("calendar", "hours", "days", "pre_open"),
    [
        (NY, "09:30-16:00", "Mon-Fri", "04:00"),
        (CME, "17:00-16:00", "Mon-Fri", ""),
        (CME_PRE, "17:00-16:00", "Mon-Fri", "16:45"),
        (UTC_DAYS, "24/7", "Mon-Sun", ""),
        (SUNDAYS, "10:00-14:00", "Sun", ""),
        (parse_calendar("UTC", "00:00-23:59", "Wed,Mon,Fri"), "00:00-23:59", "Mon,Wed,Fri", ""),
        (parse_calendar("UTC", "09:00-17:00", "Sun-Thu"), "09:00-17:00", "Mon,Tue,Wed,Thu,Sun", ""),
        (parse_calendar("UTC", "09:00-17:00", "Sat-Sun"), "09:00-17:00", "Sat-Sun", ""),
    ],
)
def test_text_forms(calendar: TradingCalendar, hours: str, days: str, pre_open: str) -> None:
    assert (calendar.hours_text(), calendar.days_text(), calendar.pre_open_text()) == (hours, days, pre_open)


MINUTES = st.builds(time, st.integers(0, 23), st.integers(0, 59))


@given(
    st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]),
    st.one_of(st.none(), st.tuples(MINUTES, MINUTES, st.one_of(st.none(), MINUTES))),
    st.sets(st.integers(1, 7), min_size=1),
)
def test_text_round_trip(zone: str, hours: tuple[time, time, time | None] | None, days: set[int]) -> None:
    if hours is None:
        calendar = TradingCalendar(zone, None, None, (1, 2, 3, 4, 5, 6, 7))
    else:
        open_at, close_at, pre_open = hours
        overnight = close_at <= open_at
        valid = pre_open is not None and pre_open < open_at and not (overnight and pre_open < close_at)
        pre_open = pre_open if valid else None
        calendar = TradingCalendar(zone, open_at, close_at, tuple(sorted(days)), pre_open)
    text = (calendar.hours_text(), calendar.days_text(), calendar.pre_open_text())
    assert parse_calendar(calendar.timezone, *text) == calendar
    assert parse_calendar(calendar.timezone, text[0], calendar.days, text[2]) == calendar


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("Mars/Base", "24/7"), "timezone: unknown time zone 'Mars/Base'"),
        (("America", "24/7"), "timezone: unknown time zone 'America'"),
        (("/etc/localtime", "24/7"), "timezone: unknown time zone '/etc/localtime'"),
        (("", "24/7"), "timezone: unknown time zone ''"),
        (
            ("UTC", "9:30-16:00"),
            "hours: '9:30-16:00' is not 'HH:MM-HH:MM' (24-hour clock, 00:00 to 23:59) or '24/7'",
        ),
        (("UTC", "09:30-24:00"), "hours: '09:30-24:00' is not 'HH:MM-HH:MM'"),
        (("UTC", "09:30-16:60"), "hours: '09:30-16:60' is not 'HH:MM-HH:MM'"),
        (("UTC", "09:30"), "hours: '09:30' is not 'HH:MM-HH:MM'"),
        (("UTC", ""), "hours: '' is not 'HH:MM-HH:MM'"),
        (("UTC", "24/5"), "hours: '24/5' is not 'HH:MM-HH:MM'"),
        (
            ("UTC", "09:30-16:00", "Mon-Fry"),
            "days: unknown weekday 'Fry' in 'Mon-Fry' (use Mon Tue Wed Thu Fri Sat Sun)",
        ),
        (("UTC", "09:30-16:00", "Mon-"), "days: unknown weekday '' in 'Mon-'"),
        (("UTC", "09:30-16:00", "Monday"), "days: unknown weekday 'Monday' in 'Monday'"),
        (("UTC", "09:30-16:00", "Mon-Fri,Wed"), "days: 'Mon-Fri,Wed' names a weekday twice"),
        (("UTC", "09:30-16:00", [1, 1]), "days: [1, 1] names a weekday twice"),
        (("UTC", "09:30-16:00", [0, 1]), "days: 0 is not an ISO weekday (1 = Monday .. 7 = Sunday)"),
        (("UTC", "09:30-16:00", [8]), "days: 8 is not an ISO weekday (1 = Monday .. 7 = Sunday)"),
        (("UTC", "24/7", "Mon-Fri"), "days: Mon-Fri with '24/7' hours (24/7 trades all seven days: Mon-Sun)"),
        (("UTC", "24/7", [1, 3]), "days: Mon,Wed with '24/7' hours"),
        (("UTC", "24/7", "", "04:00"), "pre_open: 04:00 is not allowed with '24/7' hours"),
        (("UTC", "09:30-16:00", "", "10:00"), "pre_open: 10:00 is not before the open 09:30"),
        (("UTC", "09:30-16:00", "", "09:30"), "pre_open: 09:30 is not before the open 09:30"),
        (("UTC", "17:00-16:00", "", "18:00"), "pre_open: 18:00 is not before the open 17:00"),
        (
            ("America/Chicago", "17:00-16:00", "Mon-Fri", "15:59"),
            "pre_open: 15:59 is before the close 16:00 of the session before",
        ),
        (
            ("UTC", "17:00-16:00", "", "04:00"),
            "pre_open: 04:00 is before the close 16:00 of the session before",
        ),
        (
            ("UTC", "17:00-17:00", "", "16:59"),
            "pre_open: 16:59 is before the close 17:00 of the session before",
        ),
        (
            ("UTC", "09:30-16:00", "", "4:00"),
            "pre_open: '4:00' is not 'HH:MM' (24-hour clock, 00:00 to 23:59)",
        ),
    ],
)
def test_parse_errors(arguments: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_calendar(*arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("UTC", time(9), None, (1,)), "hours: open and close must both be set, or both be None for 24/7"),
        (("UTC", time(9, 0, 30), time(16), (1,)), "hours: datetime.time(9, 0, 30) is not a whole minute"),
        (("UTC", time(9, tzinfo=UTC), time(16), (1,)), "hours: datetime.time(9, 0, tzinfo="),
        (("UTC", time(9), time(16), ()), "days: () are not ascending, unique ISO weekdays"),
        (("UTC", time(9), time(16), (3, 1)), "days: (3, 1) are not ascending, unique ISO weekdays"),
        (("UTC", time(9), time(16), (1, 1)), "days: (1, 1) are not ascending"),
        (("UTC", time(9), time(16), (0, 1)), "days: (0, 1) are not ascending"),
        (("UTC", time(9), time(16), (7, 8)), "days: (7, 8) are not ascending"),
        (
            ("UTC", time(17), time(16), (1,), time(9)),
            "pre_open: 09:00 is before the close 16:00 of the session before",
        ),
    ],
)
def test_constructor_errors(arguments: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        TradingCalendar(*arguments)  # type: ignore[arg-type]


# Thanksgiving, Thursday 2026-11-26: New York does not trade.
NY_HOLIDAYS = parse_calendar("America/New_York", "09:30-16:00", "Mon-Fri", "04:00", "2026-11-26;2026-12-25")


def test_a_holiday_has_no_session_the_one_before_runs_on() -> None:
    wednesday = session_at(NY_HOLIDAYS, utc("2026-11-25T15:00"))  # Wed 10:00 EST
    assert wednesday == window(
        "2026-11-25", "2026-11-25T09:00", "2026-11-25T14:30", "2026-11-25T21:00", "2026-11-27T09:00"
    )  # from Wed 04:00 to Fri 04:00: Thursday has no session
    assert session_at(NY_HOLIDAYS, utc("2026-11-26T16:00")) == wednesday  # Thu 11:00
    assert session_at(NY_HOLIDAYS, utc("2026-11-27T09:00")).day == day("2026-11-27")  # Fri 04:00
    # On the holiday the market is closed until Friday's pre-open.
    assert market_status(NY_HOLIDAYS, utc("2026-11-26T16:00")) == ("closed", utc("2026-11-27T09:00"))
    # Christmas is a Friday: Thursday's session runs on to Monday's pre-open.
    assert session_at(NY_HOLIDAYS, utc("2026-12-25T16:00")).next_start_ns == utc("2026-12-28T09:00")


def test_holidays_in_their_text_forms() -> None:
    assert NY_HOLIDAYS.holiday_dates() == ["2026-11-26", "2026-12-25"]
    assert parse_calendar("UTC", "09:00-17:00", holidays=["2026-01-01"]).holiday_dates() == ["2026-01-01"]
    with pytest.raises(ValueError, match="holidays: not allowed with '24/7' hours"):
        parse_calendar("UTC", "24/7", holidays=["2026-01-01"])
    with pytest.raises(ValueError, match=r"holidays: '26/11/2026' is not a date \(YYYY-MM-DD\)"):
        parse_calendar("America/New_York", "09:30-16:00", holidays="26/11/2026")
    with pytest.raises(ValueError, match="holidays: 2001 dates; at most 2000"):
        TradingCalendar("UTC", time(9), time(17), ALL_DAYS, holidays=frozenset(range(2_001)))
