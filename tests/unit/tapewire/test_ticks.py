"""The contract's rules for raw ticks: every rule has a case that breaks it."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tapewire.errors import InvalidTick
from tapewire.ticks import Quote, Trade, from_proto, to_proto
from tapewire.v1 import market_pb2 as pb

NOW = 1_763_649_000 * 10**9


def trade(**fields: object) -> pb.Tick:
    base: dict[str, object] = dict(
        instrument="AAPL",
        venue="XNAS",
        kind=pb.TICK_KIND_TRADE,
        price="187.42",
        size="100",
        sequence=3,
        exchange_time_ns=NOW,
        ingest_time_ns=NOW + 1,
    )
    base.update(fields)
    return pb.Tick(**base)  # type: ignore[arg-type]


def quote(**fields: object) -> pb.Tick:
    base: dict[str, object] = dict(
        instrument="AAPL",
        kind=pb.TICK_KIND_QUOTE,
        bid_price="187.4",
        bid_size="300",
        ask_price="187.44",
        ask_size="0",
        sequence=4,
        exchange_time_ns=NOW,
    )
    base.update(fields)
    return pb.Tick(**base)  # type: ignore[arg-type]


def test_valid_trade_and_quote_round_trip() -> None:
    parsed = from_proto(trade(), NOW)
    assert parsed == Trade("AAPL", "XNAS", D("187.42"), D("100"), 3, NOW, NOW + 1)
    assert to_proto(parsed) == trade()
    parsed_quote = from_proto(quote(), NOW)
    assert isinstance(parsed_quote, Quote) and parsed_quote.ask_size == D("0")
    assert to_proto(parsed_quote) == quote()


@pytest.mark.parametrize(
    ("tick", "reason"),
    [
        (trade(price="-1"), "not a decimal of the contract"),
        (trade(price="0"), "price must be > 0"),
        (trade(price="NaN"), "not a decimal of the contract"),
        (trade(price="Infinity"), "not a decimal of the contract"),
        (trade(price=""), "not a decimal of the contract"),
        (trade(price="12,5"), "not a decimal of the contract"),
        # What crashed the processor and the ingester: absurd magnitudes in exponent form.
        (trade(price="1e30", size="1e30"), "not a decimal of the contract"),
        (trade(price="1e4000"), "not a decimal of the contract"),
        (trade(price="1e999999999"), "not a decimal of the contract"),
        # What Decimal() accepts and the contract does not: spaces, "_", signs, other digits.
        (trade(price=" 1 "), "not a decimal of the contract"),
        (trade(price="1_000"), "not a decimal of the contract"),
        (trade(price="+5"), "not a decimal of the contract"),
        (trade(price="\uff15"), "not a decimal of the contract"),  # FULLWIDTH DIGIT FIVE
        (trade(price="1."), "not a decimal of the contract"),
        (trade(price=".5"), "not a decimal of the contract"),
        (trade(price="1" * 16), "not a decimal of the contract"),
        (trade(size="0." + "1" * 16), "not a decimal of the contract"),
        (trade(size="0"), "size must be > 0"),
        (trade(kind=pb.TICK_KIND_UNSPECIFIED), "unknown tick kind"),
        (trade(kind=7), "unknown tick kind"),
        (trade(instrument=""), "instrument"),
        (trade(instrument="A" * 33), "instrument"),
        (trade(instrument="BAD SYMBOL"), "instrument"),
        (trade(venue="V" * 33), "venue longer"),
        (trade(exchange_time_ns=0), "exchange_time_ns"),
        (trade(exchange_time_ns=NOW + 2 * 86_400 * 10**9), "exchange_time_ns"),
        (quote(ask_price="187.30"), "crossed quote"),
        (quote(bid_size="-5"), "not a decimal of the contract"),
        (quote(bid_price="0"), "bid_price must be > 0"),
    ],
)
def test_invalid_ticks_say_why(tick: pb.Tick, reason: str) -> None:
    with pytest.raises(InvalidTick, match=reason):
        from_proto(tick, NOW)


def test_wire_form_is_canonical() -> None:
    parsed = from_proto(trade(price="187.4200", size="100.0"), NOW)
    assert (to_proto(parsed).price, to_proto(parsed).size) == ("187.42", "100")


def test_the_bounds_themselves_are_valid() -> None:
    parsed = from_proto(trade(price="9" * 15 + "." + "9" * 15, size="0." + "0" * 14 + "1"), NOW)
    assert isinstance(parsed, Trade) and parsed.size == D("1e-15")
