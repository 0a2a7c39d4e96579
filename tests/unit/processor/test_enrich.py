"""The business rules, against values computed by hand."""

from __future__ import annotations

from decimal import Decimal as D

from services.processor.enrich import (
    BAR_1M_NS,
    NS_PER_SECOND,
    Position,
    State,
    apply,
    bar_start,
    change,
    change_pct,
    mid,
    spread,
    spread_bps,
    vwap,
)
from tapewire.reference.calendar import NS_PER_DAY
from tapewire.ticks import Quote, Trade

# 2025-11-20 14:30:00 UTC, on a whole minute.
T0 = 1_763_649_000 * NS_PER_SECOND


def trade(price: str, size: str, at_ns: int, seq: int = 1) -> Trade:
    return Trade("AAPL", "XNAS", D(price), D(size), seq, at_ns, at_ns + 1000)


def quote(bid: str, ask: str, at_ns: int = T0, seq: int = 1) -> Quote:
    return Quote("AAPL", "XNAS", D(bid), D("100"), D(ask), D("200"), seq, at_ns, at_ns + 1000)


def run(*ticks: Trade | Quote) -> State:
    state = None
    for offset, tick in enumerate(ticks):
        state = apply(state, tick, Position(0, offset))
    assert state is not None
    return state


def test_mid_spread_and_bps() -> None:
    assert mid(D("100.00"), D("100.02")) == D("100.01")
    assert spread(D("100.00"), D("100.02")) == D("0.02")
    # 0.02 / 100.01 * 10000 = 1.99980001999800...
    assert abs(spread_bps(D("100.00"), D("100.02")) - 1.9998000199980002) < 1e-12
    assert mid(None, D("1")) is None
    assert spread_bps(None, None) == 0.0


def test_vwap_over_three_trades() -> None:
    state = run(trade("10", "100", T0), trade("11", "200", T0 + 1), trade("12", "100", T0 + 2))
    # (10*100 + 11*200 + 12*100) / 400 = 4400 / 400 = 11
    assert state.session is not None
    assert state.session.turnover == D("4400")
    assert state.session.volume == D("400")
    assert vwap(state.session) == D("11")


def test_vwap_keeps_decimal_precision() -> None:
    state = run(trade("0.1", "3", T0), trade("0.2", "3", T0 + 1))
    # (0.3 + 0.6) / 6 = 0.15 exactly; binary floats would give 0.15000000000000002
    assert vwap(state.session) == D("0.15")


def test_session_stats_and_change() -> None:
    state = run(
        trade("100", "1", T0), trade("104", "1", T0 + 1), trade("98", "1", T0 + 2), trade("101", "1", T0 + 3)
    )
    session = state.session
    assert session is not None
    assert (session.open, session.high, session.low, session.trade_count) == (D("100"), D("104"), D("98"), 4)
    assert change(session, state.last_price) == D("1")
    assert change_pct(session, state.last_price) == 1.0


def test_new_utc_day_starts_a_new_session() -> None:
    next_day = (T0 // NS_PER_DAY + 1) * NS_PER_DAY
    state = run(trade("100", "5", T0), trade("90", "2", next_day + 5))
    assert state.session is not None
    assert state.session.day == next_day // NS_PER_DAY
    assert (state.session.open, state.session.volume, state.session.trade_count) == (D("90"), D("2"), 1)
    # The day before closed at 100: change is from there, not from today's open.
    assert state.session.previous_close == D("100")
    assert change(state.session, state.last_price) == D("-10")
    assert change_pct(state.session, state.last_price) == -10.0


def test_bars_across_a_minute_boundary() -> None:
    state_before = run(
        trade("10", "1", T0 + 58 * NS_PER_SECOND),
        trade("12", "2", T0 + 59 * NS_PER_SECOND + 500_000_000),
        trade("9", "1", T0 + 59 * NS_PER_SECOND + 900_000_000),
    )
    bar = state_before.bar_1m
    assert bar is not None
    assert (bar.start_ns, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count) == (
        T0,
        D("10"),
        D("12"),
        D("9"),
        D("9"),
        D("4"),
        3,
    )
    assert state_before.bar_1s is not None
    assert state_before.bar_1s.start_ns == T0 + 59 * NS_PER_SECOND
    assert state_before.bar_1s.volume == D("3")

    after = apply(state_before, trade("11", "7", T0 + BAR_1M_NS + 1), Position(0, 99))
    assert after.bar_1m is not None
    assert (after.bar_1m.start_ns, after.bar_1m.open, after.bar_1m.volume, after.bar_1m.trade_count) == (
        T0 + BAR_1M_NS,
        D("11"),
        D("7"),
        1,
    )
    assert after.bar_1s is not None and after.bar_1s.start_ns == T0 + BAR_1M_NS


def test_late_trade_counts_in_the_current_bar() -> None:
    state = run(trade("10", "1", T0 + 5 * NS_PER_SECOND), trade("20", "1", T0 + 2 * NS_PER_SECOND))
    assert state.bar_1s is not None
    assert (state.bar_1s.start_ns, state.bar_1s.high, state.bar_1s.trade_count) == (
        T0 + 5 * NS_PER_SECOND,
        D("20"),
        2,
    )


def test_bar_start() -> None:
    assert bar_start(T0 + 61 * NS_PER_SECOND + 7, BAR_1M_NS) == T0 + BAR_1M_NS


def test_version_counts_every_tick_and_quotes_leave_trades_alone() -> None:
    state = run(quote("99", "101"), trade("100", "10", T0 + 1), quote("99.5", "100.5", T0 + 2))
    assert state.version == 3
    assert state.last_sequence == 1
    assert (state.bid_price, state.ask_price) == (D("99.5"), D("100.5"))
    assert state.last_price == D("100")
    assert state.session is not None and state.session.volume == D("10")
    assert state.source == Position(0, 2)


def test_apply_never_mutates_its_input() -> None:
    first = run(trade("10", "1", T0))
    second = apply(first, trade("11", "1", T0 + 1), Position(0, 1))
    assert first.version == 1 and first.last_price == D("10")
    assert second.version == 2 and second.last_price == D("11")
