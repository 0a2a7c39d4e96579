"""The instrument master's pure parts: an entry's rules and wire forms, reference files, and the master
as a topic's records amount to (MasterFeed and publish need Kafka: see the integration tests)."""

from __future__ import annotations

import json
from datetime import time
from decimal import Decimal

import pytest

from tapewire.reference.calendar import parse_calendar
from tapewire.reference.files import (
    COLUMNS,
    MAX_LINE_BYTES,
    LineError,
    format_of,
    read_entries,
)
from tapewire.reference.instrument import (
    MAX_NAME_LENGTH,
    Instrument,
    InvalidInstrument,
    days_text,
    fraction_digits,
    from_proto,
    instrument_from_fields,
    to_fields,
    to_json,
    to_proto,
)
from tapewire.reference.master import InstrumentMaster, read_record
from tapewire.v1 import reference_pb2 as rpb

AAPL = {
    "symbol": "AAPL",
    "name": "Apple Inc.",
    "asset_class": "equity",
    "currency": "USD",
    "venue": "XNAS",
    "tick_size": "0.01",
    "decimals": "2",
    "lot_size": "1",
    "timezone": "America/New_York",
    "hours": "09:30-16:00",
    "days": "Mon-Fri",
    "pre_open": "04:00",
}
ESZ6 = {
    "symbol": "ESZ6",
    "name": "E-mini S&P 500 Dec 2026",
    "asset_class": "future",
    "currency": "USD",
    "venue": "XCME",
    "tick_size": "0.25",
    "timezone": "America/Chicago",
    "hours": "17:00-16:00",
}
BTC = {
    "symbol": "BTC-USD",
    "name": "Bitcoin",
    "asset_class": "crypto",
    "currency": "USD",
    "venue": "CBSE",
    "tick_size": "0.01",
    "lot_size": "0.0001",
    "timezone": "UTC",
    "hours": "24/7",
}


def fields(base: dict[str, str] = AAPL, **changes: object) -> dict[str, object]:
    return {**base, **changes}


def rejection(**changes: object) -> str:
    with pytest.raises(InvalidInstrument) as caught:
        instrument_from_fields(fields(**changes))
    return str(caught.value)


# --- instrument_from_fields ---------------------------------------------------------------------------


def test_a_full_entry() -> None:
    entry = instrument_from_fields(AAPL)
    assert entry == Instrument(
        symbol="AAPL",
        name="Apple Inc.",
        asset_class="equity",
        currency="USD",
        venue="XNAS",
        tick_size=Decimal("0.01"),
        decimals=2,
        lot_size=Decimal(1),
        calendar=parse_calendar("America/New_York", "09:30-16:00", "Mon-Fri", "04:00"),
    )
    assert entry.calendar.pre_open == time(4, 0)


def test_the_optional_fields_take_their_defaults() -> None:
    entry = instrument_from_fields(ESZ6)
    assert entry.decimals == 2
    assert entry.lot_size == Decimal(1)
    assert entry.calendar.days == (1, 2, 3, 4, 5)
    assert entry.calendar.pre_open is None
    assert instrument_from_fields(BTC).calendar.days == (1, 2, 3, 4, 5, 6, 7)


def test_text_is_trimmed_and_the_asset_class_lowered() -> None:
    entry = instrument_from_fields(fields(symbol=" AAPL ", name="  Apple Inc. ", asset_class="Equity"))
    assert (entry.symbol, entry.name, entry.asset_class) == ("AAPL", "Apple Inc.", "equity")


def test_missing_fields_are_all_named() -> None:
    with pytest.raises(InvalidInstrument, match=r"^missing name, venue, hours$"):
        instrument_from_fields(fields(name="", venue="  ", hours=None))


@pytest.mark.parametrize("symbol", ["AAPL US", "A" * 33, "AA\nPL", "ÄPPL", "A,B", "A#B"], ids=repr)
def test_symbol_pattern(symbol: str) -> None:
    assert rejection(symbol=symbol).startswith("symbol ")


def test_symbol_accepts_its_whole_alphabet() -> None:
    symbol = "a.B_c:d/E-9" + "x" * 21
    assert len(symbol) == 32
    assert instrument_from_fields(fields(symbol=symbol)).symbol == symbol


@pytest.mark.parametrize("name", ["x" * (MAX_NAME_LENGTH + 1), "Apple\x00Inc.", "Apple\nInc.", "A\u200bB"])
def test_name_length_and_printable(name: str) -> None:
    assert rejection(name=name) == f"name must be at most {MAX_NAME_LENGTH} printable characters"


def test_name_at_the_limit() -> None:
    assert instrument_from_fields(fields(name="x" * MAX_NAME_LENGTH)).name == "x" * MAX_NAME_LENGTH


def test_asset_class() -> None:
    message = rejection(asset_class="stock")
    assert message.startswith("asset_class 'stock' is not one of ")
    assert "equity, etf, future, crypto, fx, index" in message


@pytest.mark.parametrize("currency", ["usd", "US", "USDTXX", "U5D"])
def test_currency(currency: str) -> None:
    assert rejection(currency=currency).startswith(f"currency {currency!r} ")


@pytest.mark.parametrize("venue", ["xnas", "X NAS", "A" * 17, "XNAS!"])
def test_venue(venue: str) -> None:
    assert rejection(venue=venue).startswith(f"venue {venue!r} ")


@pytest.mark.parametrize("tick_size", ["0", "0.000", "-0.01", "abc", "1e-2", "0,01", ".5", "NaN", "1_0"])
def test_tick_size_must_be_a_positive_decimal(tick_size: str) -> None:
    assert rejection(tick_size=tick_size).startswith(f"tick_size {tick_size!r} must be a positive decimal")


@pytest.mark.parametrize("lot_size", ["0", "-1", "x"])
def test_lot_size_must_be_a_positive_decimal(lot_size: str) -> None:
    assert rejection(lot_size=lot_size).startswith(f"lot_size {lot_size!r} must be a positive decimal")


@pytest.mark.parametrize(
    ("tick_size", "expected"),
    [("0.25", 2), ("0.00001", 5), ("1", 0), ("0.010", 2), ("5", 0), ("100", 0), ("0.5", 1)],
)
def test_decimals_default_to_the_tick_sizes(tick_size: str, expected: int) -> None:
    entry = instrument_from_fields(fields(tick_size=tick_size, decimals=""))
    assert entry.decimals == expected
    assert fraction_digits(Decimal(tick_size)) == expected


def test_decimals_may_show_more_than_the_tick_size() -> None:
    assert instrument_from_fields(fields(tick_size="0.25", decimals="4")).decimals == 4
    assert instrument_from_fields(fields(tick_size="1", decimals="0")).decimals == 0


def test_decimals_below_the_tick_sizes_are_refused() -> None:
    message = rejection(tick_size="0.25", decimals="1")
    assert message == "decimals 1 cannot show the tick size 0.25 (2 decimals)"


@pytest.mark.parametrize("decimals", ["-1", "1.5", "two", "16", "２"])
def test_decimals_must_be_a_whole_number_in_range(decimals: str) -> None:
    assert rejection(decimals=decimals).startswith(f"decimals {decimals!r} must be a whole number")


def test_numbers_are_read_as_their_text() -> None:
    entry = instrument_from_fields(fields(decimals=3, tick_size=1, lot_size=100))
    assert (entry.decimals, entry.tick_size, entry.lot_size) == (3, Decimal(1), Decimal(100))


@pytest.mark.parametrize("value", [True, 2.0, ["2"], {"n": 2}])
def test_other_types_are_refused(value: object) -> None:
    assert rejection(decimals=value).startswith("decimals must be a string")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "America"}, "timezone"),
        ({"hours": "9:30-16:00"}, "hours"),
        ({"hours": "09:30-24:00"}, "hours"),
        ({"days": "Mon-Fryday"}, "days"),
        ({"days": "Mon,Mon"}, "days"),
        ({"pre_open": "4am"}, "pre_open"),
        ({"pre_open": "10:00"}, "pre_open"),  # not before the open
        ({"hours": "24/7", "pre_open": "04:00"}, "pre_open"),
        ({"hours": "24/7", "days": "Mon-Fri", "pre_open": ""}, "days"),
    ],
)
def test_calendar_errors_surface_as_invalid_instrument(changes: dict[str, str], field: str) -> None:
    assert rejection(**changes).startswith(f"{field}: ")


# --- wire forms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        AAPL,
        ESZ6,
        BTC,
        fields(ESZ6, symbol="EURUSD", asset_class="fx", tick_size="0.00001", venue="EBS"),
        fields(AAPL, days="Mon,Wed,Fri", pre_open="", tick_size="0.0100", decimals="4", lot_size="100"),
        fields(AAPL, timezone="Europe/Berlin", hours="22:00-08:00", days="Sun-Thu", pre_open="21:30"),
    ],
    ids=lambda entry: str(entry["symbol"]),
)
def test_proto_round_trip(entry: dict[str, object]) -> None:
    instrument = instrument_from_fields(entry)
    message = rpb.Instrument.FromString(to_proto(instrument).SerializeToString())
    assert from_proto(message) == instrument


def test_to_proto() -> None:
    message = to_proto(instrument_from_fields(fields(tick_size="0.010", lot_size="100.0")))
    assert message.tick_size == "0.01"
    assert message.lot_size == "100"
    assert message.decimals == 2
    assert message.calendar == rpb.TradingCalendar(
        timezone="America/New_York", hours="09:30-16:00", days=[1, 2, 3, 4, 5], pre_open="04:00"
    )


def test_from_proto_validates() -> None:
    message = to_proto(instrument_from_fields(AAPL))
    message.currency = "usd"
    with pytest.raises(InvalidInstrument, match=r"^currency 'usd'"):
        from_proto(message)
    message = to_proto(instrument_from_fields(AAPL))
    message.calendar.days.append(8)
    with pytest.raises(InvalidInstrument, match=r"^days "):
        from_proto(message)


def test_to_json() -> None:
    assert to_json(instrument_from_fields(AAPL)) == {
        "symbol": "AAPL",
        "name": "Apple Inc.",
        "asset_class": "equity",
        "currency": "USD",
        "venue": "XNAS",
        "tick_size": "0.01",
        "decimals": 2,
        "lot_size": "1",
        "calendar": {
            "timezone": "America/New_York",
            "hours": "09:30-16:00",
            "days": "Mon-Fri",
            "pre_open": "04:00",
            "holidays": [],
        },
    }
    btc = to_json(instrument_from_fields(BTC))
    assert btc["lot_size"] == "0.0001"
    assert btc["calendar"] == {
        "timezone": "UTC",
        "hours": "24/7",
        "days": "Mon-Sun",
        "pre_open": "",
        "holidays": [],
    }
    json.dumps(btc)  # JSON as it is


def test_days_text() -> None:
    assert days_text([1, 2, 3]) == "Mon,Tue,Wed"
    assert days_text([7]) == "Sun"
    assert days_text([]) == ""
    with pytest.raises(InvalidInstrument, match=r"^days \[0\]"):
        days_text([0])


# --- reference files ----------------------------------------------------------------------------------

HEADER = ",".join(column for column in COLUMNS if column != "holidays")  # an optional column left out
AAPL_LINE = "AAPL,Apple Inc.,equity,USD,XNAS,0.01,2,1,America/New_York,09:30-16:00,Mon-Fri,04:00"
MSFT_LINE = "MSFT,Microsoft Corp.,equity,USD,XNAS,0.01,,,America/New_York,09:30-16:00,,"


def read(text: str, kind: str = "csv") -> list[Instrument | LineError]:
    assert kind in ("csv", "jsonl")
    return list(read_entries(text.splitlines(keepends=True), "csv" if kind == "csv" else "jsonl"))


def symbols_and_errors(results: list[Instrument | LineError]) -> list[str]:
    return [result.symbol if isinstance(result, Instrument) else str(result) for result in results]


def test_format_of() -> None:
    assert format_of("master.csv") == "csv"
    assert format_of("MASTER.CSV") == "csv"
    assert format_of("master.jsonl") == "jsonl"
    assert format_of("master.ndjson") == "jsonl"
    assert format_of("master.json") == "jsonl"


def test_csv_a_bad_line_costs_only_itself() -> None:
    text = f"{HEADER}\n{AAPL_LINE}\nBAD SYMBOL,x,equity,USD,XNAS,0.01,,,UTC,24/7,,\n{MSFT_LINE}\n"
    results = read(text)
    assert symbols_and_errors(results) == [
        "AAPL",
        "line 3: symbol 'BAD SYMBOL' must be 1-32 chars of [A-Za-z0-9._:/-]",
        "MSFT",
    ]
    assert results[0] == instrument_from_fields(AAPL)
    msft = results[2]
    assert isinstance(msft, Instrument)
    assert (msft.decimals, msft.lot_size, msft.calendar.days, msft.calendar.pre_open) == (
        2,
        Decimal(1),
        (1, 2, 3, 4, 5),
        None,
    )
    assert results[1] == LineError(3, "symbol 'BAD SYMBOL' must be 1-32 chars of [A-Za-z0-9._:/-]")


def test_csv_comments_and_blank_lines_are_skipped_but_counted() -> None:
    text = f"# the master\n\n{HEADER}\n  # a comment\n{AAPL_LINE}\n\n   \nX,x,stock,USD,XNAS,1,,,UTC,24/7,,\n"
    assert symbols_and_errors(read(text)) == [
        "AAPL",
        "line 8: asset_class 'stock' is not one of equity, etf, future, crypto, fx, index",
    ]


def test_csv_columns_in_any_order_and_a_subset() -> None:
    text = "hours,timezone,tick_size,venue,currency,asset_class,name,symbol\n"
    text += "24/7,UTC,0.01,CBSE,USD,crypto,Bitcoin,BTC-USD\n"
    (entry,) = read(text)
    assert isinstance(entry, Instrument)
    assert entry.symbol == "BTC-USD"
    assert entry.calendar.always_open


def test_csv_quoted_cells() -> None:
    line = 'BRK.B,"Berkshire Hathaway, Inc. ""B""",equity,USD,XNYS,0.01,,,America/New_York,09:30-16:00,,'
    text = f"{HEADER}\n{line}\n"
    (entry,) = read(text)
    assert isinstance(entry, Instrument)
    assert entry.name == 'Berkshire Hathaway, Inc. "B"'


def test_csv_unknown_column_in_header() -> None:
    results = read(f"# master\nsymbol,name,colour\n{AAPL_LINE}\n")
    assert len(results) == 1
    error = results[0]
    assert isinstance(error, LineError)
    assert error.line == 2
    assert error.reason.startswith("header: unknown columns colour (columns: symbol, name,")


def test_csv_repeated_column_in_header() -> None:
    (error,) = read("symbol,name,symbol\nA,b,A\n")
    assert isinstance(error, LineError)
    assert error.line == 1
    assert error.reason.startswith("header: a column repeats")


def test_csv_header_that_is_not_csv() -> None:
    (error,) = read_entries(["# master\n", "symbol,na\rme\n", "A,b\n"], "csv")
    assert isinstance(error, LineError)
    assert error.line == 2
    assert error.reason.startswith("header: not CSV: ")


def test_csv_wrong_number_of_cells() -> None:
    text = f"{HEADER}\n{AAPL_LINE},extra\nMSFT,Microsoft\n{AAPL_LINE}\n"
    assert symbols_and_errors(read(text)) == [
        "line 2: 13 values for 12 columns",
        "line 3: 2 values for 12 columns",
        "AAPL",
    ]


def test_csv_line_that_is_not_csv() -> None:
    lines = [HEADER + "\n", "A,b\rc\n", AAPL_LINE + "\n"]
    results = list(read_entries(lines, "csv"))
    assert isinstance(results[0], LineError)
    assert results[0].line == 2
    assert results[0].reason.startswith("not CSV: ")
    assert isinstance(results[1], Instrument)


def test_csv_too_long_line() -> None:
    long_name = "x" * MAX_LINE_BYTES
    text = f"{HEADER}\nA,{long_name},equity,USD,XNAS,0.01,,,UTC,09:30-16:00,,\n{AAPL_LINE}\n"
    assert symbols_and_errors(read(text)) == [f"line 2: longer than {MAX_LINE_BYTES} bytes", "AAPL"]


def test_duplicate_symbol_names_the_earlier_line() -> None:
    text = f"{HEADER}\n{AAPL_LINE}\n{MSFT_LINE}\n# again\n{AAPL_LINE}\n"
    assert symbols_and_errors(read(text)) == ["AAPL", "MSFT", "line 5: symbol AAPL is already on line 2"]


def test_a_rejected_line_does_not_claim_its_symbol() -> None:
    bad = AAPL_LINE.replace(",USD,", ",usd,")
    text = f"{HEADER}\n{bad}\n{AAPL_LINE}\n"
    assert symbols_and_errors(read(text)) == [
        "line 2: currency 'usd' must be 3-5 capital letters (ISO 4217)",
        "AAPL",
    ]


def test_empty_files() -> None:
    assert read("") == []
    assert read("# nothing\n\n") == []
    assert read(f"{HEADER}\n") == []
    assert read("", "jsonl") == []


def test_json_lines() -> None:
    text = "\n".join(
        [
            "# the master",
            json.dumps(AAPL),
            "",
            json.dumps(ESZ6),
            "not json",
            json.dumps(["AAPL"]),
            json.dumps({**BTC, "colour": "orange", "size": 1}),
            json.dumps({**BTC, "decimals": 3}),
            json.dumps({**BTC, "decimals": None}),
            json.dumps({**AAPL, "symbol": "IBM", "venue": "xnys"}),
            json.dumps(AAPL),
        ]
    )
    results = read(text, "jsonl")
    assert symbols_and_errors(results)[0:2] == ["AAPL", "ESZ6"]
    error = results[2]
    assert isinstance(error, LineError)
    assert error.line == 5
    assert error.reason.startswith("not JSON: ")
    assert symbols_and_errors(results)[3:] == [
        "line 6: not a JSON object",
        "line 7: unknown fields colour, size",
        "BTC-USD",
        "line 9: symbol BTC-USD is already on line 8",
        "line 10: venue 'xnys' must be 1-16 capital letters or digits (a MIC or a feed's name)",
        "line 11: symbol AAPL is already on line 2",
    ]
    btc = results[5]
    assert isinstance(btc, Instrument)
    assert btc.decimals == 3


def test_json_null_is_a_missing_field() -> None:
    (error,) = read(json.dumps({**BTC, "name": None}), "jsonl")
    assert error == LineError(1, "missing name")


def test_json_numbers_are_allowed_for_decimals_not_floats() -> None:
    (entry,) = read(json.dumps({**ESZ6, "decimals": 2}), "jsonl")
    assert isinstance(entry, Instrument)
    assert entry.decimals == 2
    (error,) = read(json.dumps({**ESZ6, "decimals": 2.0}), "jsonl")
    assert isinstance(error, LineError) and error.reason.startswith("decimals must be a string")
    (error,) = read(json.dumps({**ESZ6, "decimals": -1}), "jsonl")
    assert isinstance(error, LineError)
    assert error.reason.startswith("decimals '-1' must be a whole number")
    (error,) = read(json.dumps({**ESZ6, "decimals": 1}), "jsonl")
    assert error == LineError(1, "decimals 1 cannot show the tick size 0.25 (2 decimals)")


def test_json_too_long_line() -> None:
    long_line = json.dumps({**BTC, "name": "x" * MAX_LINE_BYTES})
    results = read(f"{long_line}\n{json.dumps(BTC)}\n", "jsonl")
    assert symbols_and_errors(results) == [f"line 1: longer than {MAX_LINE_BYTES} bytes", "BTC-USD"]


def test_json_line_length_is_counted_in_bytes() -> None:
    name = "é" * (MAX_LINE_BYTES // 2)  # 2 bytes each in UTF-8: fewer characters than the limit
    line = json.dumps({**BTC, "name": name}, ensure_ascii=False)
    assert len(line) < MAX_LINE_BYTES < len(line.encode())
    (error,) = read(line, "jsonl")
    assert error == LineError(1, f"longer than {MAX_LINE_BYTES} bytes")


def test_json_nested_too_deep_is_a_bad_line() -> None:
    results = read("[" * 50_000 + "\n" + json.dumps(BTC) + "\n", "jsonl")
    assert isinstance(results[0], LineError)
    assert results[0].line == 1
    assert results[0].reason.startswith("not JSON: ")
    assert isinstance(results[1], Instrument)


# --- the master ----------------------------------------------------------------------------------------


def record(entry: dict[str, object]) -> tuple[bytes, bytes]:
    instrument = instrument_from_fields(entry)
    return instrument.symbol.encode(), to_proto(instrument).SerializeToString()


def test_master_applies_records_in_order() -> None:
    master = InstrumentMaster()
    master.apply(*record(AAPL))
    master.apply(*record(ESZ6))
    assert len(master) == 2
    assert master.get("AAPL") == instrument_from_fields(AAPL)
    assert [entry.symbol for entry in master] == ["AAPL", "ESZ6"]
    master.apply(*record(fields(AAPL, name="Apple")))
    entry = master.get("AAPL")
    assert entry is not None
    assert entry.name == "Apple"
    assert len(master) == 2


def test_master_tombstone_removes() -> None:
    master = InstrumentMaster([instrument_from_fields(AAPL), instrument_from_fields(ESZ6)])
    master.apply(b"AAPL", None)
    assert master.get("AAPL") is None
    assert [entry.symbol for entry in master] == ["ESZ6"]
    master.apply(b"NOPE", None)  # removing what is not there is nothing
    assert len(master) == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"AAPL", b"\xff\xff\xff"),  # not a message
        (b"AAPL", b"\x0a\x02\xff\xfe"),  # a symbol that is not UTF-8
        (b"AAPL", b""),  # an empty message: every field missing
        (b"AAPL", to_proto(instrument_from_fields(fields(currency="EUR"))).SerializeToString()[:-3]),
        (b"MSFT", record(AAPL)[1]),  # under another key
        (None, record(AAPL)[1]),  # no key
    ],
    ids=["garbage", "not-utf8", "empty", "truncated", "other-key", "no-key"],
)
def test_master_skips_bad_records(key: bytes | None, value: bytes) -> None:
    master = InstrumentMaster([instrument_from_fields(AAPL)])
    before = master.get("AAPL")
    assert read_record(key, value) is None
    master.apply(key, value)
    assert master.get("AAPL") == before
    assert master.get("MSFT") is None
    assert len(master) == 1


def test_master_skips_an_invalid_entry() -> None:
    message = to_proto(instrument_from_fields(AAPL))
    message.tick_size = "0"
    assert read_record(b"AAPL", message.SerializeToString()) is None


def test_read_record() -> None:
    key, value = record(AAPL)
    assert read_record(key, value) == ("AAPL", instrument_from_fields(AAPL))
    assert read_record(b"AAPL", None) == ("AAPL", None)
    assert read_record(None, None) is None


def test_what_list_prints_loads_back_as_the_same_entry() -> None:
    (entry,) = read(json.dumps(ESZ6), "jsonl")
    assert isinstance(entry, Instrument)
    (again,) = read(json.dumps(to_fields(entry)), "jsonl")
    assert again == entry


def test_holidays_round_trip_through_a_file_the_wire_and_the_api() -> None:
    line = {**ESZ6, "holidays": "2026-12-25; 2026-11-26"}
    (entry,) = read(json.dumps(line), "jsonl")
    assert isinstance(entry, Instrument)
    assert entry.calendar.holiday_dates() == ["2026-11-26", "2026-12-25"]
    assert from_proto(rpb.Instrument.FromString(to_proto(entry).SerializeToString())) == entry
    assert to_fields(entry)["holidays"] == "2026-11-26,2026-12-25"
    assert to_json(entry)["calendar"] == {
        **to_json(entry)["calendar"],
        "holidays": ["2026-11-26", "2026-12-25"],
    }  # type: ignore[dict-item]
    (error,) = read(json.dumps({**ESZ6, "holidays": "2026-02-30"}), "jsonl")
    assert error == LineError(1, "holidays: '2026-02-30' is not a date (YYYY-MM-DD)")
