"""Reference files: instrument master entries as CSV (with a header row) or JSON lines.

    symbol,name,asset_class,currency,venue,tick_size,decimals,lot_size,timezone,hours,days,pre_open,holidays
    AAPL,Apple Inc.,equity,USD,XNAS,0.01,2,1,America/New_York,09:30-16:00,Mon-Fri,04:00,2026-11-26;2026-12-25

    {"symbol":"ESZ6","name":"E-mini S&P 500 Dec 2026","asset_class":"future","currency":"USD",
     "venue":"XCME","tick_size":"0.25","timezone":"America/Chicago","hours":"17:00-16:00"}

The fields and their rules are `instrument.instrument_from_fields`'s. Blank lines and lines
starting with "#" are skipped. Every other line gives an entry or a `LineError` naming the line
and what is wrong with it, so one bad line costs only itself: the caller loads the rest. Pure:
the caller opens the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from .instrument import Instrument, InvalidInstrument, instrument_from_fields

Format = Literal["csv", "jsonl"]
MAX_LINE_BYTES = 64 * 1024
COLUMNS = (
    "symbol",
    "name",
    "asset_class",
    "currency",
    "venue",
    "tick_size",
    "decimals",
    "lot_size",
    "timezone",
    "hours",
    "days",
    "pre_open",
    "holidays",
)


@dataclass(frozen=True, slots=True)
class LineError:
    line: int  # from 1, as an editor numbers them
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def format_of(name: str) -> Format:
    """The format a file's name says: .csv, else JSON lines (.jsonl, .ndjson, .json)."""
    return "csv" if name.lower().endswith(".csv") else "jsonl"


def read_entries(lines: Iterable[str], kind: Format) -> Iterator[Instrument | LineError]:
    """Each entry of a file, or the error of its line, in file order. A symbol seen twice is an
    error on its second line: a file says one thing per instrument."""
    seen: dict[str, int] = {}
    parse = _csv_rows if kind == "csv" else _json_rows
    for number, fields in parse(lines):
        if isinstance(fields, LineError):
            yield fields
            continue
        try:
            entry = instrument_from_fields(fields)
        except InvalidInstrument as exc:
            yield LineError(number, str(exc))
            continue
        if entry.symbol in seen:
            yield LineError(number, f"symbol {entry.symbol} is already on line {seen[entry.symbol]}")
            continue
        seen[entry.symbol] = number
        yield entry


Row = tuple[int, dict[str, object] | LineError]


def _meaningful(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, line


def _json_rows(lines: Iterable[str]) -> Iterator[Row]:
    for number, line in _meaningful(lines):
        if len(line.encode()) > MAX_LINE_BYTES:
            yield number, LineError(number, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep ("[[[[...")
            yield number, LineError(number, f"not JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield number, LineError(number, "not a JSON object")
            continue
        unknown = sorted(set(value) - set(COLUMNS))
        if unknown:
            yield number, LineError(number, f"unknown fields {', '.join(unknown)}")
            continue
        yield number, value


def _csv_rows(lines: Iterable[str]) -> Iterator[Row]:
    rows = _meaningful(lines)
    header_line = next(rows, None)
    if header_line is None:
        return
    number, text = header_line
    try:
        header = [name.strip() for name in next(csv.reader([text]))]
    except csv.Error as exc:
        yield number, LineError(number, f"header: not CSV: {exc}")
        return
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown or len(set(header)) != len(header):
        problem = f"unknown columns {', '.join(unknown)}" if unknown else "a column repeats"
        yield number, LineError(number, f"header: {problem} (columns: {', '.join(COLUMNS)})")
        return
    for number, text in rows:
        if len(text.encode()) > MAX_LINE_BYTES:
            yield number, LineError(number, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            cells = next(csv.reader([text]))
        except csv.Error as exc:
            yield number, LineError(number, f"not CSV: {exc}")
            continue
        if len(cells) != len(header):
            yield number, LineError(number, f"{len(cells)} values for {len(header)} columns")
            continue
        yield number, dict(zip(header, cells, strict=True))
