"""A simulated market: quotes and trades for real-looking US equities, paced at a steady rate.

`Market` is the pure model (no clock, no sleeping): each instrument has a mid price that walks
randomly on its tick size, a bid/ask a few ticks wide around it, and displayed sizes in round
lots. Every event is either a new quote (the mid moves, the spread and sizes are redrawn) or a
trade at the current bid or ask. Busy names trade more often than quiet ones. Given a seed and
the same timestamps, the output is identical.

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
from tapewire.ticks import Quote, RawTick, Trade

LOT = 100
# Price movement is in cents: a US equity tick size above $1.
TICK_EXPONENT = -2
MIN_PRICE_TICKS = 100

# Symbol and a plausible reference price, most active first.
LISTINGS: tuple[tuple[str, str], ...] = (
    ("NVDA", "135.40"),
    ("TSLA", "248.90"),
    ("AAPL", "229.80"),
    ("AMZN", "201.20"),
    ("MSFT", "421.50"),
    ("META", "562.30"),
    ("AMD", "139.70"),
    ("GOOGL", "174.60"),
    ("SPY", "589.10"),
    ("QQQ", "503.20"),
    ("AVGO", "168.90"),
    ("NFLX", "752.40"),
    ("INTC", "22.15"),
    ("F", "11.02"),
    ("BAC", "42.35"),
    ("PLTR", "61.80"),
    ("UBER", "74.90"),
    ("JPM", "221.70"),
    ("LLY", "871.00"),
    ("COST", "902.50"),
    ("BRK.B", "461.20"),
    ("V", "289.60"),
    ("UNH", "561.40"),
    ("XOM", "116.30"),
    ("JNJ", "158.20"),
    ("WMT", "84.70"),
    ("MA", "512.80"),
    ("PG", "169.40"),
    ("HD", "401.30"),
    ("CVX", "154.90"),
    ("ABBV", "189.50"),
    ("KO", "64.80"),
    ("PEP", "160.10"),
    ("MRK", "99.80"),
    ("ADBE", "498.70"),
    ("CRM", "301.60"),
    ("CSCO", "58.40"),
    ("ORCL", "171.20"),
    ("TMO", "531.90"),
    ("ABT", "115.30"),
    ("DIS", "99.60"),
    ("NKE", "75.20"),
    ("MCD", "298.70"),
    ("WFC", "62.40"),
    ("C", "68.10"),
    ("GS", "561.70"),
    ("MS", "125.80"),
    ("T", "22.40"),
    ("VZ", "42.10"),
    ("PFE", "26.30"),
    ("BA", "158.60"),
    ("CAT", "379.40"),
    ("GE", "181.20"),
    ("IBM", "221.90"),
    ("QCOM", "159.80"),
    ("TXN", "199.50"),
    ("HON", "214.70"),
    ("UPS", "129.90"),
    ("SBUX", "95.10"),
    ("PYPL", "79.60"),
    ("GM", "51.70"),
    ("SHOP", "102.40"),
)
QUOTE_LOTS = (1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 15, 20)
TRADE_LOTS = (1, 1, 1, 1, 2, 2, 3, 5, 10)
SPREAD_TICKS = (1, 2, 3, 4)
SPREAD_WEIGHTS = (50, 30, 15, 5)
_REFERENCE_PRICES = dict(LISTINGS)


@dataclass(slots=True)
class _Book:
    instrument: str
    mid: int  # in ticks
    volatility: float  # standard deviation of a mid move, in ticks
    bid: int = 0
    ask: int = 0
    bid_size: int = LOT
    ask_size: int = LOT
    sequence: int = 0


def instrument_names(count: int) -> list[str]:
    """The first `count` built-in symbols, then generated ones (SIM0063, ...) beyond the list."""
    names = [symbol for symbol, _ in LISTINGS[:count]]
    names += [f"SIM{n:04d}" for n in range(len(LISTINGS) + 1, count + 1)]
    return names


class Market:
    """The pure market model; `next_tick(now_ns)` returns the next event of a random instrument."""

    def __init__(self, instruments: int, venue: str, trade_ratio: float, seed: int | None = None) -> None:
        if instruments < 1:
            raise ValueError("at least one instrument")
        self._rng = random.Random(seed)
        self._venue = venue
        self._trade_ratio = trade_ratio
        self._books = [self._open(name) for name in instrument_names(instruments)]
        # Activity falls with rank, as on a real exchange where a handful of names trade most.
        self._cum_weights = list(itertools.accumulate(1 / (rank + 1) ** 0.5 for rank in range(instruments)))
        for book in self._books:
            self._requote(book)

    def next_tick(self, now_ns: int) -> RawTick:
        book = self._rng.choices(self._books, cum_weights=self._cum_weights)[0]
        book.sequence += 1
        if self._rng.random() < self._trade_ratio:
            return self._trade(book, now_ns)
        self._move(book)
        self._requote(book)
        return self._quote(book, now_ns)

    def _open(self, name: str) -> _Book:
        reference = _REFERENCE_PRICES.get(name)
        mid = (
            int(Decimal(reference).scaleb(-TICK_EXPONENT)) if reference else self._rng.randint(1_000, 50_000)
        )
        # About 0.5 bp of the price per event: a few cents for most names.
        return _Book(instrument=name, mid=mid, volatility=max(0.6, mid * 0.00005))

    def _move(self, book: _Book) -> None:
        book.mid += round(self._rng.gauss(0, book.volatility))
        if book.mid < MIN_PRICE_TICKS:
            book.mid = 2 * MIN_PRICE_TICKS - book.mid

    def _requote(self, book: _Book) -> None:
        # Expensive names quote wider: one extra multiple per $500 of price.
        spread = self._rng.choices(SPREAD_TICKS, weights=SPREAD_WEIGHTS)[0] * (1 + book.mid // 50_000)
        book.bid = book.mid - spread // 2
        book.ask = book.bid + spread
        book.bid_size = LOT * self._rng.choice(QUOTE_LOTS)
        book.ask_size = LOT * self._rng.choice(QUOTE_LOTS)

    def _trade(self, book: _Book, now_ns: int) -> Trade:
        buyer_initiated = self._rng.random() < 0.5
        price, shown = (book.ask, book.ask_size) if buyer_initiated else (book.bid, book.bid_size)
        size = min(LOT * self._rng.choice(TRADE_LOTS), shown)
        return Trade(
            instrument=book.instrument,
            venue=self._venue,
            price=_price(price),
            size=Decimal(size),
            sequence=book.sequence,
            exchange_time_ns=now_ns,
        )

    def _quote(self, book: _Book, now_ns: int) -> Quote:
        return Quote(
            instrument=book.instrument,
            venue=self._venue,
            bid_price=_price(book.bid),
            bid_size=Decimal(book.bid_size),
            ask_price=_price(book.ask),
            ask_size=Decimal(book.ask_size),
            sequence=book.sequence,
            exchange_time_ns=now_ns,
        )


def _price(ticks: int) -> Decimal:
    return Decimal(ticks).scaleb(TICK_EXPONENT)


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
        self._market = market
        self._rate = rate
        self._max_ticks = max_ticks
        self._monotonic = monotonic
        self._wall_clock_ns = wall_clock_ns

    def read(self, stop: threading.Event) -> Iterator[RawTick]:
        pacer = RatePacer(self._rate)
        produced = 0
        while not stop.is_set():
            for _ in range(pacer.take(self._monotonic())):
                yield self._market.next_tick(self._wall_clock_ns())
                produced += 1
                if produced == self._max_ticks or stop.is_set():
                    return
            stop.wait(pacer.wait_s(self._monotonic()))
