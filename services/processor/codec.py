"""State <-> tapewire.v1.InstrumentState: the wire form carries the derived values too."""

from __future__ import annotations

from decimal import Decimal

from tapewire import decimals
from tapewire.decimals import fmt
from tapewire.v1 import market_pb2 as pb

from .enrich import Bar, Position, Session, State, change, change_pct, mid, spread, spread_bps, vwap


def state_to_proto(state: State, processed_ns: int) -> pb.InstrumentState:
    session = state.session
    message = pb.InstrumentState(
        instrument=state.instrument,
        venue=state.venue,
        version=state.version,
        last_sequence=state.last_sequence,
        last_price=fmt(state.last_price),
        last_size=fmt(state.last_size),
        last_trade_time_ns=state.last_trade_time_ns,
        bid_price=fmt(state.bid_price),
        bid_size=fmt(state.bid_size),
        ask_price=fmt(state.ask_price),
        ask_size=fmt(state.ask_size),
        mid=fmt(mid(state.bid_price, state.ask_price)),
        spread=fmt(spread(state.bid_price, state.ask_price)),
        spread_bps=spread_bps(state.bid_price, state.ask_price),
        vwap=fmt(vwap(session)),
        change=fmt(change(session, state.last_price)),
        change_pct=change_pct(session, state.last_price),
        times=pb.StageTimes(
            exchange_ns=state.exchange_ns, ingest_ns=state.ingest_ns, processed_ns=processed_ns
        ),
        source=pb.SourcePosition(partition=state.source.partition, offset=state.source.offset),
    )
    if session is not None:
        message.session_day = session.day
        message.session_open = fmt(session.open)
        message.session_high = fmt(session.high)
        message.session_low = fmt(session.low)
        message.session_volume = fmt(session.volume)
        message.session_turnover = fmt(session.turnover)
        message.trade_count = session.trade_count
    if state.bar_1s is not None:
        message.bar_1s.CopyFrom(bar_to_proto(state.bar_1s))
    if state.bar_1m is not None:
        message.bar_1m.CopyFrom(bar_to_proto(state.bar_1m))
    return message


def bar_to_proto(bar: Bar) -> pb.Bar:
    return pb.Bar(
        start_time_ns=bar.start_ns,
        open=fmt(bar.open),
        high=fmt(bar.high),
        low=fmt(bar.low),
        close=fmt(bar.close),
        volume=fmt(bar.volume),
        trade_count=bar.trade_count,
    )


def state_from_proto(message: pb.InstrumentState) -> State:
    """The state a processor resumes from (derived fields are recomputed, not read)."""
    return State(
        instrument=message.instrument,
        venue=message.venue,
        version=message.version,
        last_sequence=message.last_sequence,
        source=Position(partition=message.source.partition, offset=message.source.offset),
        exchange_ns=message.times.exchange_ns,
        ingest_ns=message.times.ingest_ns,
        last_price=decimals.parse(message.last_price),
        last_size=decimals.parse(message.last_size),
        last_trade_time_ns=message.last_trade_time_ns,
        bid_price=decimals.parse(message.bid_price),
        bid_size=decimals.parse(message.bid_size),
        ask_price=decimals.parse(message.ask_price),
        ask_size=decimals.parse(message.ask_size),
        session=_session_from_proto(message) if message.trade_count else None,
        bar_1s=bar_from_proto(message.bar_1s) if message.HasField("bar_1s") else None,
        bar_1m=bar_from_proto(message.bar_1m) if message.HasField("bar_1m") else None,
    )


def _session_from_proto(message: pb.InstrumentState) -> Session:
    return Session(
        day=message.session_day,
        open=_required(message.session_open),
        high=_required(message.session_high),
        low=_required(message.session_low),
        volume=_required(message.session_volume),
        turnover=_required(message.session_turnover),
        trade_count=message.trade_count,
    )


def bar_from_proto(bar: pb.Bar) -> Bar:
    """A wire bar as the domain's (decimals parsed)."""
    return Bar(
        start_ns=bar.start_time_ns,
        open=_required(bar.open),
        high=_required(bar.high),
        low=_required(bar.low),
        close=_required(bar.close),
        volume=_required(bar.volume),
        trade_count=bar.trade_count,
    )


def _required(text: str) -> Decimal:
    value = decimals.parse(text)
    if value is None:
        raise ValueError(f"stored state holds a malformed decimal {text!r}")
    return value
