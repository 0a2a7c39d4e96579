"""An entry of the instrument master: what the instrument is, how its prices are shown and when it
trades. Pure: validation and the wire form (tapewire.v1.Instrument), no I/O.

Everything that reaches the master goes through `instrument_from_fields`, whether it came from a
reference file, gRPC or the simulator's universe, so one set of rules holds everywhere and every
error names the field it is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from tapewire import decimals
from tapewire.ticks import INSTRUMENT_PATTERN
from tapewire.v1 import reference_pb2 as rpb

from .calendar import WEEKDAYS, TradingCalendar, parse_calendar

ASSET_CLASSES = ("equity", "etf", "future", "crypto", "fx", "index")
MAX_NAME_LENGTH = 120
MAX_DECIMALS = decimals.MAX_FRACTION_DIGITS
_CURRENCY = re.compile(r"\A[A-Z]{3,5}\Z")
_VENUE = re.compile(r"\A[A-Z0-9]{1,16}\Z")  # a MIC is four; feeds' own names run longer


class InvalidInstrument(ValueError):
    """An entry that breaks a rule of the master; the message names the field."""


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    name: str
    asset_class: str
    currency: str
    venue: str
    tick_size: Decimal
    decimals: int  # every price of the instrument is shown with exactly this many decimals
    lot_size: Decimal
    calendar: TradingCalendar


def instrument_from_fields(fields: Mapping[str, object]) -> Instrument:
    """An instrument from named text fields (a CSV row, a JSON object, a message), validated.

    Required: symbol, name, asset_class, currency, venue, tick_size, timezone, hours. Optional:
    decimals (default: the tick size's own decimals), lot_size (default 1), days (default
    Mon-Fri, or every day for "24/7"), pre_open, holidays (ISO dates).
    """
    text = {key: _text(key, value) for key, value in fields.items() if value is not None}
    missing = [
        key
        for key in ("symbol", "name", "asset_class", "currency", "venue", "tick_size")
        if not text.get(key)
    ]
    missing += [key for key in ("timezone", "hours") if not text.get(key)]
    if missing:
        raise InvalidInstrument(f"missing {', '.join(missing)}")
    symbol = text["symbol"]
    if not INSTRUMENT_PATTERN.match(symbol):
        raise InvalidInstrument(f"symbol {symbol!r} must be 1-32 chars of [A-Za-z0-9._:/-]")
    name = text["name"].strip()
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidInstrument(f"name must be at most {MAX_NAME_LENGTH} printable characters")
    asset_class = text["asset_class"].lower()
    if asset_class not in ASSET_CLASSES:
        raise InvalidInstrument(
            f"asset_class {text['asset_class']!r} is not one of {', '.join(ASSET_CLASSES)}"
        )
    if not _CURRENCY.match(text["currency"]):
        raise InvalidInstrument(f"currency {text['currency']!r} must be 3-5 capital letters (ISO 4217)")
    if not _VENUE.match(text["venue"]):
        raise InvalidInstrument(
            f"venue {text['venue']!r} must be 1-16 capital letters or digits (a MIC or a feed's name)"
        )
    tick_size = _positive("tick_size", text["tick_size"])
    lot_size = _positive("lot_size", text.get("lot_size") or "1")
    shown = _decimals(text.get("decimals", ""), tick_size)
    try:
        calendar = parse_calendar(
            text["timezone"],
            text["hours"],
            text.get("days", ""),
            text.get("pre_open", ""),
            text.get("holidays", ""),
        )
    except ValueError as exc:
        raise InvalidInstrument(str(exc)) from exc
    return Instrument(
        symbol=symbol,
        name=name,
        asset_class=asset_class,
        currency=text["currency"],
        venue=text["venue"],
        tick_size=tick_size,
        decimals=shown,
        lot_size=lot_size,
        calendar=calendar,
    )


def _text(key: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        # A JSON number with a fraction arrives as a binary float (0.1 is not 0.1): decimals
        # are exact strings here, as everywhere in the contract.
        raise InvalidInstrument(f'{key} must be a string (decimals are written as strings: "0.01")')
    return str(value).strip()


def _positive(key: str, text: str) -> Decimal:
    value = decimals.parse_amount(text)
    if value is None or value <= 0:
        raise InvalidInstrument(f"{key} {text!r} must be a positive decimal ({decimals.GRAMMAR})")
    return value


def fraction_digits(value: Decimal) -> int:
    """How many decimals `value` needs: 0.25 -> 2, 0.010 -> 2, 100 -> 0."""
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _decimals(text: str, tick_size: Decimal) -> int:
    needed = fraction_digits(tick_size)
    if not text:
        return needed
    if not text.isascii() or not text.isdigit() or int(text) > MAX_DECIMALS:
        raise InvalidInstrument(f"decimals {text!r} must be a whole number from 0 to {MAX_DECIMALS}")
    if int(text) < needed:
        raise InvalidInstrument(f"decimals {text} cannot show the tick size {tick_size} ({needed} decimals)")
    return int(text)


def to_proto(instrument: Instrument) -> rpb.Instrument:
    calendar = instrument.calendar
    return rpb.Instrument(
        symbol=instrument.symbol,
        name=instrument.name,
        asset_class=instrument.asset_class,
        currency=instrument.currency,
        venue=instrument.venue,
        tick_size=decimals.fmt(instrument.tick_size),
        decimals=instrument.decimals,
        lot_size=decimals.fmt(instrument.lot_size),
        calendar=rpb.TradingCalendar(
            timezone=calendar.timezone,
            hours=calendar.hours_text(),
            days=calendar.days,
            pre_open=calendar.pre_open_text(),
            holidays=calendar.holiday_dates(),
        ),
    )


def from_proto(message: rpb.Instrument) -> Instrument:
    """The entry a message holds, validated by the same rules as a file's line."""
    calendar = message.calendar
    return instrument_from_fields(
        {
            "symbol": message.symbol,
            "name": message.name,
            "asset_class": message.asset_class,
            "currency": message.currency,
            "venue": message.venue,
            "tick_size": message.tick_size,
            # proto3 cannot tell unset from 0: 0 means "the tick size's own", as an empty cell
            # does in a file (and 0 decimals for a fractional tick would be refused anyway).
            "decimals": str(message.decimals) if message.decimals else "",
            "lot_size": message.lot_size,
            "timezone": calendar.timezone,
            "hours": calendar.hours,
            "days": days_text(calendar.days),
            "pre_open": calendar.pre_open,
            "holidays": ",".join(calendar.holidays),
        }
    )


def days_text(days: Iterable[int]) -> str:
    """ISO weekdays (1 = Monday) as a reference file spells them: "Mon,Tue"."""
    days = list(days)
    if any(not 1 <= day <= 7 for day in days):
        raise InvalidInstrument(f"days {list(days)} must be ISO weekdays 1 (Monday) to 7 (Sunday)")
    return ",".join(WEEKDAYS[day - 1] for day in days)


def to_fields(instrument: Instrument) -> dict[str, str | int]:
    """An entry as a line of a reference file spells it (JSON lines, or a CSV row's cells):
    what `python -m tapewire.reference list --json` prints, and `load` reads back."""
    calendar = instrument.calendar
    return {
        "symbol": instrument.symbol,
        "name": instrument.name,
        "asset_class": instrument.asset_class,
        "currency": instrument.currency,
        "venue": instrument.venue,
        "tick_size": decimals.fmt(instrument.tick_size),
        "decimals": instrument.decimals,
        "lot_size": decimals.fmt(instrument.lot_size),
        "timezone": calendar.timezone,
        "hours": calendar.hours_text(),
        "days": calendar.days_text(),
        "pre_open": calendar.pre_open_text(),
        "holidays": ",".join(calendar.holiday_dates()),
    }


_CALENDAR_FIELDS = ("timezone", "hours", "days", "pre_open", "holidays")


def to_json(instrument: Instrument) -> dict[str, object]:
    """The JSON of an entry in the API (GET /api/instruments): a file's fields, the calendar's
    grouped under "calendar", its holidays as a list of ISO dates."""
    fields = to_fields(instrument)
    calendar: dict[str, object] = {name: fields.pop(name) for name in _CALENDAR_FIELDS}
    calendar["holidays"] = instrument.calendar.holiday_dates()  # a list here, not a file's cell
    return {**fields, "calendar": calendar}
