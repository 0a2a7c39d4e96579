"""GET /api/instruments' pure part: which instruments are listed, in what order, with which details.

Instants are in the week of Mon 2026-01-05 (winter: New York UTC-5, Chicago UTC-6).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.dashboard_api.rest.listing import MAX_QUERY_LENGTH, check_filter, listing
from tapewire.reference.instrument import Instrument, instrument_from_fields, to_json


def ns(text: str) -> int:
    """A UTC instant "2026-01-06 15:00" in epoch ns."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def entry(symbol: str, name: str, asset_class: str = "equity", **calendar: str) -> Instrument:
    return instrument_from_fields(
        {
            "symbol": symbol,
            "name": name,
            "asset_class": asset_class,
            "currency": "USD",
            "venue": "XNAS",
            "tick_size": "0.01",
            "timezone": "America/New_York",
            "hours": "09:30-16:00",
            "pre_open": "04:00",
            **calendar,
        }
    )


AAPL = entry("AAPL", "Apple Inc.")
SPY = entry("SPY", "SPDR S&P 500 ETF Trust", "etf")
BTC = entry("BTC-USD", "Bitcoin", "crypto", timezone="UTC", hours="24/7", pre_open="")
ESZ6 = entry(
    "ESZ6", "E-mini S&P 500 Dec 2026", "future", timezone="America/Chicago", hours="17:00-16:00", pre_open=""
)
ENTRIES = [SPY, BTC, AAPL, ESZ6]
WITH_STATE = ["MSFT", "AAPL", "BTC-USD", "ZZZ"]
TUESDAY_3PM = ns("2026-01-06 15:00")  # 10:00 New York, 09:00 Chicago


def test_every_instrument_with_a_state_or_an_entry_sorted() -> None:
    result = listing(WITH_STATE, ENTRIES, "", "", TUESDAY_3PM)
    assert result.instruments == ["AAPL", "BTC-USD", "ESZ6", "MSFT", "SPY", "ZZZ"]
    assert [details.entry.symbol for details in result.details] == ["AAPL", "BTC-USD", "ESZ6", "SPY"]
    assert [details.entry for details in result.details] == [AAPL, BTC, ESZ6, SPY]


def test_nothing_known() -> None:
    result = listing([], [], "", "", TUESDAY_3PM)
    assert result.json() == {"instruments": [], "details": []}


def test_states_only_have_no_details() -> None:
    result = listing(["B", "A", "A"], [], "", "", TUESDAY_3PM)
    assert result.instruments == ["A", "B"]
    assert result.details == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("aapl", ["AAPL"]),  # the symbol, any case
        ("APPLE", ["AAPL"]),  # the name, any case
        ("s&p 500", ["ESZ6", "SPY"]),  # names only
        ("-usd", ["BTC-USD"]),
        ("ms", ["MSFT"]),  # a symbol without an entry matches by symbol
        ("zz", ["ZZZ"]),
        ("inc", ["AAPL"]),
        ("nothing", []),
    ],
)
def test_query_matches_the_symbol_or_the_name(query: str, expected: list[str]) -> None:
    result = listing(WITH_STATE, ENTRIES, query, "", TUESDAY_3PM)
    assert result.instruments == expected
    assert [details.entry.symbol for details in result.details] == [
        symbol for symbol in expected if symbol in {"AAPL", "BTC-USD", "ESZ6", "SPY"}
    ]


@pytest.mark.parametrize(
    ("asset_class", "expected"),
    [("equity", ["AAPL"]), ("etf", ["SPY"]), ("crypto", ["BTC-USD"]), ("future", ["ESZ6"]), ("fx", [])],
)
def test_asset_class_excludes_instruments_without_an_entry(asset_class: str, expected: list[str]) -> None:
    result = listing(WITH_STATE, ENTRIES, "", asset_class, TUESDAY_3PM)
    assert result.instruments == expected
    assert [details.entry.symbol for details in result.details] == expected


def test_query_and_asset_class_together() -> None:
    assert listing(WITH_STATE, ENTRIES, "s&p", "etf", TUESDAY_3PM).instruments == ["SPY"]
    assert listing(WITH_STATE, ENTRIES, "apple", "etf", TUESDAY_3PM).instruments == []


def test_market_status_at_the_given_instant() -> None:
    result = listing(WITH_STATE, ENTRIES, "", "", TUESDAY_3PM)
    status = {details.entry.symbol: (details.status, details.until_ns) for details in result.details}
    assert status == {
        "AAPL": ("open", ns("2026-01-06 21:00")),  # 16:00 New York
        "SPY": ("open", ns("2026-01-06 21:00")),
        "BTC-USD": ("open", 0),  # 24/7: never changes
        "ESZ6": ("open", ns("2026-01-06 22:00")),  # 16:00 Chicago
    }


@pytest.mark.parametrize(
    ("at", "aapl", "esz6"),
    [
        # Tuesday 08:00 New York: pre-open since 04:00, opens 09:30; Globex has been open since Monday 17:00.
        ("2026-01-06 13:00", ("pre_open", "2026-01-06 14:30"), ("open", "2026-01-06 22:00")),
        # Tuesday 03:00 New York: closed until the pre-open at 04:00.
        ("2026-01-06 08:00", ("closed", "2026-01-06 09:00"), ("open", "2026-01-06 22:00")),
        # Tuesday 16:30 Chicago: Globex closed until 17:00 Chicago.
        ("2026-01-06 22:30", ("closed", "2026-01-07 09:00"), ("closed", "2026-01-06 23:00")),
        # Saturday: closed until Monday's pre-open; Globex until Sunday 17:00 Chicago.
        ("2026-01-10 12:00", ("closed", "2026-01-12 09:00"), ("closed", "2026-01-11 23:00")),
    ],
)
def test_market_status_through_the_week(at: str, aapl: tuple[str, str], esz6: tuple[str, str]) -> None:
    result = listing([], ENTRIES, "", "", ns(at))
    status = {details.entry.symbol: (details.status, details.until_ns) for details in result.details}
    assert status["AAPL"] == (aapl[0], ns(aapl[1]))
    assert status["ESZ6"] == (esz6[0], ns(esz6[1]))
    assert status["BTC-USD"] == ("open", 0)


def test_json_shape() -> None:
    result = listing(["MSFT"], [AAPL, BTC], "", "", TUESDAY_3PM)
    assert result.json() == {
        "instruments": ["AAPL", "BTC-USD", "MSFT"],
        "details": [
            {**to_json(AAPL), "market_status": "open", "status_until_ns": ns("2026-01-06 21:00")},
            {**to_json(BTC), "market_status": "open", "status_until_ns": 0},
        ],
    }
    aapl = result.json()["details"]
    assert isinstance(aapl, list)
    assert aapl[0]["calendar"] == {
        "timezone": "America/New_York",
        "hours": "09:30-16:00",
        "days": "Mon-Fri",
        "pre_open": "04:00",
        "holidays": [],
    }


@pytest.mark.parametrize(
    ("query", "asset_class"),
    [("", ""), ("apple", ""), ("", "equity"), ("S&P 500", "future"), ("x" * MAX_QUERY_LENGTH, "index")],
)
def test_check_filter_accepts(query: str, asset_class: str) -> None:
    assert check_filter(query, asset_class) is None


@pytest.mark.parametrize("query", ["x" * (MAX_QUERY_LENGTH + 1), "a\x00b", "line\nbreak", "tab\t", "\u200b"])
def test_check_filter_refuses_a_long_or_unprintable_query(query: str) -> None:
    assert check_filter(query, "") == f"q must be at most {MAX_QUERY_LENGTH} printable characters"


@pytest.mark.parametrize("asset_class", ["stock", "EQUITY", " equity", "equities"])
def test_check_filter_refuses_an_unknown_asset_class(asset_class: str) -> None:
    assert check_filter("", asset_class) == (
        "asset_class must be one of equity, etf, future, crypto, fx, index"
    )
