"""Sessions by the instrument's calendar, previous close and change, against values computed by
hand (each instant is written in UTC with its local time beside it)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

from services.processor.enrich import Position, State, TradingSession, apply, change, change_pct
from tapewire.reference.calendar import SessionClock, parse_calendar
from tapewire.ticks import Trade

NEW_YORK = SessionClock(parse_calendar("America/New_York", "09:30-16:00", "Mon-Fri", "04:00"))
GLOBEX = SessionClock(parse_calendar("America/Chicago", "17:00-16:00", "Mon-Fri"))
CRYPTO = SessionClock(parse_calendar("UTC", "24/7"))


def utc(text: str) -> int:
    """Nanoseconds since the epoch of a UTC 'YYYY-MM-DD HH:MM[:SS]'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def day(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) // 86_400


def run(clock: SessionClock, *trades: tuple[str, str]) -> State:
    state: State | None = None
    for offset, (price, at) in enumerate(trades):
        state = apply(state, trade_at(price, at, offset + 1), Position(0, offset), clock)
    assert state is not None
    return state


def trade_at(price: str, at: str, sequence: int) -> Trade:
    return Trade("X", "XNAS", D(price), D("1"), sequence, utc(at), utc(at))


def session_of(state: State) -> TradingSession:
    assert state.session is not None
    return state.session


def test_new_york_session_starts_at_the_pre_open_and_closes_at_four() -> None:
    state = run(
        NEW_YORK,
        ("100", "2026-12-07 14:30"),  # Mon 09:30 New York
        ("102", "2026-12-07 21:00"),  # Mon 16:00: the closing print, still regular hours
        ("103", "2026-12-07 23:00"),  # Mon 18:00: after hours, in Monday's session, not its close
    )
    monday = session_of(state)
    assert monday.day == day("2026-12-07")
    assert (monday.open, monday.high, monday.close, monday.trade_count) == (D("100"), D("103"), D("102"), 3)
    assert monday.previous_close is None
    assert change(monday, state.last_price) == D("3")  # from the open: no previous close yet

    premarket = apply(state, trade_at("104", "2026-12-08 12:00", 4), Position(0, 4), NEW_YORK)  # Tue 07:00
    tuesday = session_of(premarket)
    assert (tuesday.day, tuesday.open, tuesday.trade_count, tuesday.close) == (
        day("2026-12-08"),
        D("104"),
        1,
        None,
    )
    assert tuesday.previous_close == D("102")  # Monday's 16:00 print, not the after-hours 103
    assert change(tuesday, premarket.last_price) == D("2")

    regular = apply(premarket, trade_at("101", "2026-12-08 14:30", 5), Position(0, 5), NEW_YORK)  # Tue 09:30
    assert session_of(regular).trade_count == 2 and session_of(regular).close == D("101")
    assert change(session_of(regular), regular.last_price) == D("-1")
    assert round(change_pct(session_of(regular), regular.last_price), 6) == round(-100 / 102, 6)


def test_friday_after_hours_and_the_weekend_stay_in_fridays_session() -> None:
    state = run(
        NEW_YORK,
        ("50", "2026-12-11 15:00"),  # Fri 10:00
        ("51", "2026-12-12 15:00"),  # Sat 10:00: no session starts on Saturday
        ("52", "2026-12-14 08:59"),  # Mon 03:59: still Friday's
    )
    assert session_of(state).day == day("2026-12-11")
    assert session_of(state).close == D("50")
    monday = run(NEW_YORK, ("50", "2026-12-11 15:00"), ("49", "2026-12-14 09:00"))  # Mon 04:00: Monday's
    assert (session_of(monday).day, session_of(monday).previous_close) == (day("2026-12-14"), D("50"))


def test_cme_session_opens_the_evening_before_its_trading_date() -> None:
    state = run(
        GLOBEX,
        ("6000.25", "2026-12-07 21:00"),  # Mon 15:00 Chicago: Monday's session
        ("6001.00", "2026-12-07 22:00"),  # Mon 16:00: Monday's close
        ("6002.50", "2026-12-07 22:30"),  # Mon 16:30: the break, after Monday's close
        ("6003.75", "2026-12-07 23:00"),  # Mon 17:00: Tuesday's session opens
    )
    tuesday = session_of(state)
    assert tuesday.day == day("2026-12-08")
    assert (tuesday.open, tuesday.trade_count, tuesday.previous_close) == (D("6003.75"), 1, D("6001.00"))
    assert change(tuesday, state.last_price) == D("2.75")


def test_cme_sunday_evening_opens_mondays_session_across_the_dst_change() -> None:
    # US daylight saving time starts on Sunday 2026-03-08: Friday's 16:00 CST close is 22:00
    # UTC, Sunday's 17:00 CDT open is 22:00 UTC too, an hour earlier in UTC than in winter.
    state = run(
        GLOBEX,
        ("5900", "2026-03-06 22:00"),  # Fri 16:00 CST: Friday's close
        ("5901", "2026-03-08 21:59"),  # Sun 16:59 CDT: still Friday's session
        ("5905", "2026-03-08 22:00"),  # Sun 17:00 CDT: Monday's session opens
    )
    monday = session_of(state)
    assert (monday.day, monday.open, monday.previous_close) == (day("2026-03-09"), D("5905"), D("5900"))


def test_new_york_pre_open_moves_an_hour_in_utc_with_daylight_saving() -> None:
    # Friday 2026-03-06 04:00 EST is 09:00 UTC; Monday 2026-03-09 04:00 EDT is 08:00 UTC.
    before = run(NEW_YORK, ("10", "2026-03-06 15:00"), ("11", "2026-03-09 07:59"))  # Mon 03:59 EDT
    assert session_of(before).day == day("2026-03-06")
    after = run(NEW_YORK, ("10", "2026-03-06 15:00"), ("11", "2026-03-09 08:00"))  # Mon 04:00 EDT
    assert (session_of(after).day, session_of(after).previous_close) == (day("2026-03-09"), D("10"))


def test_crypto_rolls_at_midnight_utc_every_day() -> None:
    state = run(
        CRYPTO,
        ("97000.00", "2026-12-12 12:00"),  # Saturday: 24/7 trades every day
        ("97100.50", "2026-12-12 23:59:59"),
        ("97050.25", "2026-12-13 00:00"),
    )
    sunday = session_of(state)
    assert (sunday.day, sunday.open, sunday.previous_close) == (
        day("2026-12-13"),
        D("97050.25"),
        D("97100.50"),
    )
    assert change(sunday, state.last_price) == D("-50.25")


def test_a_session_without_regular_hours_trades_passes_its_previous_close_on() -> None:
    state = run(
        NEW_YORK,
        ("20", "2026-12-07 15:00"),  # Mon 10:00: Monday closes at 20
        ("21", "2026-12-08 22:00"),  # Tue 17:00: Tuesday's session, after hours only
        ("22", "2026-12-09 15:00"),  # Wed 10:00
    )
    wednesday = session_of(state)
    assert wednesday.previous_close == D("20")


def test_a_late_trade_from_an_earlier_session_never_moves_the_close() -> None:
    state = run(
        NEW_YORK,
        ("30", "2026-12-08 15:00"),  # Tue 10:00
        ("99", "2026-12-07 15:00"),  # Mon 10:00, arriving late: counts in Tuesday, not its close
    )
    tuesday = session_of(state)
    assert (tuesday.day, tuesday.close, tuesday.high, tuesday.trade_count) == (
        day("2026-12-08"),
        D("30"),
        D("99"),
        2,
    )


def test_a_holiday_is_skipped_and_the_next_session_measures_from_the_day_before() -> None:
    thanksgiving = SessionClock(
        parse_calendar("America/New_York", "09:30-16:00", "Mon-Fri", "04:00", "2026-11-26")
    )
    state = run(
        thanksgiving,
        ("70", "2026-11-25 21:00"),  # Wed 16:00: Wednesday's close
        ("71", "2026-11-26 16:00"),  # Thu 11:00, Thanksgiving: a print in Wednesday's session, not its close
        ("72", "2026-11-27 14:30"),  # Fri 09:30
    )
    friday = session_of(state)
    assert (friday.day, friday.open, friday.previous_close) == (day("2026-11-27"), D("72"), D("70"))
    assert change(friday, state.last_price) == D("2")


def test_a_calendar_that_arrives_while_trading_rolls_at_its_own_next_start() -> None:
    # Trading on UTC days until the instrument's New York calendar arrives, on a US evening:
    # the UTC session dated 8 Dec must not swallow New York's session of 8 Dec.
    utc_days = apply(None, trade_at("50", "2026-12-08 01:00", 1), Position(0, 1))  # Mon 20:00 New York
    assert session_of(utc_days).day == day("2026-12-08")
    evening = apply(utc_days, trade_at("51", "2026-12-08 02:00", 2), Position(0, 2), NEW_YORK)  # Mon 21:00
    assert session_of(evening).trade_count == 2  # Monday evening in New York: still the running session
    tuesday = apply(evening, trade_at("52", "2026-12-08 09:00", 3), Position(0, 3), NEW_YORK)  # Tue 04:00
    session = session_of(tuesday)
    assert (session.day, session.open, session.trade_count) == (day("2026-12-08"), D("52"), 1)
    assert session.start_ns == utc("2026-12-08 09:00")
    # The UTC session closed at 50: 51 fell in New York's Monday session, after its close.
    assert session.previous_close == D("50")
