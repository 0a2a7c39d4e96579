"""The wire form carries the derived values and round-trips the state exactly."""

from __future__ import annotations

from decimal import Decimal as D

from services.processor.codec import state_from_proto, state_to_proto
from services.processor.enrich import NS_PER_SECOND, Position, apply
from tapewire.ticks import Quote, Trade

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
