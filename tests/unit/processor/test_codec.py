"""The wire form carries the derived values and round-trips the state exactly."""

from __future__ import annotations

from decimal import Decimal as D

from services.processor.codec import state_from_proto, state_to_proto
from services.processor.enrich import NS_PER_SECOND, Position, apply
from tapewire.reference.calendar import NS_PER_DAY
from tapewire.ticks import Quote, Trade
from tapewire.v1 import market_pb2 as pb

T0 = 1_763_649_000 * NS_PER_SECOND


def test_round_trip_and_derived_fields() -> None:
    state = apply(
        None, Quote("MSFT", "XNAS", D("400.10"), D("3"), D("400.30"), D("4"), 7, T0, T0 + 5), Position(2, 40)
    )
    state = apply(state, Trade("MSFT", "XNAS", D("400.20"), D("50"), 8, T0 + 10, T0 + 15), Position(2, 41))
    wire = state_to_proto(state, processed_ns=T0 + 99)

    assert (wire.mid, wire.spread, wire.vwap, wire.change, wire.session_volume) == (
        "400.2",
        "0.2",
        "400.2",
        "0",
        "50",
    )
    assert abs(wire.spread_bps - 0.2 / 400.2 * 10_000) < 1e-9
    assert (wire.version, wire.last_sequence, wire.source.partition, wire.source.offset) == (2, 8, 2, 41)
    assert (wire.times.exchange_ns, wire.times.ingest_ns, wire.times.processed_ns) == (
        T0 + 10,
        T0 + 15,
        T0 + 99,
    )
    assert wire.bar_1s.start_time_ns == T0 and wire.bar_1m.trade_count == 1

    assert state_from_proto(wire) == state


def test_state_without_trades_has_empty_trade_fields() -> None:
    state = apply(None, Quote("MSFT", "", D("1"), D("1"), D("2"), D("1"), 1, T0, T0), Position(0, 0))
    wire = state_to_proto(state, processed_ns=T0)
    assert (wire.last_price, wire.vwap, wire.session_open) == ("", "", "")
    assert not wire.HasField("bar_1s")
    assert state_from_proto(wire) == state


def test_previous_close_and_its_basis_round_trip() -> None:
    first = apply(None, Trade("MSFT", "XNAS", D("400.10"), D("5"), 1, T0, T0), Position(0, 1))
    wire = state_to_proto(first, processed_ns=T0)
    assert (wire.session_close, wire.previous_close, wire.change_basis) == (
        "400.1",
        "",
        pb.CHANGE_BASIS_SESSION_OPEN,
    )
    next_day = apply(first, Trade("MSFT", "XNAS", D("401.30"), D("5"), 2, T0 + NS_PER_DAY, 0), Position(0, 2))
    wire = state_to_proto(next_day, processed_ns=T0)
    assert (wire.previous_close, wire.change, wire.change_basis) == (
        "400.1",
        "1.2",
        pb.CHANGE_BASIS_PREVIOUS_CLOSE,
    )
    assert state_from_proto(wire) == next_day


def test_a_state_written_before_calendars_restores_and_goes_on() -> None:
    old = pb.InstrumentState(
        instrument="MSFT",
        venue="XNAS",
        version=2,
        last_sequence=8,
        last_price="400.2",
        last_size="50",
        session_day=T0 // NS_PER_DAY,
        session_open="400.2",
        session_high="400.2",
        session_low="400.2",
        session_volume="50",
        session_turnover="20010",
        trade_count=1,
        change="0",
    )
    old.source.partition = 2
    # Only fields 1-28 are set, so these are the very bytes the release before calendars wrote
    # (proto3 leaves unset fields off the wire).
    assert not (old.previous_close or old.session_close or old.change_basis)
    restored = state_from_proto(pb.InstrumentState.FromString(old.SerializeToString()))
    assert restored.session is not None
    assert (restored.session.close, restored.session.previous_close) == (None, None)
    # It goes on: the next day's session has no previous close to measure from (the old
    # record did not keep one), so its change is from its open, and says so.
    later = apply(restored, Trade("MSFT", "XNAS", D("402"), D("1"), 9, T0 + NS_PER_DAY, 0), Position(2, 9))
    wire = state_to_proto(later, processed_ns=T0)
    assert (wire.change, wire.change_basis) == ("0", pb.CHANGE_BASIS_SESSION_OPEN)
    # ... and the day after, from that day's close.
    after = apply(later, Trade("MSFT", "XNAS", D("403"), D("1"), 10, T0 + 2 * NS_PER_DAY, 0), Position(2, 10))
    assert state_to_proto(after, processed_ns=T0).previous_close == "402"
