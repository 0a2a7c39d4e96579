"""The simulated market: deterministic with a seed, and realistic enough to trust."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from services.ingester.sources.simulator import Market, SimulatorSource, instrument_names
from services.ingester.sources.universe import BY_SYMBOL, LISTINGS
from tapewire.ticks import Quote, RawTick, Trade, from_proto, to_proto

NOW_NS = 1_763_649_000_000_000_000


def run_market(market: Market, count: int) -> list[RawTick]:
    return [market.next_tick(NOW_NS + i) for i in range(count)]


def test_same_seed_same_market() -> None:
    first = run_market(Market(50, "SIM", 0.3, seed=42), 2_000)
    second = run_market(Market(50, "SIM", 0.3, seed=42), 2_000)
    assert first == second
    assert run_market(Market(50, "SIM", 0.3, seed=43), 2_000) != first


def test_at_least_fifty_real_looking_symbols() -> None:
    symbols = [listing.symbol for listing in LISTINGS]
    assert len(set(symbols)) == len(symbols) >= 50
    assert {"AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA"} <= set(symbols)


def test_the_busiest_names_include_a_24_7_pair_an_overnight_future_and_fx() -> None:
    busiest = Market(8, "SIM", 0.3, seed=1).instruments()
    calendars = {entry.asset_class: entry.calendar for entry in busiest}
    assert calendars["crypto"].always_open
    assert calendars["future"].overnight and calendars["future"].timezone == "America/Chicago"
    assert {entry.decimals for entry in busiest if entry.asset_class == "fx"} == {5}
    assert all(
        entry.calendar.hours_text() == "09:30-16:00" for entry in busiest if entry.asset_class == "equity"
    )


def test_every_listing_is_a_valid_master_entry_and_generated_names_get_one() -> None:
    entries = Market(len(LISTINGS) + 2, "SIM", 0.3, seed=1).instruments()
    assert [entry.symbol for entry in entries] == instrument_names(len(LISTINGS) + 2)
    assert entries[-1].venue == "SIM" and entries[-1].asset_class == "equity"


def test_more_instruments_than_listed_get_generated_names() -> None:
    names = instrument_names(len(LISTINGS) + 3)
    assert len(set(names)) == len(LISTINGS) + 3
    assert names[-1] == f"SIM{len(LISTINGS) + 3:04d}"
    ticks = run_market(Market(len(LISTINGS) + 3, "SIM", 0.3, seed=1), 20_000)
    assert {t.instrument for t in ticks} == set(names)


@pytest.fixture(scope="module")
def ticks() -> list[RawTick]:
    return run_market(Market(60, "SIM", 0.3, seed=7), 30_000)


def test_every_tick_passes_the_contract(ticks: list[RawTick]) -> None:
    for tick in ticks:
        assert from_proto(to_proto(tick), NOW_NS) == tick


def test_quotes_are_on_the_tick_grid_with_bid_below_ask(ticks: list[RawTick]) -> None:
    for tick in (t for t in ticks if isinstance(t, Quote)):
        listing = BY_SYMBOL[tick.instrument]
        step, unit = listing.tick_size, listing.trade_unit
        assert 0 < tick.bid_price < tick.ask_price
        # A few ticks wide, wider for expensive names (one more multiple per 50,000 ticks).
        assert tick.ask_price - tick.bid_price <= 4 * step * (1 + listing.price / step / 50_000 + 1)
        assert tick.bid_price % step == 0 and tick.ask_price % step == 0
        assert tick.bid_size > 0 and tick.ask_size > 0
        assert tick.bid_size % unit == 0 and tick.ask_size % unit == 0


def test_trades_happen_at_the_current_bid_or_ask_in_round_lots(ticks: list[RawTick]) -> None:
    last_quote: dict[str, Quote] = {}
    for tick in ticks:
        if isinstance(tick, Quote):
            last_quote[tick.instrument] = tick
        elif tick.instrument in last_quote:
            quote = last_quote[tick.instrument]
            assert tick.price in (quote.bid_price, quote.ask_price)
            assert tick.size > 0 and tick.size % BY_SYMBOL[tick.instrument].trade_unit == 0


def test_sequences_count_from_one_per_instrument(ticks: list[RawTick]) -> None:
    sequences: dict[str, list[int]] = defaultdict(list)
    for tick in ticks:
        sequences[tick.instrument].append(tick.sequence)
    for seen in sequences.values():
        assert seen == list(range(1, len(seen) + 1))


def test_the_trade_ratio_is_honoured(ticks: list[RawTick]) -> None:
    trades = sum(isinstance(t, Trade) for t in ticks)
    assert trades / len(ticks) == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize("ratio", [0.0, 1.0])
def test_extreme_trade_ratios(ratio: float) -> None:
    kinds = {type(t) for t in run_market(Market(5, "SIM", ratio, seed=3), 500)}
    assert kinds == ({Trade} if ratio else {Quote})


def test_prices_stay_plausible_and_move(ticks: list[RawTick]) -> None:
    reference = {listing.symbol: listing.price for listing in LISTINGS}
    mids: dict[str, set[Decimal]] = defaultdict(set)
    for tick in (t for t in ticks if isinstance(t, Quote)):
        mid = (tick.bid_price + tick.ask_price) / 2
        assert reference[tick.instrument] * Decimal("0.8") < mid < reference[tick.instrument] * Decimal("1.2")
        mids[tick.instrument].add(mid)
    assert all(len(seen) > 5 for seen in mids.values())


def test_busy_names_tick_more_than_quiet_ones(ticks: list[RawTick]) -> None:
    counts = Counter(t.instrument for t in ticks)
    names = instrument_names(60)
    assert counts[names[0]] > 2 * counts[names[-1]] > 0


def test_ticks_carry_their_listings_venue_and_the_time_given() -> None:
    tick = Market(3, "XSIM", 0.5, seed=1).next_tick(NOW_NS)
    assert (tick.venue, tick.exchange_time_ns, tick.ingest_time_ns) == (
        BY_SYMBOL[tick.instrument].venue,
        NOW_NS,
        0,
    )
    generated = Market(len(LISTINGS) + 1, "XSIM", 0.5, seed=1)
    venues = {t.instrument: t.venue for t in (generated.next_tick(NOW_NS) for _ in range(20_000))}
    assert venues[f"SIM{len(LISTINGS) + 1:04d}"] == "XSIM"


def test_at_least_one_instrument() -> None:
    with pytest.raises(ValueError, match="instrument"):
        Market(0, "SIM", 0.3)


class FakeTime(threading.Event):
    """A monotonic clock that moves only when the source waits on it (as its stop event)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 10.0

    def monotonic(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None and timeout > 0
        self.now += timeout
        return self.is_set()


def test_the_source_paces_at_the_rate_and_stops_at_max_ticks() -> None:
    clock = FakeTime()
    source = SimulatorSource(
        Market(50, "SIM", 0.3, seed=1),
        rate=1_000,
        max_ticks=3_000,
        monotonic=clock.monotonic,
        wall_clock_ns=lambda: NOW_NS,
    )
    ticks = list(source.read(clock))
    assert len(ticks) == 3_000
    assert clock.now - 10.0 == pytest.approx(3.0, abs=0.01)


def test_the_source_stops_on_the_stop_event() -> None:
    clock = FakeTime()
    source = SimulatorSource(Market(5, "SIM", 0.3, seed=1), rate=1_000, monotonic=clock.monotonic)
    ticks = source.read(clock)
    for _ in range(10):
        next(ticks)
    clock.set()
    assert list(ticks) == []
