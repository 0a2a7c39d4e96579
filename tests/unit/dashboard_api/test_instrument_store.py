"""The instrument store's cache: one read for concurrent misses, the last entries through an outage."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from psycopg_pool import AsyncConnectionPool

from services.dashboard_api.stores import instruments as store_module
from services.dashboard_api.stores.instruments import CACHE_S, FAILURE_CACHE_S, InstrumentStore
from tapewire.errors import StoreUnavailable

ROW = (
    "AAPL",
    "Apple Inc.",
    "equity",
    "USD",
    "XNAS",
    "0.01",
    2,
    "1",
    "America/New_York",
    "09:30-16:00",
    "1,2,3,4,5",
    "04:00",
    "2026-11-26",
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What each read of the table answers, in order (a list of rows, or an exception)."""
    answers: list[object] = []

    async def fetch_all(_pool: object, _query: object, _params: object) -> list[tuple[Any, ...]]:
        await asyncio.sleep(0.01)  # a round trip, during which other requests arrive
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return cast(list[tuple[Any, ...]], answer)

    monkeypatch.setattr(store_module, "fetch_all", fetch_all)
    return answers


def store(clock: Clock) -> InstrumentStore:
    return InstrumentStore(cast(AsyncConnectionPool, None), clock)


def test_concurrent_misses_share_one_read(reads: list[object]) -> None:
    reads.append([ROW])
    instruments = store(Clock())

    async def many() -> list[list[str]]:
        found = await asyncio.gather(*(instruments.entries() for _ in range(20)))
        return [[entry.symbol for entry in entries] for entries in found]

    assert asyncio.run(many()) == [["AAPL"]] * 20
    assert reads == []  # one read answered all twenty


def test_an_outage_serves_the_last_entries_and_a_first_read_failing_raises(reads: list[object]) -> None:
    clock = Clock()
    instruments = store(clock)
    reads.append(StoreUnavailable("postgresql: down"))
    with pytest.raises(StoreUnavailable):
        asyncio.run(instruments.entries())
    clock.now += FAILURE_CACHE_S
    reads.extend([[ROW], StoreUnavailable("postgresql: down")])
    assert [e.symbol for e in asyncio.run(instruments.entries())] == ["AAPL"]
    clock.now += CACHE_S
    stale = asyncio.run(instruments.entries())
    assert [e.symbol for e in stale] == ["AAPL"] and stale[0].calendar.holiday_dates() == ["2026-11-26"]
    clock.now += 1.0  # within FAILURE_CACHE_S: no new read is tried
    assert [e.symbol for e in asyncio.run(instruments.entries())] == ["AAPL"]
    assert reads == []


def test_a_row_this_host_cannot_read_is_skipped(reads: list[object]) -> None:
    unknown_zone = (*ROW[:8], "Mars/Olympus", *ROW[9:])
    reads.append([unknown_zone, ROW])
    assert [e.symbol for e in asyncio.run(store(Clock()).entries())] == ["AAPL"]
