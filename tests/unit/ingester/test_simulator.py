"""The simulated market: deterministic with a seed, and realistic enough to trust."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from services.ingester.sources.simulator import LISTINGS, Market, SimulatorSource, instrument_names
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
    symbols = [symbol for symbol, _ in LISTINGS]
    assert len(set(symbols)) == len(symbols) >= 50
    assert {"AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA"} <= set(symbols)


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
    cent = Decimal("0.01")
    for tick in (t for t in ticks if isinstance(t, Quote)):
        assert 0 < tick.bid_price < tick.ask_price
        assert tick.ask_price - tick.bid_price <= 20 * cent
        assert tick.bid_price % cent == 0 and tick.ask_price % cent == 0
        assert tick.bid_size > 0 and tick.ask_size > 0
        assert tick.bid_size % 100 == 0 and tick.ask_size % 100 == 0


def test_trades_happen_at_the_current_bid_or_ask_in_round_lots(ticks: list[RawTick]) -> None:
    last_quote: dict[str, Quote] = {}
    for tick in ticks:
        if isinstance(tick, Quote):
            last_quote[tick.instrument] = tick
        elif tick.instrument in last_quote:
            quote = last_quote[tick.instrument]
            assert tick.price in (quote.bid_price, quote.ask_price)
            assert tick.size > 0 and tick.size % 100 == 0


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
    reference = {symbol: Decimal(price) for symbol, price in LISTINGS}
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


def test_ticks_carry_the_venue_and_the_time_given() -> None:
    tick = Market(3, "XSIM", 0.5, seed=1).next_tick(NOW_NS)
    assert (tick.venue, tick.exchange_time_ns, tick.ingest_time_ns) == ("XSIM", NOW_NS, 0)


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
