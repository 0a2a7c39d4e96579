"""State <-> tapewire.v1.InstrumentState: the wire form carries the derived values too."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from tapewire import decimals
from tapewire.decimals import fmt
from tapewire.v1 import market_pb2 as pb

from .enrich import Bar, Position, State, TradingSession, change, change_pct, mid, spread, spread_bps, vwap


def state_to_proto(state: State, processed_ns: int) -> pb.InstrumentState:
    """The whole wire form of a state, as one message."""
    message = _header(state, processed_ns)
    message.MergeFrom(_quote_part(state))
    message.MergeFrom(_trade_part(state))
    return message


class StateEncoder:
    """The wire bytes of each new state, re-rendering only what the tick changed.

    A state's wire form falls into three disjoint parts: the header (version, stamps, source:
    new every tick), what quotes change (the book and what is derived from it) and what trades
    change (last trade, session, bars, VWAP and change). A quote leaves the trade part's objects
    untouched (`enrich.apply` carries them over by reference) and a trade the quote part's, so
    each part is rendered once per change and reused by identity. Protobuf's wire format makes a
    concatenation of serialized messages parse as their merge, so the bytes parse to exactly
    `state_to_proto(state, processed_ns)`, whatever was reused; and they are the same bytes
    whether a part was cached or rendered afresh (a restored state gives what the lost one
    would have).
    """

    def __init__(self, max_instruments: int = 100_000) -> None:
        self._quotes: dict[str, tuple[tuple[object, ...], bytes]] = {}
        self._trades: dict[str, tuple[tuple[object, ...], bytes]] = {}
        self._max_instruments = max_instruments

    def encode(self, state: State, processed_ns: int) -> bytes:
        header = _header(state, processed_ns).SerializeToString()
        quote = self._part(self._quotes, state.instrument, _quote_inputs(state), state, _quote_part)
        trade = self._part(self._trades, state.instrument, _trade_inputs(state), state, _trade_part)
        return header + quote + trade

    def forget(self, instruments: Iterable[str]) -> None:
        """Drop the parts of instruments this processor no longer owns."""
        for instrument in instruments:
            self._quotes.pop(instrument, None)
            self._trades.pop(instrument, None)

    def _part(
        self,
        cache: dict[str, tuple[tuple[object, ...], bytes]],
        instrument: str,
        inputs: tuple[object, ...],
        state: State,
        render: Callable[[State], pb.InstrumentState],
    ) -> bytes:
        cached = cache.get(instrument)
        # Tuple equality checks identity first, element by element: a part the rules carried
        # over by reference costs a pointer comparison; equal values render the same text.
        if cached is not None and cached[0] == inputs:
            return cached[1]
        encoded = render(state).SerializeToString()
        if cached is None and len(cache) >= self._max_instruments:
            cache.clear()  # a bound, not an eviction policy: more instruments than this is misuse
        cache[instrument] = (inputs, encoded)
        return encoded


def _quote_inputs(state: State) -> tuple[object, ...]:
    return (state.bid_price, state.bid_size, state.ask_price, state.ask_size)


def _trade_inputs(state: State) -> tuple[object, ...]:
    return (
        state.last_price,
        state.last_size,
        state.last_trade_time_ns,
        state.session,
        state.bar_1s,
        state.bar_1m,
    )


def _header(state: State, processed_ns: int) -> pb.InstrumentState:
    message = pb.InstrumentState(
        instrument=state.instrument,
        venue=state.venue,
        version=state.version,
        last_sequence=state.last_sequence,
    )
    # Set in place: building the nested messages as arguments costs 60 % more, every tick.
    times = message.times
    times.exchange_ns, times.ingest_ns, times.processed_ns = state.exchange_ns, state.ingest_ns, processed_ns
    source = message.source
    source.partition, source.offset = state.source.partition, state.source.offset
    return message


def _quote_part(state: State) -> pb.InstrumentState:
    """Every field a quote changes: the book, mid, spread."""
    return pb.InstrumentState(
        bid_price=fmt(state.bid_price),
        bid_size=fmt(state.bid_size),
        ask_price=fmt(state.ask_price),
        ask_size=fmt(state.ask_size),
        mid=fmt(mid(state.bid_price, state.ask_price)),
        spread=fmt(spread(state.bid_price, state.ask_price)),
        spread_bps=spread_bps(state.bid_price, state.ask_price),
    )


def _trade_part(state: State) -> pb.InstrumentState:
    """Every field a trade changes: the last trade, the session and what derives from it, the bars."""
    session = state.session
    message = pb.InstrumentState(
        last_price=fmt(state.last_price),
        last_size=fmt(state.last_size),
        last_trade_time_ns=state.last_trade_time_ns,
        vwap=fmt(vwap(session)),
        change=fmt(change(session, state.last_price)),
        change_pct=change_pct(session, state.last_price),
    )
    if session is not None:
        message.session_day = session.day
        message.session_open = fmt(session.open)
        message.session_high = fmt(session.high)
        message.session_low = fmt(session.low)
        message.session_volume = fmt(session.volume)
        message.session_turnover = fmt(session.turnover)
        message.trade_count = session.trade_count
        message.session_close = fmt(session.close)
        message.session_start_ns = session.start_ns
        message.previous_close = fmt(session.previous_close)
        message.change_basis = (
            pb.CHANGE_BASIS_SESSION_OPEN if session.previous_close is None else pb.CHANGE_BASIS_PREVIOUS_CLOSE
        )
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


def _session_from_proto(message: pb.InstrumentState) -> TradingSession:
    return TradingSession(
        day=message.session_day,
        open=_required(message.session_open),
        high=_required(message.session_high),
        low=_required(message.session_low),
        volume=_required(message.session_volume),
        turnover=_required(message.session_turnover),
        trade_count=message.trade_count,
        # Empty in a state written before calendars: the session goes on without a close
        # until its next trade in regular hours, and without a previous close.
        close=decimals.parse(message.session_close),
        previous_close=decimals.parse(message.previous_close),
        start_ns=message.session_start_ns,
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
