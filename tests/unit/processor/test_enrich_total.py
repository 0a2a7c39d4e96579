"""Every tick that passes validation can be applied, encoded and restored: no `decimal` exception,
and a state read back from the changelog computes exactly what the one in memory would have.

Hypothesis draws ticks over the whole validated domain (tapewire.decimals.GRAMMAR), weighted
towards its edges: the largest and smallest prices and sizes, long runs of them in one session.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.processor.codec import StateEncoder, state_from_proto, state_to_proto
from services.processor.enrich import NS_PER_SECOND, Position, State, apply
from tapewire import decimals
from tapewire.ticks import RawTick, from_proto, to_proto
from tapewire.v1 import market_pb2 as pb

T0 = 1_763_649_000 * NS_PER_SECOND  # 2025-11-20 14:30 UTC
TOP = 10**decimals.MAX_INTEGER_DIGITS - 1
EDGES = (
    "9" * decimals.MAX_INTEGER_DIGITS + "." + "9" * decimals.MAX_FRACTION_DIGITS,
    "0." + "0" * (decimals.MAX_FRACTION_DIGITS - 1) + "1",
    "1",
    "999999999999999",
    "0.000000000000001",
    "123456789012345.123456789012345",
)


@st.composite
def amounts(draw: st.DrawFn, positive: bool = True) -> str:
    """A decimal string the contract accepts (> 0 unless `positive` is False)."""
    edge = draw(st.sampled_from(EDGES))
    whole = draw(st.integers(0, TOP))
    fraction = draw(st.text("0123456789", min_size=0, max_size=decimals.MAX_FRACTION_DIGITS))
    text = draw(st.sampled_from([edge, f"{whole}.{fraction}" if fraction else str(whole)]))
    if positive and Decimal(text) == 0:
        return "1"
    return text


@st.composite
def ticks(draw: st.DrawFn, sequence: int) -> RawTick:
    at = T0 + draw(st.integers(0, 3 * 86_400)) * NS_PER_SECOND
    wire = pb.Tick(instrument="X", venue="V", sequence=sequence, exchange_time_ns=at, ingest_time_ns=at)
    if draw(st.booleans()):
        wire.kind, wire.price, wire.size = pb.TICK_KIND_TRADE, draw(amounts()), draw(amounts())
    else:
        bid, ask = sorted((draw(amounts()), draw(amounts())), key=Decimal)
        wire.kind, wire.bid_price, wire.ask_price = pb.TICK_KIND_QUOTE, bid, ask
        wire.bid_size, wire.ask_size = draw(amounts(positive=False)), draw(amounts(positive=False))
    return from_proto(wire, at)  # the validation every tick passes before it is applied


def stream() -> st.SearchStrategy[list[RawTick]]:
    return st.integers(1, 40).flatmap(lambda n: st.tuples(*(ticks(i) for i in range(n)))).map(list)


def wire(state: State) -> pb.InstrumentState:
    message = state_to_proto(state, processed_ns=0)
    message.SerializeToString()
    return message


@settings(max_examples=120, deadline=None)
@given(stream())
def test_any_valid_stream_applies_and_encodes(stream: list[RawTick]) -> None:
    state = None
    for offset, tick in enumerate(stream):
        state = apply(state, tick, Position(0, offset))
        wire(state)
        assert to_proto(tick).SerializeToString()  # the ingester's encoding is total too
    assert state is not None and state.version == len(stream)


@settings(max_examples=80, deadline=None)
@given(stream(), st.data())
def test_a_restored_state_computes_what_the_original_would(
    stream: list[RawTick], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(stream) - 1))
    original: State | None = None
    for offset, tick in enumerate(stream[:cut]):
        original = apply(original, tick, Position(0, offset))
    restored = None if original is None else state_from_proto(wire(original))
    for offset, tick in enumerate(stream[cut:], start=cut):
        original = apply(original, tick, Position(0, offset))
        restored = apply(restored, tick, Position(0, offset))
        assert wire(restored) == wire(original)


@settings(max_examples=100, deadline=None)
@given(stream(), st.data())
def test_the_encoder_gives_the_whole_state_whatever_it_reuses(
    stream: list[RawTick], data: st.DataObject
) -> None:
    """Bytes built from reused parts parse to the full wire form, and are the bytes an encoder
    with nothing cached gives, across a restore from the changelog too."""
    cut = data.draw(st.integers(0, len(stream) - 1))
    encoder = StateEncoder()
    state: State | None = None
    for offset, tick in enumerate(stream):
        if offset == cut and state is not None:
            state = state_from_proto(wire(state))  # new objects: nothing cached matches them
        state = apply(state, tick, Position(0, offset))
        encoded = encoder.encode(state, processed_ns=offset)
        assert pb.InstrumentState.FromString(encoded) == state_to_proto(state, processed_ns=offset)
        assert encoded == StateEncoder().encode(state, processed_ns=offset)
