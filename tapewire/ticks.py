"""Raw ticks as the services reason about them, and the one place their rules are checked.

`from_proto` turns a wire `Tick` into a `Trade` or `Quote` or raises `InvalidTick` with the
rule it broke. The ingester checks every tick with it before publishing and the processor
checks again on consumption (anything can write to a topic), sending failures to the DLQ.
Prices and sizes must be in the contract's decimal grammar with its bounds
(`tapewire.decimals.GRAMMAR`): within them every rule of the processor is total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from tapewire import decimals
from tapewire.errors import InvalidTick
from tapewire.v1 import market_pb2 as pb

INSTRUMENT_PATTERN = re.compile(r"\A[A-Za-z0-9._:/-]{1,32}\Z")  # \Z: "$" would accept a trailing newline
MAX_VENUE_LENGTH = 32
# Exchange times outside [2000-01-01, now + 1 day] are feed bugs, not market events.
EARLIEST_EXCHANGE_TIME_NS = 946_684_800 * 10**9
MAX_FUTURE_SKEW_NS = 86_400 * 10**9


@dataclass(frozen=True, slots=True)
class Trade:
    instrument: str
    venue: str
    price: Decimal
    size: Decimal
    sequence: int
    exchange_time_ns: int
    ingest_time_ns: int = 0


@dataclass(frozen=True, slots=True)
class Quote:
    instrument: str
    venue: str
    bid_price: Decimal
    bid_size: Decimal
    ask_price: Decimal
    ask_size: Decimal
    sequence: int
    exchange_time_ns: int
    ingest_time_ns: int = 0


RawTick = Trade | Quote


def from_proto(tick: pb.Tick, now_ns: int) -> RawTick:
    """Validate a wire tick and return it as a `Trade` or `Quote`; raise `InvalidTick` if it breaks a rule."""
    _check_identity(tick.instrument, tick.venue)
    _check_time(tick.exchange_time_ns, now_ns)
    if tick.kind == pb.TICK_KIND_TRADE:
        return Trade(
            instrument=tick.instrument,
            venue=tick.venue,
            price=_positive("price", tick.price),
            size=_positive("size", tick.size),
            sequence=tick.sequence,
            exchange_time_ns=tick.exchange_time_ns,
            ingest_time_ns=tick.ingest_time_ns,
        )
    if tick.kind == pb.TICK_KIND_QUOTE:
        bid, ask = _positive("bid_price", tick.bid_price), _positive("ask_price", tick.ask_price)
        if ask < bid:
            raise InvalidTick(f"crossed quote: ask {tick.ask_price} < bid {tick.bid_price}")
        return Quote(
            instrument=tick.instrument,
            venue=tick.venue,
            bid_price=bid,
            bid_size=_non_negative("bid_size", tick.bid_size),
            ask_price=ask,
            ask_size=_non_negative("ask_size", tick.ask_size),
            sequence=tick.sequence,
            exchange_time_ns=tick.exchange_time_ns,
            ingest_time_ns=tick.ingest_time_ns,
        )
    raise InvalidTick(f"unknown tick kind {tick.kind}")


def to_proto(tick: RawTick) -> pb.Tick:
    """The wire form of a validated tick."""
    message = pb.Tick(
        instrument=tick.instrument,
        venue=tick.venue,
        sequence=tick.sequence,
        exchange_time_ns=tick.exchange_time_ns,
        ingest_time_ns=tick.ingest_time_ns,
    )
    if isinstance(tick, Trade):
        message.kind = pb.TICK_KIND_TRADE
        message.price = decimals.fmt(tick.price)
        message.size = decimals.fmt(tick.size)
    else:
        message.kind = pb.TICK_KIND_QUOTE
        message.bid_price = decimals.fmt(tick.bid_price)
        message.bid_size = decimals.fmt(tick.bid_size)
        message.ask_price = decimals.fmt(tick.ask_price)
        message.ask_size = decimals.fmt(tick.ask_size)
    return message


def _check_identity(instrument: str, venue: str) -> None:
    if not INSTRUMENT_PATTERN.match(instrument):
        raise InvalidTick(f"instrument {instrument[:40]!r} must be 1-32 chars of [A-Za-z0-9._:/-]")
    if len(venue) > MAX_VENUE_LENGTH:
        raise InvalidTick(f"venue longer than {MAX_VENUE_LENGTH} chars")


def _check_time(exchange_time_ns: int, now_ns: int) -> None:
    if exchange_time_ns < EARLIEST_EXCHANGE_TIME_NS or exchange_time_ns > now_ns + MAX_FUTURE_SKEW_NS:
        raise InvalidTick(f"exchange_time_ns {exchange_time_ns} is before 2000 or more than a day ahead")


def _positive(field: str, text: str) -> Decimal:
    value = _amount(field, text)
    if value <= 0:
        raise InvalidTick(f"{field} must be > 0, got {text[:40]}")
    return value


def _non_negative(field: str, text: str) -> Decimal:
    return _amount(field, text)  # the grammar has no sign: never below zero


def _amount(field: str, text: str) -> Decimal:
    value = decimals.parse_amount(text)
    if value is None:
        raise InvalidTick(f"{field} {text[:40]!r} is not a decimal of the contract: {decimals.GRAMMAR}")
    return value
