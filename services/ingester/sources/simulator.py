"""A simulated market: quotes and trades for real-looking instruments (universe.py), paced at a
steady rate.

`Market` is the pure model (no clock, no sleeping): each instrument has a mid price that walks
randomly on its tick size, a bid/ask a few ticks wide around it, and displayed sizes in round
lots of its own trade unit. Every event is either a new quote (the mid moves, the spread and
sizes are redrawn) or a trade at the current bid or ask. Busy names trade more often than
quiet ones. Given a seed and the same timestamps, the output is identical.

`SimulatorSource` adds the pacing: `rate` ticks per second over all instruments, in small bursts.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from services.ingester.sources.pacing import RatePacer
from services.ingester.sources.universe import BY_SYMBOL, LISTINGS, Listing, generated
from tapewire.reference.instrument import Instrument
from tapewire.ticks import Quote, RawTick, Trade

MIN_PRICE_TICKS = 100

QUOTE_LOTS = (1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 15, 20)
TRADE_LOTS = (1, 1, 1, 1, 2, 2, 3, 5, 10)
SPREAD_TICKS = (1, 2, 3, 4)
SPREAD_WEIGHTS = (50, 30, 15, 5)


@dataclass(slots=True)
class _Book:
    instrument: str
    venue: str
    tick: Decimal  # the price increment
    unit: Decimal  # sizes are whole multiples of it
    mid: int  # in ticks
    volatility: float  # standard deviation of a mid move, in ticks
    bid: int = 0
    ask: int = 0
    bid_size: int = 1  # in units
    ask_size: int = 1
    sequence: int = 0


def instrument_names(count: int) -> list[str]:
    """The first `count` built-in symbols, then generated ones (SIM0066, ...) beyond the list."""
    names = [listing.symbol for listing in LISTINGS[:count]]
    names += [f"SIM{n:04d}" for n in range(len(LISTINGS) + 1, count + 1)]
    return names


def listings(count: int, venue: str) -> list[Listing]:
    """The listings of the first `count` instruments; generated names trade on `venue`."""
    return [BY_SYMBOL.get(name) or generated(name, venue) for name in instrument_names(count)]


class Market:
    """The pure market model; `next_tick(now_ns)` returns the next event of a random instrument."""

    def __init__(self, instruments: int, venue: str, trade_ratio: float, seed: int | None = None) -> None:
        if instruments < 1:
            raise ValueError("at least one instrument")
        self._rng = random.Random(seed)
        self._trade_ratio = trade_ratio
        self._listings = listings(instruments, venue)
        self._books = [self._open(listing) for listing in self._listings]
        # Activity falls with rank, as on a real exchange where a handful of names trade most.
        self._cum_weights = list(itertools.accumulate(1 / (rank + 1) ** 0.5 for rank in range(instruments)))
        for book in self._books:
            self._requote(book)

    def instruments(self) -> list[Instrument]:
        """The reference data of every instrument this market trades."""
        return [listing.instrument() for listing in self._listings]

    def next_tick(self, now_ns: int) -> RawTick:
        book = self._rng.choices(self._books, cum_weights=self._cum_weights)[0]
        book.sequence += 1
        if self._rng.random() < self._trade_ratio:
            return self._trade(book, now_ns)
        self._move(book)
        self._requote(book)
        return self._quote(book, now_ns)

    def _open(self, listing: Listing) -> _Book:
        mid = int(listing.price / listing.tick_size) if listing.price else self._rng.randint(1_000, 50_000)
        # About 0.5 bp of the price per event: a few cents for most names.
        return _Book(
            instrument=listing.symbol,
            venue=listing.venue,
            tick=listing.tick_size,
            unit=listing.trade_unit,
            mid=mid,
            volatility=max(0.6, mid * 0.00005),
        )

    def _move(self, book: _Book) -> None:
        book.mid += round(self._rng.gauss(0, book.volatility))
        if book.mid < MIN_PRICE_TICKS:
            book.mid = 2 * MIN_PRICE_TICKS - book.mid

    def _requote(self, book: _Book) -> None:
        # Expensive names quote wider: one extra multiple per $500 of price.
        spread = self._rng.choices(SPREAD_TICKS, weights=SPREAD_WEIGHTS)[0] * (1 + book.mid // 50_000)
        book.bid = book.mid - spread // 2
        book.ask = book.bid + spread
        book.bid_size = self._rng.choice(QUOTE_LOTS)
        book.ask_size = self._rng.choice(QUOTE_LOTS)

    def _trade(self, book: _Book, now_ns: int) -> Trade:
        buyer_initiated = self._rng.random() < 0.5
        price, shown = (book.ask, book.ask_size) if buyer_initiated else (book.bid, book.bid_size)
        size = min(self._rng.choice(TRADE_LOTS), shown)
        return Trade(
            instrument=book.instrument,
            venue=book.venue,
            price=price * book.tick,
            size=size * book.unit,
            sequence=book.sequence,
            exchange_time_ns=now_ns,
        )

    def _quote(self, book: _Book, now_ns: int) -> Quote:
        return Quote(
            instrument=book.instrument,
            venue=book.venue,
            bid_price=book.bid * book.tick,
            bid_size=book.bid_size * book.unit,
            ask_price=book.ask * book.tick,
            ask_size=book.ask_size * book.unit,
            sequence=book.sequence,
            exchange_time_ns=now_ns,
        )


class SimulatorSource:
    """`Market` events at `rate` per second (all instruments together), stamped with the wall clock."""

    name = "simulator"

    def __init__(
        self,
        market: Market,
        rate: float,
        max_ticks: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.market = market
        self._rate = rate
        self._max_ticks = max_ticks
        self._monotonic = monotonic
        self._wall_clock_ns = wall_clock_ns

    def read(self, stop: threading.Event) -> Iterator[RawTick]:
        pacer = RatePacer(self._rate)
        produced = 0
        while not stop.is_set():
            for _ in range(pacer.take(self._monotonic())):
                yield self.market.next_tick(self._wall_clock_ns())
                produced += 1
                if produced == self._max_ticks or stop.is_set():
                    return
            stop.wait(pacer.wait_s(self._monotonic()))
