from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.dashboard_api.rest import views
from services.dashboard_api.stores.bars import BarRow
from tapewire.v1 import market_pb2 as pb

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def full_state() -> pb.InstrumentState:
    return pb.InstrumentState(
        instrument="AAPL",
        venue="XNAS",
        version=42,
        last_sequence=1001,
        last_price="187.42",
        last_size="100",
        last_trade_time_ns=T0 + 5,
        bid_price="187.41",
        bid_size="300",
        ask_price="187.43",
        ask_size="200",
        mid="187.42",
        spread="0.02",
        spread_bps=1.0671,
        session_day=20454,
        session_open="185",
        session_high="188.1",
        session_low="184.9",
        session_volume="12500",
        session_turnover="2330000.5",
        trade_count=77,
        vwap="186.40004",
        change="2.42",
        change_pct=1.3081,
        previous_close="187.58",
        change_basis=pb.CHANGE_BASIS_PREVIOUS_CLOSE,
        session_close="190",
        bar_1s=pb.Bar(
            start_time_ns=T0,
            open="187.4",
            high="187.42",
            low="187.4",
            close="187.42",
            volume="300",
            trade_count=3,
        ),
        bar_1m=pb.Bar(
            start_time_ns=T0,
            open="187",
            high="187.5",
            low="186.9",
            close="187.42",
            volume="4000",
            trade_count=31,
        ),
        times=pb.StageTimes(
            exchange_ns=T0 + 5, ingest_ns=T0 + 10, processed_ns=T0 + 20, cached_ns=T0 + 30, sent_ns=0
        ),
        source=pb.SourcePosition(partition=2, offset=999),
    )


FULL_STATE_JSON = {
    "instrument": "AAPL",
    "venue": "XNAS",
    "version": 42,
    "last_sequence": 1001,
    "last_price": "187.42",
    "last_size": "100",
    "last_trade_time_ns": T0 + 5,
    "bid_price": "187.41",
    "bid_size": "300",
    "ask_price": "187.43",
    "ask_size": "200",
    "mid": "187.42",
    "spread": "0.02",
    "spread_bps": 1.0671,
    "session_day": 20454,
    "session_open": "185",
    "session_high": "188.1",
    "session_low": "184.9",
    "session_volume": "12500",
    "session_turnover": "2330000.5",
    "trade_count": 77,
    "vwap": "186.40004",
    "change": "2.42",
    "change_pct": 1.3081,
    "previous_close": "187.58",
    "change_basis": "previous_close",
    "session_close": "190",
    "bar_1s": {
        "start_time_ns": T0,
        "open": "187.4",
        "high": "187.42",
        "low": "187.4",
        "close": "187.42",
        "volume": "300",
        "trade_count": 3,
    },
    "bar_1m": {
        "start_time_ns": T0,
        "open": "187",
        "high": "187.5",
        "low": "186.9",
        "close": "187.42",
        "volume": "4000",
        "trade_count": 31,
    },
    "times": {
        "exchange_ns": T0 + 5,
        "ingest_ns": T0 + 10,
        "processed_ns": T0 + 20,
        "cached_ns": T0 + 30,
        "sent_ns": 0,
    },
}


def test_full_state() -> None:
    assert views.state_to_json(full_state()) == FULL_STATE_JSON


def test_sent_ns_is_stamped_when_given() -> None:
    assert views.state_to_json(full_state(), sent_ns=T0 + 40)["times"]["sent_ns"] == T0 + 40


def test_empty_state_has_nulls_for_unknown_decimals_bars_and_ratios() -> None:
    state = pb.InstrumentState(instrument="NEW", version=1, times=pb.StageTimes(cached_ns=T0))
    assert views.state_to_json(state) == {
        "instrument": "NEW",
        "venue": "",
        "version": 1,
        "last_sequence": 0,
        "last_price": None,
        "last_size": None,
        "last_trade_time_ns": 0,
        "bid_price": None,
        "bid_size": None,
        "ask_price": None,
        "ask_size": None,
        "mid": None,
        "spread": None,
        "spread_bps": None,
        "session_day": 0,
        "session_open": None,
        "session_high": None,
        "session_low": None,
        "session_volume": None,
        "session_turnover": None,
        "trade_count": 0,
        "vwap": None,
        "change": None,
        "change_pct": None,
        "previous_close": None,
        "change_basis": None,
        "session_close": None,
        "bar_1s": None,
        "bar_1m": None,
        "times": {"exchange_ns": 0, "ingest_ns": 0, "processed_ns": 0, "cached_ns": T0, "sent_ns": 0},
    }


def test_a_change_says_what_it_is_from_and_an_old_state_was_from_the_open() -> None:
    old = views.state_to_json(pb.InstrumentState(instrument="A", change="1"))
    assert (old["change_basis"], old["previous_close"]) == ("session_open", None)
    new = views.state_to_json(
        pb.InstrumentState(
            instrument="A", change="1", previous_close="9", change_basis=pb.CHANGE_BASIS_PREVIOUS_CLOSE
        )
    )
    assert (new["change_basis"], new["previous_close"]) == ("previous_close", "9")


def test_zero_ratios_are_numbers_when_their_decimal_is_known() -> None:
    state = pb.InstrumentState(instrument="A", spread="0", spread_bps=0.0, change="0", change_pct=0.0)
    rendered = views.state_to_json(state)
    assert (rendered["spread_bps"], rendered["change_pct"]) == (0.0, 0.0)


def test_non_finite_ratios_become_null() -> None:
    state = pb.InstrumentState(
        instrument="A", spread="1", spread_bps=float("inf"), change="1", change_pct=float("nan")
    )
    rendered = views.state_to_json(state)
    assert (rendered["spread_bps"], rendered["change_pct"]) == (None, None)
    json.loads(views.dumps(rendered))  # still valid JSON


def test_dumps_is_compact_keeps_unicode_and_refuses_nan() -> None:
    assert views.dumps({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'
    with pytest.raises(ValueError, match="JSON"):
        views.dumps({"x": float("nan")})


def test_state_json_leaves_the_source_out() -> None:
    assert "source" not in views.state_to_json(full_state())


def test_times() -> None:
    times = pb.StageTimes(exchange_ns=1, ingest_ns=2, processed_ns=3, cached_ns=4, sent_ns=5)
    assert views.times_to_json(times) == {
        "exchange_ns": 1,
        "ingest_ns": 2,
        "processed_ns": 3,
        "cached_ns": 4,
        "sent_ns": 5,
    }
    assert views.times_to_json(times, sent_ns=9)["sent_ns"] == 9


def test_bar_row() -> None:
    row = BarRow(
        start=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        open=Decimal("187.000"),
        high=Decimal("187.50"),
        low=Decimal("186.9"),
        close=Decimal("187.42"),
        volume=Decimal("4000"),
        trade_count=31,
        vwap=Decimal("186.4000"),
    )
    assert views.bar_row_to_json(row) == {
        "start_time_ns": T0 + 60 * 10**9,
        "start": "2026-01-01T00:01:00Z",
        "open": "187",
        "high": "187.5",
        "low": "186.9",
        "close": "187.42",
        "volume": "4000",
        "trade_count": 31,
        "vwap": "186.4",
    }


def test_bar_row_with_an_unknown_vwap_renders_null() -> None:
    row = BarRow(datetime(2026, 1, 1, tzinfo=UTC), *([Decimal("1")] * 5), trade_count=1, vwap=None)
    assert views.bar_row_to_json(row)["vwap"] is None


def test_bar_row_in_another_time_zone_is_rendered_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    row = BarRow(datetime(2026, 1, 1, 1, 0, 1, tzinfo=paris), *([Decimal("1")] * 5), trade_count=1, vwap=None)
    rendered = views.bar_row_to_json(row)
    assert (rendered["start_time_ns"], rendered["start"]) == (T0 + 10**9, "2026-01-01T00:00:01Z")
