"""The business rules: how one tick changes an instrument's state. Pure: no I/O, no clock.

Every rule is a small function over immutable values, so a state can be rebuilt from any
starting point and a failed batch is undone by simply dropping the new values.

Rules, as tapewire defines them:
- **version** counts the ticks applied to the instrument: +1 for every tick, trade or quote.
- **mid** = (bid + ask) / 2; **spread** = ask - bid; **spread_bps** = spread / mid * 10 000.
- **session**: follows the instrument's trading calendar (tapewire/reference/calendar.py; an
  instrument without one trades one UTC calendar day per session). A session runs from its
  start (its pre-open, else its open) to the next session's, so pre-market trades count in the
  session they lead into and after-hours trades in the session they follow. The first trade of
  a session, pre-market included, opens it; high, low, volume (sum of sizes), turnover
  (sum of price * size, exact) and trade count accumulate over its trades; **vwap** =
  turnover / volume.
- **close**: a session's last trade in its regular hours, from its scheduled open to its
  scheduled close inclusive (extended-hours trades do not move it). When the next session
  starts, it becomes that session's **previous close**; a session without a trade in regular
  hours passes its own previous close on. **change** = last - previous close and
  **change_pct** = change / previous close * 100; without a previous close (an instrument's
  first session) both are from the session's open, and the state says which (`change_basis`).
- **bars**: OHLCV over trades in [start, start + interval) by exchange time, for 1 s and 1 min.
  Bars never reopen: a late trade (exchange time before the current bar, or session) counts
  in the current one, as a stream with zero allowed lateness does.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from tapewire.decimals import CONTEXT
from tapewire.reference.calendar import UTC_DAYS, SessionClock, SessionWindow
from tapewire.ticks import Quote, RawTick, Trade

NS_PER_SECOND = 1_000_000_000
BAR_1S_NS = NS_PER_SECOND
BAR_1M_NS = 60 * NS_PER_SECOND
# VWAP and ratios are rounded to this many decimal places (prices themselves are exact).
DERIVED_DECIMAL_PLACES = Decimal("1e-10")
_TWO = Decimal(2)
_BPS = Decimal(10_000)
_PERCENT = Decimal(100)


@dataclass(frozen=True, slots=True)
class Bar:
    start_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int


@dataclass(frozen=True, slots=True)
class TradingSession:
    day: int  # the trading date, days since 1970-01-01
    open: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    turnover: Decimal
    trade_count: int
    close: Decimal | None = None  # its last trade in regular hours (scheduled open to close), so far
    previous_close: Decimal | None = None
    # When it started, by the calendar it opened under (0: a state written before this was kept).
    # A trade rolls the session when it falls in a session that starts later: that holds across a
    # change of calendar, where trading dates alone can run backwards (UTC days, then New York's).
    start_ns: int = 0


@dataclass(frozen=True, slots=True)
class Position:
    """Where a tick was read from: partition and offset in the raw topic."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class State:
    instrument: str
    venue: str
    version: int
    last_sequence: int
    source: Position
    exchange_ns: int
    ingest_ns: int
    last_price: Decimal | None = None
    last_size: Decimal | None = None
    last_trade_time_ns: int = 0
    bid_price: Decimal | None = None
    bid_size: Decimal | None = None
    ask_price: Decimal | None = None
    ask_size: Decimal | None = None
    session: TradingSession | None = None
    bar_1s: Bar | None = None
    bar_1m: Bar | None = None


# Sessions of instruments without a calendar: one per UTC day.
UTC_SESSIONS = SessionClock(UTC_DAYS)


def apply(
    state: State | None, tick: RawTick, source: Position, sessions: SessionClock = UTC_SESSIONS
) -> State:
    """The state after `tick`; `state` is None for an instrument's first tick. `sessions` is the
    instrument's trading calendar."""
    if state is None:
        state = State(
            instrument=tick.instrument,
            venue=tick.venue,
            version=0,
            last_sequence=0,
            source=source,
            exchange_ns=0,
            ingest_ns=0,
        )
    changes = trade_changes(state, tick, sessions) if isinstance(tick, Trade) else quote_changes(tick)
    changes.update(
        venue=tick.venue or state.venue,
        version=state.version + 1,
        last_sequence=tick.sequence,
        source=source,
        exchange_ns=tick.exchange_time_ns,
        ingest_ns=tick.ingest_time_ns,
    )
    return _evolve(state, changes)


def quote_changes(quote: Quote) -> dict[str, Any]:
    """What a quote changes: the best bid and ask."""
    return {
        "bid_price": quote.bid_price,
        "bid_size": quote.bid_size,
        "ask_price": quote.ask_price,
        "ask_size": quote.ask_size,
    }


def trade_changes(state: State, trade: Trade, sessions: SessionClock = UTC_SESSIONS) -> dict[str, Any]:
    """What a trade changes: the last trade, the session and both bars."""
    return {
        "last_price": trade.price,
        "last_size": trade.size,
        "last_trade_time_ns": trade.exchange_time_ns,
        "session": next_session(state.session, trade, sessions),
        "bar_1s": next_bar(state.bar_1s, trade, BAR_1S_NS),
        "bar_1m": next_bar(state.bar_1m, trade, BAR_1M_NS),
    }


_STATE_FIELDS = tuple(f.name for f in fields(State))


def _evolve(state: State, changes: dict[str, Any]) -> State:
    """`dataclasses.replace` without its per-call introspection: this runs once per tick."""
    new = object.__new__(State)
    for name in _STATE_FIELDS:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(state, name))
    return new


def next_session(
    session: TradingSession | None, trade: Trade, sessions: SessionClock = UTC_SESSIONS
) -> TradingSession:
    """The session after a trade: a new one when the trade falls in a later session of the
    calendar, else the running one updated (a late trade from an earlier session counts in the
    running one, as bars do, but never moves its close)."""
    window = sessions.window(trade.exchange_time_ns)
    in_hours = window.open_ns <= trade.exchange_time_ns <= window.close_ns  # regular hours: it may close
    notional = CONTEXT.multiply(trade.price, trade.size)
    if session is None or _later(window, session):
        previous_close = None if session is None else _closing(session)
        return TradingSession(
            day=window.day,
            open=trade.price,
            high=trade.price,
            low=trade.price,
            volume=trade.size,
            turnover=notional,
            trade_count=1,
            close=trade.price if in_hours else None,
            previous_close=previous_close,
            start_ns=window.start_ns,
        )
    return TradingSession(
        day=session.day,
        open=session.open,
        high=max(session.high, trade.price),
        low=min(session.low, trade.price),
        volume=CONTEXT.add(session.volume, trade.size),
        turnover=CONTEXT.add(session.turnover, notional),
        trade_count=session.trade_count + 1,
        close=trade.price if in_hours and _same(window, session) else session.close,
        previous_close=session.previous_close,
        start_ns=session.start_ns,
    )


def _later(window: SessionWindow, session: TradingSession) -> bool:
    """Whether `window` is a session after `session` (by trading date for a session of unknown start)."""
    return window.start_ns > session.start_ns if session.start_ns else window.day > session.day


def _same(window: SessionWindow, session: TradingSession) -> bool:
    return window.start_ns == session.start_ns if session.start_ns else window.day == session.day


def _closing(session: TradingSession) -> Decimal | None:
    """What a finished session hands on as the previous close: its close, or without a trade in
    regular hours, the previous close it had itself."""
    return session.close if session.close is not None else session.previous_close


def bar_start(time_ns: int, interval_ns: int) -> int:
    return time_ns - time_ns % interval_ns


def next_bar(bar: Bar | None, trade: Trade, interval_ns: int) -> Bar:
    """The bar a trade falls into: a new one when it starts a later interval, else the current one."""
    start = bar_start(trade.exchange_time_ns, interval_ns)
    if bar is None or start > bar.start_ns:
        return Bar(
            start_ns=start,
            open=trade.price,
            high=trade.price,
            low=trade.price,
            close=trade.price,
            volume=trade.size,
            trade_count=1,
        )
    return Bar(
        start_ns=bar.start_ns,
        open=bar.open,
        high=max(bar.high, trade.price),
        low=min(bar.low, trade.price),
        close=trade.price,
        volume=CONTEXT.add(bar.volume, trade.size),
        trade_count=bar.trade_count + 1,
    )


def mid(bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    if bid is None or ask is None:
        return None
    return CONTEXT.divide(CONTEXT.add(bid, ask), _TWO)


def spread(bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    if bid is None or ask is None:
        return None
    return CONTEXT.subtract(ask, bid)


def spread_bps(bid: Decimal | None, ask: Decimal | None) -> float:
    middle = mid(bid, ask)
    width = spread(bid, ask)
    if middle is None or width is None or middle == 0:
        return 0.0
    return float(CONTEXT.divide(CONTEXT.multiply(width, _BPS), middle))


def vwap(session: TradingSession | None) -> Decimal | None:
    if session is None or session.volume == 0:
        return None
    return CONTEXT.divide(session.turnover, session.volume).quantize(DERIVED_DECIMAL_PLACES, context=CONTEXT)


def change_basis(session: TradingSession | None) -> Decimal | None:
    """What change is measured from: the previous close, else the session's open."""
    if session is None:
        return None
    return session.previous_close if session.previous_close is not None else session.open


def change(session: TradingSession | None, last_price: Decimal | None) -> Decimal | None:
    basis = change_basis(session)
    if basis is None or last_price is None:
        return None
    return CONTEXT.subtract(last_price, basis)


def change_pct(session: TradingSession | None, last_price: Decimal | None) -> float:
    basis = change_basis(session)
    delta = change(session, last_price)
    if basis is None or delta is None or basis == 0:
        return 0.0
    return float(CONTEXT.divide(CONTEXT.multiply(delta, _PERCENT), basis))
