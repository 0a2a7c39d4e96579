"""What clients see of states and bars, as JSON (pure, no I/O); messages are in live/encoders.py.

Field names are the proto's (snake_case). Decimal strings stay strings, because a JSON number
would become a binary float in the browser; an empty decimal (not known yet) becomes null.
Integers stay integers. `source` (the processor's Kafka position) is internal and left out.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tapewire import decimals
from tapewire.v1 import market_pb2 as pb

if TYPE_CHECKING:
    from ..stores.bars import BarRow

JsonObject = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def dumps(value: object) -> str:
    """Compact JSON text; NaN and infinities are refused (they are not JSON)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# A state written before calendars (UNSPECIFIED) measured its change from the session open.
_CHANGE_BASES = {
    pb.CHANGE_BASIS_UNSPECIFIED: "session_open",
    pb.CHANGE_BASIS_PREVIOUS_CLOSE: "previous_close",
    pb.CHANGE_BASIS_SESSION_OPEN: "session_open",
}


def state_to_json(state: pb.InstrumentState, sent_ns: int | None = None) -> JsonObject:
    """The JSON of one state; `sent_ns`, when given, is stamped into `times`."""
    return {
        "instrument": state.instrument,
        "venue": state.venue,
        "version": state.version,
        "last_sequence": state.last_sequence,
        "last_price": _decimal(state.last_price),
        "last_size": _decimal(state.last_size),
        "last_trade_time_ns": state.last_trade_time_ns,
        "bid_price": _decimal(state.bid_price),
        "bid_size": _decimal(state.bid_size),
        "ask_price": _decimal(state.ask_price),
        "ask_size": _decimal(state.ask_size),
        "mid": _decimal(state.mid),
        "spread": _decimal(state.spread),
        "spread_bps": _ratio(state.spread_bps, state.spread),
        "session_day": state.session_day,
        "session_open": _decimal(state.session_open),
        "session_high": _decimal(state.session_high),
        "session_low": _decimal(state.session_low),
        "session_volume": _decimal(state.session_volume),
        "session_turnover": _decimal(state.session_turnover),
        "trade_count": state.trade_count,
        "vwap": _decimal(state.vwap),
        "change": _decimal(state.change),
        "change_pct": _ratio(state.change_pct, state.change),
        "previous_close": _decimal(state.previous_close),
        "change_basis": _CHANGE_BASES.get(state.change_basis) if state.change else None,
        "session_close": _decimal(state.session_close),
        "bar_1s": bar_to_json(state.bar_1s),
        "bar_1m": bar_to_json(state.bar_1m),
        "times": times_to_json(state.times, sent_ns),
    }


def bar_to_json(bar: pb.Bar) -> JsonObject | None:
    """A forming bar, or null when there is none yet (start_time_ns 0)."""
    if bar.start_time_ns == 0:
        return None
    return {
        "start_time_ns": bar.start_time_ns,
        "open": _decimal(bar.open),
        "high": _decimal(bar.high),
        "low": _decimal(bar.low),
        "close": _decimal(bar.close),
        "volume": _decimal(bar.volume),
        "trade_count": bar.trade_count,
    }


def times_to_json(times: pb.StageTimes, sent_ns: int | None = None) -> JsonObject:
    return {
        "exchange_ns": times.exchange_ns,
        "ingest_ns": times.ingest_ns,
        "processed_ns": times.processed_ns,
        "cached_ns": times.cached_ns,
        "sent_ns": times.sent_ns if sent_ns is None else sent_ns,
    }


def bar_row_to_json(row: BarRow) -> JsonObject:
    """A stored bar as /api/bars returns it."""
    start = row.start.astimezone(UTC)
    return {
        "start_time_ns": (start - _EPOCH) // _MICROSECOND * 1000,
        "start": start.isoformat().replace("+00:00", "Z"),
        "open": decimals.fmt(row.open),
        "high": decimals.fmt(row.high),
        "low": decimals.fmt(row.low),
        "close": decimals.fmt(row.close),
        "volume": decimals.fmt(row.volume),
        "trade_count": row.trade_count,
        # fmt gives "" for an unknown VWAP; clients get null, as for every unknown decimal.
        "vwap": _decimal(decimals.fmt(row.vwap)),
    }


def _decimal(text: str) -> str | None:
    return text or None


def _ratio(value: float, basis: str) -> float | None:
    # A ratio means nothing while the decimal it derives from is unknown (proto3 says 0.0).
    if not basis or not math.isfinite(value):
        return None
    return value
