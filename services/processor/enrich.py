"""The business rules: how one tick changes an instrument's state. Pure: no I/O, no clock.

Every rule is a small function over immutable values, so a state can be rebuilt from any
starting point and a failed batch is undone by simply dropping the new values.

Rules, as tapewire defines them:
- **version** counts the ticks applied to the instrument: +1 for every tick, trade or quote.
- **mid** = (bid + ask) / 2; **spread** = ask - bid; **spread_bps** = spread / mid * 10 000.
- **session**: one UTC calendar day of exchange time. The first trade of a day opens it;
  high, low, volume (sum of sizes), turnover (sum of price * size, exact) and trade count
  accumulate over its trades; **vwap** = turnover / volume; **change** = last - open and
  **change_pct** = change / open * 100.
- **bars**: OHLCV over trades in [start, start + interval) by exchange time, for 1 s and 1 min.
  Bars never reopen: a late trade (exchange time before the current bar, or session) counts
  in the current one, as a stream with zero allowed lateness does.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from tapewire.decimals import CONTEXT
from tapewire.ticks import Quote, RawTick, Trade

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
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
    day: int
    open: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    turnover: Decimal
    trade_count: int


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


def apply(state: State | None, tick: RawTick, source: Position) -> State:
    """The state after `tick`; `state` is None for an instrument's first tick."""
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
    changes = trade_changes(state, tick) if isinstance(tick, Trade) else quote_changes(tick)
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


def trade_changes(state: State, trade: Trade) -> dict[str, Any]:
    """What a trade changes: the last trade, the session and both bars."""
    return {
        "last_price": trade.price,
        "last_size": trade.size,
        "last_trade_time_ns": trade.exchange_time_ns,
        "session": next_session(state.session, trade),
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


def next_session(session: TradingSession | None, trade: Trade) -> TradingSession:
    """The session after a trade: a new one on a later UTC day, else the running one updated."""
    day = trade.exchange_time_ns // NS_PER_DAY
    notional = CONTEXT.multiply(trade.price, trade.size)
    if session is None or day > session.day:
        return TradingSession(
            day=day,
            open=trade.price,
            high=trade.price,
            low=trade.price,
            volume=trade.size,
            turnover=notional,
            trade_count=1,
        )
    return TradingSession(
        day=session.day,
        open=session.open,
        high=max(session.high, trade.price),
        low=min(session.low, trade.price),
        volume=CONTEXT.add(session.volume, trade.size),
        turnover=CONTEXT.add(session.turnover, notional),
        trade_count=session.trade_count + 1,
    )


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


def change(session: TradingSession | None, last_price: Decimal | None) -> Decimal | None:
    if session is None or last_price is None:
        return None
    return CONTEXT.subtract(last_price, session.open)


def change_pct(session: TradingSession | None, last_price: Decimal | None) -> float:
    delta = change(session, last_price)
    if session is None or delta is None or session.open == 0:
        return 0.0
    return float(CONTEXT.divide(CONTEXT.multiply(delta, _PERCENT), session.open))
