"""Replay ticks from newline-delimited JSON (a file or stdin), optionally at the pace they were recorded.

One tick per line (the format is documented in services/ingester/README.md)::

    {"instrument":"AAPL","venue":"XNAS","kind":"trade","price":"187.42","size":"100","seq":17,
     "ts":"2026-11-20T14:30:00.123456Z"}
    {"instrument":"AAPL","kind":"quote","bid":"187.40","bid_size":"300","ask":"187.44",
     "ask_size":"200","ts_ns":1795185000123456000}

`LineParser` is pure: it turns one line into a validated tick or raises `BadRecord` with a reason.
Every line goes through `tapewire.ticks.from_proto`, the same check the processor makes, so the
ingester never publishes a tick the processor would reject.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import BinaryIO

from services.ingester.sources import InvalidRecord, InvalidRecordHandler
from services.ingester.sources.pacing import replay_delay_s
from tapewire.errors import InvalidTick
from tapewire.ticks import RawTick, from_proto
from tapewire.v1 import market_pb2 as pb

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
_SKIP_CHUNK_BYTES = 64 * 1024
_MAX_SEQUENCE = 2**64 - 1
_INT64 = range(-(2**63), 2**63)

# Why a line was skipped; each is a label value of ingester_invalid_records_total.
LINE_TOO_LONG = "line_too_long"
BAD_ENCODING = "bad_encoding"
BAD_JSON = "bad_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
INVALID_TICK = "invalid_tick"
REASONS = (LINE_TOO_LONG, BAD_ENCODING, BAD_JSON, NOT_AN_OBJECT, MISSING_FIELD, BAD_FIELD, INVALID_TICK)

_KINDS: dict[str, pb.TickKind] = {"trade": pb.TICK_KIND_TRADE, "quote": pb.TICK_KIND_QUOTE}
_TRADE_FIELDS = (("price", "price"), ("size", "size"))
_QUOTE_FIELDS = (
    ("bid", "bid_price"),
    ("bid_size", "bid_size"),
    ("ask", "ask_price"),
    ("ask_size", "ask_size"),
)
_ISO_TIME = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:[.,](?P<fraction>\d{1,9}))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:?\d{2})$"
)


class BadRecord(InvalidTick):
    """A replay line that cannot become a tick; `reason` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ParsedLine:
    tick: RawTick
    timed: bool  # the line carried its own time (ts or ts_ns) rather than "now"


class LineParser:
    """Turns replay lines into validated ticks.

    Remembers the last sequence of each instrument: a line without "seq" gets the next one.
    """

    def __init__(self, default_venue: str) -> None:
        self._default_venue = default_venue
        self._last_sequence: dict[str, int] = {}

    def parse(self, raw: bytes, now_ns: int) -> ParsedLine | None:
        """The tick on this line, None for a blank or `#` comment line; raises `BadRecord`."""
        text = _decode(raw).strip()
        if not text or text.startswith("#"):
            return None
        fields = _load_object(text)
        instrument = _required_string(fields, "instrument")
        kind = _kind(fields)
        exchange_time_ns = _time_ns(fields)
        tick = pb.Tick(
            instrument=instrument,
            venue=_venue(fields, self._default_venue),
            kind=kind,
            sequence=_sequence(fields, self._last_sequence.get(instrument, 0) + 1),
            exchange_time_ns=now_ns if exchange_time_ns is None else exchange_time_ns,
        )
        for name, value in _amounts(fields, _TRADE_FIELDS if kind == pb.TICK_KIND_TRADE else _QUOTE_FIELDS):
            setattr(tick, name, value)
        try:
            valid = from_proto(tick, now_ns)
        except InvalidTick as exc:
            raise BadRecord(INVALID_TICK, str(exc)) from exc
        self._last_sequence[instrument] = valid.sequence
        return ParsedLine(valid, timed=exchange_time_ns is not None)


# Beyond this no number is within the contract's bounds (tapewire.decimals): refused unwritten.
_MAX_WRITTEN_EXPONENT = 40


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord(BAD_ENCODING, f"not UTF-8: {exc.reason} at byte {exc.start}") from exc


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def _load_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRecord(BAD_JSON, f"not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(value, dict):
        raise BadRecord(NOT_AN_OBJECT, f"expected a JSON object, got {type(value).__name__}")
    return value


def _required_string(fields: dict[str, object], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise BadRecord(MISSING_FIELD, f'"{name}" is required')
    if not isinstance(value, str):
        raise BadRecord(BAD_FIELD, f'"{name}" must be a string')
    return value


def _venue(fields: dict[str, object], default: str) -> str:
    return default if fields.get("venue") is None else _required_string(fields, "venue")


def _kind(fields: dict[str, object]) -> pb.TickKind:
    kind = _required_string(fields, "kind")
    if kind.lower() not in _KINDS:
        raise BadRecord(BAD_FIELD, f'"kind" must be "trade" or "quote", got {kind[:20]!r}')
    return _KINDS[kind.lower()]


def _amounts(fields: dict[str, object], names: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """(Tick field, decimal string) of each price and size; JSON numbers come as exact Decimals or ints."""
    amounts = []
    for json_name, proto_name in names:
        value = fields.get(json_name)
        if value is None:
            raise BadRecord(MISSING_FIELD, f'"{json_name}" is required')
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            raise BadRecord(BAD_FIELD, f'"{json_name}" must be a decimal string or a number')
        amounts.append((proto_name, value if isinstance(value, str) else _plain(json_name, value)))
    return amounts


def _plain(json_name: str, number: int | Decimal) -> str:
    """A JSON number in the contract's notation (1.5e2 -> "150"); a string must already be in it.

    The magnitude is checked first: writing out 1e999999999 would take a gigabyte."""
    value = Decimal(number)
    if value.is_finite() and abs(value.adjusted()) <= _MAX_WRITTEN_EXPONENT:
        return format(value, "f")
    raise BadRecord(INVALID_TICK, f'"{json_name}" {str(number)[:40]} is out of range')


def _sequence(fields: dict[str, object], default: int) -> int:
    value = fields.get("seq")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_SEQUENCE:
        raise BadRecord(BAD_FIELD, '"seq" must be an integer from 0 to 2^64-1')
    return value


def _time_ns(fields: dict[str, object]) -> int | None:
    """The line's exchange time in Unix ns, or None when it has none (the caller uses now)."""
    iso, ns = fields.get("ts"), fields.get("ts_ns")
    if iso is not None and ns is not None:
        raise BadRecord(BAD_FIELD, 'give "ts" or "ts_ns", not both')
    if ns is not None:
        if isinstance(ns, bool) or not isinstance(ns, int) or ns not in _INT64:
            raise BadRecord(BAD_FIELD, '"ts_ns" must be an integer (Unix epoch nanoseconds)')
        return ns
    if iso is not None:
        if not isinstance(iso, str):
            raise BadRecord(BAD_FIELD, '"ts" must be an ISO 8601 string')
        return parse_iso_ns(iso)
    return None


def parse_iso_ns(text: str) -> int:
    """Unix epoch ns of an ISO 8601 date-time with a UTC offset or Z, keeping up to 9 fractional digits."""
    match = _ISO_TIME.match(text.strip())
    if match is None:
        raise BadRecord(
            BAD_FIELD, f'"ts" {text[:40]!r} is not YYYY-MM-DDTHH:MM:SS[.fraction] with Z or ±HH:MM'
        )
    try:
        moment = datetime.fromisoformat(match["base"]).replace(tzinfo=_offset(match["offset"]))
    except ValueError as exc:
        raise BadRecord(BAD_FIELD, f'"ts" {text[:40]!r}: {exc}') from exc
    seconds = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    return seconds * 10**9 + int((match["fraction"] or "0").ljust(9, "0"))


def _offset(text: str) -> timezone:
    if text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"UTC offset {text} out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def numbered_lines(stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) from 1; the line is None when it is longer than `max_bytes` (it is skipped
    without ever holding more than `max_bytes` of it in memory)."""
    for number in itertools.count(1):
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while (rest := stream.readline(_SKIP_CHUNK_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, line


class ReplaySource:
    """Ticks from a JSON-lines stream; at `speed` > 0 line times are reproduced at `speed`× real time."""

    name = "replay"

    def __init__(
        self,
        stream: BinaryIO,
        parser: LineParser,
        speed: float,
        on_invalid: InvalidRecordHandler,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._stream = stream
        self._parser = parser
        self._speed = speed
        self._on_invalid = on_invalid
        self._monotonic = monotonic
        self._wall_clock_ns = wall_clock_ns
        self.lines_read = 0
        self.ticks_read = 0
        self.invalid = 0

    def read(self, stop: threading.Event) -> Iterator[RawTick]:
        first: tuple[int, float] | None = None  # (exchange time of the first timed line, when it went out)
        for number, raw in numbered_lines(self._stream):
            if stop.is_set():
                return
            self.lines_read = number
            parsed = self._parse(number, raw)
            if parsed is None:
                continue
            if parsed.timed:
                if first is None:
                    first = (parsed.tick.exchange_time_ns, self._monotonic())
                delay = replay_delay_s(
                    first[0], parsed.tick.exchange_time_ns, self._speed, self._monotonic() - first[1]
                )
                if delay > 0 and stop.wait(delay):
                    return
            self.ticks_read += 1
            yield parsed.tick
        log.info(
            "replay input ended",
            extra={"lines": self.lines_read, "ticks": self.ticks_read, "invalid": self.invalid},
        )

    def _parse(self, number: int, raw: bytes | None) -> ParsedLine | None:
        try:
            if raw is None:
                raise BadRecord(LINE_TOO_LONG, f"line longer than {MAX_LINE_BYTES} bytes")
            return self._parser.parse(raw, self._wall_clock_ns())
        except BadRecord as exc:
            self.invalid += 1
            self._on_invalid(
                InvalidRecord(source=self.name, position=number, reason=exc.reason, detail=exc.detail)
            )
            return None
