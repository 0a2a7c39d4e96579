"""`python -m tools.watch`: a command-line client of the live-update protocol (docs/websocket.md).

    python -m tools.watch AAPL MSFT                 # one line per update, with its latency
    python -m tools.watch                           # every instrument (GET /api/instruments)
    python -m tools.watch --stats                   # updates/s and rolling p50/p99 every second
    python -m tools.watch --encoding protobuf --resume --max-rate 4 ES.FUT
    python -m tools.watch --alert AAPL:above:190.5 AAPL
    python -m tools.watch --url ws://host:8000/ws --token "$JWT" --count 1000 AAPL

It is the protocol's reference client as much as a tool: it checks what the protocol promises.
Each instrument's versions must grow by exactly one after its snapshot; a jump the server did
not announce (with `conflated`, a resync snapshot, or a `max_rate` the client asked for) is
printed as a GAP, a version seen twice or going back as a REPEAT. With `--resume` a dropped
connection is reopened (with backoff) and every instrument resumed from the last version seen,
so a restart or deploy of dashboard_api shows whether anything was lost on the way.

One line per update:

    14:30:00.514 AAPL v1214 187.42 187.41/187.43  e2e 2.31ms [proc 0.80 cache 0.80 send 0.40 recv 0.31]

`e2e` is the receive time minus the ingester's stamp (`times.ingest_ns`); the bracket splits it
into hops: ingest -> processed (`proc`), processed -> cached (`cache`), cached -> sent by
dashboard_api (`send`), sent -> received here (`recv`). The stamps are the servers' wall
clocks, so on another machine `recv` (and `e2e`) include the clocks' skew: `heartbeat` lines
show how far the server's clock is from this one. Times of day are UTC, like the services'
logs.

The token (`--token`, or TAPEWIRE_TOKEN) goes in the Authorization header of the WebSocket
handshake and of GET /api/instruments. Client messages are sent in the chosen encoding (JSON
text or `ClientMessage` protobuf frames), so `--encoding protobuf` exercises both directions.
Exit status: 0 done (`--count` reached, or the server closed normally), 1 the connection was
lost or closed and not resumed, 2 bad arguments or no instruments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from google.protobuf.message import DecodeError, Message

from tapewire.backoff import Backoff
from tapewire.ticks import INSTRUMENT_PATTERN
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import stream_pb2 as spb

Encoding = Literal["json", "protobuf"]
JsonObject = dict[str, Any]

DEFAULT_URL = "ws://127.0.0.1:8000/ws"
PING_INTERVAL_S = 30.0
STATS_INTERVAL_S = 1.0
STATS_WINDOW_S = 10.0
# Instruments per subscribe message: below the server's default max_instruments_per_request
# (1000), and small enough to stay under max_message_bytes with a `since` for each.
SUBSCRIBE_CHUNK = 500
# Names listed in one snapshot line before "… and N more".
SHOWN_NAMES = 8
MAX_FRAME_BYTES = 64 * 1024 * 1024
HOPS = ("proc", "cache", "send", "recv")
_STAGES = ("ingest_ns", "processed_ns", "cached_ns", "sent_ns")

# Close codes (docs/websocket.md) after which reconnecting cannot help, and those that ask for
# an immediate reconnect (another instance takes over).
STOP_CODES = frozenset({1000, 1008, 4001, 4010})
RECONNECT_AT_ONCE_CODES = frozenset({1001, 1012})


class WatchError(Exception):
    """Something the tool cannot do as asked (bad arguments, no instruments)."""


# ---- arguments -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertSpec:
    instrument: str
    direction: Literal["above", "below"]
    price: str


@dataclass(frozen=True, slots=True)
class Options:
    url: str
    instruments: tuple[str, ...]
    token: str | None
    encoding: Encoding
    max_rate: float
    resume: bool
    count: int | None
    stats: bool
    alerts: tuple[AlertSpec, ...]
    deflate: bool = False


_PRICE = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")


def parse_alert_spec(text: str) -> AlertSpec:
    """INSTRUMENT:above|below:PRICE (an instrument may itself contain ':')."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not INSTRUMENT:above|below:PRICE")
    instrument, direction, price = parts
    if not INSTRUMENT_PATTERN.fullmatch(instrument):
        raise argparse.ArgumentTypeError(f"{instrument!r} is not an instrument name")
    if direction not in ("above", "below"):
        raise argparse.ArgumentTypeError(f"direction must be above or below, got {direction!r}")
    if not _PRICE.fullmatch(price):
        raise argparse.ArgumentTypeError(f"price must be a plain decimal such as 190.5, got {price!r}")
    return AlertSpec(instrument, "above" if direction == "above" else "below", price)


def _instrument(text: str) -> str:
    if not INSTRUMENT_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not 1-32 chars of [A-Za-z0-9._:/-]")
    return text


def _max_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError("--max-rate must be from 0 (no limit) to 1000 updates/s")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--count must be a positive integer, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.watch",
        description="Watch live updates over dashboard_api's WebSocket, with their end-to-end latency.",
    )
    parser.add_argument("instruments", nargs="*", type=_instrument, help="default: every instrument")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"WebSocket URL (default {DEFAULT_URL})")
    parser.add_argument("--token", help="JWT sent as 'Authorization: Bearer' (default: $TAPEWIRE_TOKEN)")
    parser.add_argument("--encoding", choices=("json", "protobuf"), default="json")
    parser.add_argument("--max-rate", type=_max_rate, default=0.0, help="updates/s per instrument (0: all)")
    parser.add_argument("--resume", action="store_true", help="reconnect and resume after a disconnect")
    parser.add_argument("--count", type=_count, help="exit after this many updates")
    parser.add_argument("--stats", action="store_true", help="print rates and latency percentiles only")
    parser.add_argument(
        "--alert",
        dest="alerts",
        action="append",
        type=parse_alert_spec,
        default=[],
        metavar="INSTRUMENT:above|below:PRICE",
        help="create this price alert (repeatable) and print its events",
    )
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    return parser


def parse_options(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Options:
    args = build_parser().parse_args(argv)
    scheme = urlsplit(args.url).scheme
    if scheme not in ("ws", "wss"):
        raise WatchError(f"--url must be a ws:// or wss:// URL, got {args.url!r}")
    return Options(
        url=args.url,
        instruments=tuple(dict.fromkeys(args.instruments)),
        token=args.token or environ.get("TAPEWIRE_TOKEN") or None,
        encoding=args.encoding,
        max_rate=args.max_rate,
        resume=args.resume,
        count=args.count,
        stats=args.stats,
        alerts=tuple(args.alerts),
        deflate=args.deflate,
    )


def http_base(ws_url: str) -> str:
    """The REST API's address on the same host: ws://h:8000/ws -> http://h:8000."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def connect_url(ws_url: str, encoding: Encoding) -> str:
    """`ws_url` asking for `encoding` (other query parameters, e.g. user=, are kept)."""
    parts = urlsplit(ws_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "encoding"]
    if encoding != "json":
        query.append(("encoding", encoding))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/ws", urlencode(query), ""))


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# ---- client messages -----------------------------------------------------------------------


def subscribe_messages(
    instruments: Sequence[str], since: Mapping[str, int], max_rate: float, first_id: int
) -> list[JsonObject]:
    """Subscribe requests of at most SUBSCRIBE_CHUNK instruments, with ids s<first_id>, ..."""
    messages = []
    for n, start in enumerate(range(0, len(instruments), SUBSCRIBE_CHUNK)):
        chunk = list(instruments[start : start + SUBSCRIBE_CHUNK])
        message: JsonObject = {"type": "subscribe", "id": f"s{first_id + n}", "instruments": chunk}
        resume_from = {name: since[name] for name in chunk if name in since}
        if resume_from:
            message["since"] = resume_from
        if max_rate:
            message["max_rate"] = max_rate
        messages.append(message)
    return messages


def alert_create_message(request_id: str, spec: AlertSpec) -> JsonObject:
    return {
        "type": "alert.create",
        "id": request_id,
        "instrument": spec.instrument,
        "direction": spec.direction,
        "price": spec.price,
    }


def encode_client(message: JsonObject, encoding: Encoding) -> str | bytes:
    """A client message as a JSON text frame, or a `ClientMessage` binary frame."""
    if encoding == "json":
        return json.dumps(message, separators=(",", ":"))
    wire = spb.ClientMessage(request_id=message.get("id", ""))
    kind = message["type"]
    if kind == "subscribe":
        wire.subscribe.instruments.extend(message["instruments"])
        wire.subscribe.since.update(message.get("since", {}))
        wire.subscribe.max_rate = message.get("max_rate", 0.0)
    elif kind == "ping":
        wire.ping.SetInParent()
    elif kind == "alert.create":
        wire.create_alert.instrument = message["instrument"]
        wire.create_alert.direction = (
            apb.ALERT_DIRECTION_ABOVE if message["direction"] == "above" else apb.ALERT_DIRECTION_BELOW
        )
        wire.create_alert.price = message["price"]
    elif kind == "alert.list":
        wire.list_alerts.SetInParent()
    else:
        raise ValueError(f"no protobuf form for {kind!r}")
    return wire.SerializeToString()


# ---- server messages -----------------------------------------------------------------------


def decode_frame(frame: str | bytes) -> JsonObject:
    """A server frame in the protocol's JSON form, whichever encoding it came in."""
    if isinstance(frame, str):
        message = json.loads(frame)
        if not isinstance(message, dict):
            raise ValueError("a server message must be a JSON object")
        return message
    try:
        wire = spb.ServerMessage.FromString(frame)
    except DecodeError as exc:
        raise ValueError(f"binary frame is not a ServerMessage: {exc}") from exc
    return server_message_to_json(wire)


_KIND_TO_TYPE = {
    "alert_accepted": "alert.accepted",
    "alert_list": "alert.list",
}
_REQUEST_ID_KINDS = frozenset({"snapshot", "unsubscribed", "error", "pong", "alert_accepted", "alert_list"})


def server_message_to_json(wire: spb.ServerMessage) -> JsonObject:
    """The JSON form (docs/websocket.md) of a protobuf `ServerMessage`."""
    kind = wire.WhichOneof("kind")
    if kind is None:
        return {"type": "?"}
    body: Message = getattr(wire, kind)
    if kind == "update":
        state = message_to_json(body.state)  # type: ignore[attr-defined]
        return {
            "type": "update",
            "instrument": state["instrument"],
            "version": state["version"],
            "state": state,
        }
    message = message_to_json(body)
    if kind == "snapshot":
        message["resumed"] = {
            name: {"from": span["from_version"], "to": span["to_version"]}
            for name, span in message["resumed"].items()
        }
    if kind == "alert":
        return {"type": "alert", **message}
    if kind in _REQUEST_ID_KINDS:
        message["id"] = message.pop("request_id")
    return {"type": _KIND_TO_TYPE.get(kind, kind), **message}


def message_to_json(message: Message) -> JsonObject:
    """Every field by its proto name; enums as the protocol's lowercase words (ALERT_STATUS_ACTIVE
    -> "active"); an unset sub-message as None."""
    result: JsonObject = {}
    for descriptor in message.DESCRIPTOR.fields:
        value = getattr(message, descriptor.name)
        result[descriptor.name] = _field_json(message, descriptor, value)
    return result


def _field_json(owner: Message, descriptor: Any, value: Any) -> Any:
    if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
        value_field = descriptor.message_type.fields_by_name["value"]
        return {key: _single_json(value_field, item) for key, item in value.items()}
    if descriptor.is_repeated:
        return [_single_json(descriptor, item) for item in value]
    if descriptor.message_type is not None and not owner.HasField(descriptor.name):
        return None
    return _single_json(descriptor, value)


def _single_json(descriptor: Any, value: Any) -> Any:
    if descriptor.message_type is not None:
        return message_to_json(value)
    if descriptor.enum_type is not None:
        return enum_word(descriptor.enum_type.name, descriptor.enum_type.values_by_number[value].name)
    return value


def enum_word(enum_name: str, value_name: str) -> str:
    """ALERT_STATUS_TRIGGERED of AlertStatus -> "triggered"."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper() + "_"
    return value_name.removeprefix(prefix).lower()


# ---- latency -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    """End to end (received - ingest) and per hop, in ms; None where a stamp is missing."""

    end_to_end_ms: float | None
    hops_ms: tuple[float | None, ...]


def latency(times: Mapping[str, Any] | None, received_ns: int) -> Latency:
    stamps = [_stamp(times, name) for name in _STAGES] + [received_ns]
    hops = tuple(_ms_between(a, b) for a, b in itertools.pairwise(stamps))
    return Latency(_ms_between(stamps[0], received_ns), hops)


def _stamp(times: Mapping[str, Any] | None, name: str) -> int | None:
    value = (times or {}).get(name)
    if isinstance(value, str) and value.isdigit():  # int64 in some JSON encoders
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _ms_between(start: int | None, end: int | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start) / 1e6


def format_latency(lat: Latency) -> str:
    hops = " ".join(f"{name} {_ms(value)}" for name, value in zip(HOPS, lat.hops_ms, strict=True))
    return f"e2e {_ms(lat.end_to_end_ms)}ms [{hops}]"


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def clock_text(ns: int) -> str:
    """HH:MM:SS.mmm (UTC) of a Unix-epoch nanosecond time."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1_000_000:03d}"


def format_update(message: JsonObject, lat: Latency, received_ns: int) -> str:
    state = message.get("state") or {}
    quote = f"{state.get('bid_price') or '-'}/{state.get('ask_price') or '-'}"
    return (
        f"{clock_text(received_ns)} {message.get('instrument')} v{message.get('version')} "
        f"{state.get('last_price') or '-'} {quote}  {format_latency(lat)}"
    )


# ---- what the protocol promises about versions ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """A version that breaks "every version after the snapshot, in order, exactly once"."""

    kind: Literal["gap", "repeat"]
    instrument: str
    expected: int
    got: int

    def describe(self) -> str:
        if self.kind == "gap":
            missing = self.got - self.expected
            return (
                f"! GAP {self.instrument}: expected v{self.expected}, got v{self.got} "
                f"({missing} version{'s' if missing != 1 else ''} missing, not announced by the server)"
            )
        return f"! REPEAT {self.instrument}: v{self.got} after v{self.expected - 1}"


@dataclass
class VersionTracker:
    """The last version seen per instrument, and the rules every next version must follow.

    Jumps the server announced (a `conflated` message, a resync snapshot) or that the client
    asked for (`max_rate`) are counted as skipped; any other jump is a gap."""

    throttled: bool = False
    versions: dict[str, int] = field(default_factory=dict)
    announced: set[str] = field(default_factory=set)
    gaps: int = 0
    repeats: int = 0
    skipped: int = 0
    lost_by_server: int = 0

    def since(self) -> dict[str, int]:
        """What to resume from: the last version held of every instrument seen."""
        return dict(self.versions)

    def on_update(self, instrument: str, version: int) -> tuple[Finding | None, int]:
        """(a broken promise or None, how many versions were skipped as announced)."""
        last = self.versions.get(instrument)
        self.versions[instrument] = version if last is None else max(last, version)
        if last is None:
            return None, 0
        announced = instrument in self.announced
        self.announced.discard(instrument)
        if version <= last:
            self.repeats += 1
            return Finding("repeat", instrument, last + 1, version), 0
        jump = version - last - 1
        if jump == 0:
            return None, 0
        if announced or self.throttled:
            self.skipped += jump
            return None, jump
        self.gaps += 1
        return Finding("gap", instrument, last + 1, version), 0

    def on_conflated(self, instruments: Iterable[str]) -> None:
        self.announced.update(instruments)

    def on_snapshot(self, message: JsonObject) -> list[str]:
        """Take the snapshot's versions; return what to report about it."""
        resync = message.get("reason") == "resync"
        lost = set(message.get("gaps") or ())
        notes: list[str] = []
        for state in message.get("states") or ():
            name = str(state.get("instrument"))
            notes.extend(self._take_state(name, int(state.get("version", 0)), resync, name in lost))
        for name in message.get("missing") or ():
            self.versions.setdefault(name, 0)
        for name, span in (message.get("resumed") or {}).items():
            notes.extend(self._check_resume(name, span))
        return notes

    def _take_state(self, name: str, version: int, resync: bool, lost: bool) -> list[str]:
        last = self.versions.get(name)
        self.versions[name] = version if last is None else max(last, version)
        if last is None or last <= version <= last + 1:
            return []
        if version < last:
            self.repeats += 1
            return [f"! BACKWARDS {name}: snapshot at v{version} after v{last}"]
        jump = version - last - 1
        if lost:
            self.lost_by_server += jump
            return [f"! {name}: the server's history did not reach back, v{last + 1}..v{version - 1} lost"]
        if resync:
            self.skipped += jump
            return []
        self.gaps += 1
        return [f"! GAP {name}: snapshot at v{version} after v{last}, not listed in its gaps"]

    def _check_resume(self, name: str, span: Mapping[str, Any]) -> list[str]:
        last = self.versions.get(name)
        start = int(span.get("from", 0))
        if last is not None and start != last + 1:
            self.gaps += 1
            return [f"! GAP {name}: resumed from v{start}, expected v{last + 1}"]
        return []


# ---- rolling statistics --------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (0 < q <= 100) of sorted values; None when there are none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class RollingStats:
    """Updates per interval, and end-to-end latencies over the last `window_s` seconds."""

    window_s: float = STATS_WINDOW_S
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=1_000_000))
    since_report: int = 0
    last_report_at: float | None = None

    def add(self, now_s: float, end_to_end_ms: float | None) -> None:
        self.since_report += 1
        if end_to_end_ms is not None:
            self.samples.append((now_s, end_to_end_ms))

    def report(self, now_s: float) -> tuple[float, float | None, float | None, int]:
        """(updates/s since the last report, p50, p99 over the window, samples in the window)."""
        while self.samples and self.samples[0][0] < now_s - self.window_s:
            self.samples.popleft()
        elapsed = now_s - self.last_report_at if self.last_report_at is not None else STATS_INTERVAL_S
        rate = self.since_report / elapsed if elapsed > 0 else 0.0
        self.since_report, self.last_report_at = 0, now_s
        ordered = sorted(value for _, value in self.samples)
        return rate, percentile(ordered, 50), percentile(ordered, 99), len(ordered)


def format_stats(
    wall_ns: int, report: tuple[float, float | None, float | None, int], total: int, tracker: VersionTracker
) -> str:
    rate, p50, p99, n = report
    return (
        f"{clock_text(wall_ns)} {rate:.0f} upd/s  e2e p50 {_ms(p50)}ms p99 {_ms(p99)}ms "
        f"(last {STATS_WINDOW_S:g}s, {n} samples)  total {total}  gaps {tracker.gaps} "
        f"repeats {tracker.repeats} skipped {tracker.skipped}"
    )


# ---- one message at a time -----------------------------------------------------------------


@dataclass
class Watcher:
    """Everything the client learns from the server, as lines to print (no I/O).

    `handle` takes each decoded server message with the time it arrived."""

    stats_only: bool = False
    count: int | None = None
    tracker: VersionTracker = field(default_factory=VersionTracker)
    stats: RollingStats = field(default_factory=RollingStats)
    updates: int = 0
    idle_timeout_s: float | None = None
    pings: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.count is not None and self.updates >= self.count

    def ping_interval_s(self) -> float:
        """Often enough for the idle timeout the server announced (at most every 30 s)."""
        if self.idle_timeout_s:
            return min(PING_INTERVAL_S, self.idle_timeout_s / 2)
        return PING_INTERVAL_S

    def handle(self, message: JsonObject, received_ns: int, now_s: float) -> list[str]:
        kind = message.get("type")
        if kind == "update":
            return self._update(message, received_ns, now_s)
        if kind == "snapshot":
            return [format_snapshot(message, received_ns), *self.tracker.on_snapshot(message)]
        if kind == "conflated":
            self.tracker.on_conflated(message.get("instruments") or ())
        elif kind == "welcome":
            self.idle_timeout_s = float(message.get("idle_timeout_s") or 0) or None
        elif kind == "pong":
            return [self._pong(message, received_ns, now_s)]
        elif kind in ("heartbeat", "unsubscribed") and self.stats_only:
            return []
        return [format_message(message, received_ns)]

    def _update(self, message: JsonObject, received_ns: int, now_s: float) -> list[str]:
        self.updates += 1
        lat = latency((message.get("state") or {}).get("times"), received_ns)
        self.stats.add(now_s, lat.end_to_end_ms)
        finding, skipped = self.tracker.on_update(
            str(message.get("instrument")), int(message.get("version", 0))
        )
        lines = [] if self.stats_only else [format_update(message, lat, received_ns)]
        if skipped and not self.stats_only:
            lines[0] += f"  (skipped {skipped})"
        if finding is not None:
            lines.append(finding.describe())
        return lines

    def _pong(self, message: JsonObject, received_ns: int, now_s: float) -> str:
        sent = self.pings.pop(str(message.get("id")), None)
        rtt = "" if sent is None else f" rtt {(now_s - sent) * 1000:.2f}ms"
        return f"{clock_text(received_ns)} pong {message.get('id')}{rtt}{_skew(message, received_ns)}"

    def stats_line(self, wall_ns: int, now_s: float) -> str:
        return format_stats(wall_ns, self.stats.report(now_s), self.updates, self.tracker)

    def summary(self) -> str:
        t = self.tracker
        return (
            f"{self.updates} updates, {t.gaps} gaps, {t.repeats} repeats, {t.skipped} skipped as announced, "
            f"{t.lost_by_server} lost by the server's history"
        )


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    more = len(names) - SHOWN_NAMES
    return f"[{shown}{f', … and {more} more' if more > 0 else ''}]"


def format_snapshot(message: JsonObject, received_ns: int) -> str:
    states = message.get("states") or []
    versions = [f"{state.get('instrument')} v{state.get('version')}" for state in states]
    parts = [f"{len(states)} states {_names(versions)}"]
    if message.get("missing"):
        parts.append(f"missing {_names(message['missing'])}")
    resumed = message.get("resumed") or {}
    if resumed:
        spans = [f"{name} v{span.get('from')}..v{span.get('to')}" for name, span in resumed.items()]
        parts.append(f"resumed {_names(spans)}")
    if message.get("gaps"):
        parts.append(f"gaps {_names(message['gaps'])}")
    reason = message.get("reason") or "subscribe"
    return f"{clock_text(received_ns)} snapshot {message.get('id') or '-'} ({reason}): {', '.join(parts)}"


def format_alert(event: JsonObject, received_ns: int) -> str:
    alert = event.get("alert") or {}
    line = (
        f"alert {event.get('status')} {alert.get('alert_id')} {alert.get('instrument')} "
        f"{alert.get('direction')} {alert.get('price')}"
    )
    if event.get("status") == "triggered":
        lat = latency(event.get("times"), received_ns)
        line += (
            f": trade {event.get('trigger_price')} at v{event.get('trigger_version')}, {format_latency(lat)}"
        )
    if event.get("reason"):
        line += f": {event['reason']}"
    return line


def _skew(message: JsonObject, received_ns: int) -> str:
    server_ns = message.get("server_time_ns")
    if not isinstance(server_ns, int) or server_ns <= 0:
        return ""
    return f" (server clock {(server_ns - received_ns) / 1e6:+.2f}ms from ours)"


def format_message(message: JsonObject, received_ns: int) -> str:
    """Every message other than updates, snapshots and pongs, in one line."""
    kind = message.get("type")
    text: str
    if kind == "welcome":
        text = (
            f"welcome: connection {message.get('connection_id')} as {message.get('user_id')}, protocol "
            f"{message.get('protocol')}, encoding {message.get('encoding')}, heartbeat "
            f"{message.get('heartbeat_s')}s, idle timeout {message.get('idle_timeout_s')}s"
        )
    elif kind == "conflated":
        instruments = _names(message.get("instruments") or [])
        text = f"conflated: {message.get('dropped')} updates dropped for {instruments}"
    elif kind == "heartbeat":
        text = f"heartbeat{_skew(message, received_ns)}"
    elif kind == "error":
        text = f"error {message.get('code')} ({message.get('id') or '-'}): {message.get('reason')}"
    elif kind == "alert.accepted":
        text = f"alert accepted ({message.get('id')}): {message.get('alert_id')}"
    elif kind == "alert":
        text = format_alert(message, received_ns)
    elif kind == "alert.list":
        alerts = message.get("alerts") or []
        text = f"alerts ({message.get('id')}): {len(alerts)}" + "".join(
            f"\n    {format_alert(event, received_ns)}" for event in alerts
        )
    elif kind == "unsubscribed":
        text = f"unsubscribed {_names(message.get('instruments') or [])}"
    else:
        text = f"{kind}: {json.dumps(message)[:200]}"
    return f"{clock_text(received_ns)} {text}"


# ---- reconnecting --------------------------------------------------------------------------


def after_close(code: int | None, resume: bool) -> Literal["stop", "now", "backoff"]:
    """What to do when the connection ends with `code` (None: it never opened, or dropped)."""
    if code in STOP_CODES or not resume:
        return "stop"
    if code in RECONNECT_AT_ONCE_CODES:
        return "now"
    return "backoff"


def describe_close(code: int | None, reason: str) -> str:
    meanings = {
        1000: "normal close",
        1001: "server shutting down",
        1006: "connection dropped",
        1008: "too many errors",
        1011: "server error",
        1012: "instance draining",
        1013: "try again later",
        4001: "unauthorized",
        4008: "too slow",
        4009: "idle timeout",
        4010: "disconnected by an operator",
    }
    if code is None:
        return "connection failed"
    meaning = meanings.get(code, "closed")
    return f"{meaning} ({code}{': ' + reason if reason else ''})"


# ---- I/O -----------------------------------------------------------------------------------


# httpx and websockets are imported where they are used: `--help` and the pure parts work
# without them (they are dev dependencies in pyproject.toml).


async def fetch_instruments(options: Options) -> tuple[str, ...]:
    import httpx

    url = f"{http_base(options.url)}/api/instruments"
    try:
        async with httpx.AsyncClient(timeout=10, headers=auth_headers(options.token)) as client:
            response = await client.get(url)
            response.raise_for_status()
            names = response.json()["instruments"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise WatchError(f"could not list instruments at {url}: {exc}") from exc
    if not names:
        raise WatchError(f"{url} lists no instruments yet: name some, or start the feed")
    return tuple(str(name) for name in names)


class Session:
    """One client across connections: subscribes, resumes, pings and prints."""

    def __init__(
        self,
        options: Options,
        instruments: tuple[str, ...],
        out: TextIO,
        err: TextIO,
        clock: Callable[[], int],
    ) -> None:
        self.options = options
        self.instruments = instruments
        self.out = out
        self.err = err
        self.clock = clock
        self.watcher = Watcher(
            stats_only=options.stats,
            count=options.count,
            tracker=VersionTracker(throttled=options.max_rate > 0),
        )
        self._next_id = 1
        self._alerts_sent = False

    def _id(self, prefix: str) -> str:
        self._next_id += 1
        return f"{prefix}{self._next_id - 1}"

    def emit(self, lines: Iterable[str], stream: TextIO | None = None) -> None:
        target = stream or self.out
        for line in lines:
            print(line, file=target)
        target.flush()

    async def run(self) -> int:
        backoff = Backoff(initial_s=0.5, maximum_s=15.0)
        while True:
            opened, code, reason = await self._connection()
            if self.watcher.finished:
                return 0
            self.emit([f"{clock_text(self.clock())} {describe_close(code, reason)}"], self.err)
            decision = after_close(code, self.options.resume)
            if decision == "stop":
                return 0 if code == 1000 else 1
            if opened:
                backoff.reset()
            delay = 0.0 if decision == "now" and opened else backoff.next_delay()
            resuming = len(self.watcher.tracker.versions)
            self.emit([f"reconnecting in {delay:.1f}s, resuming {resuming} instruments"], self.err)
            await asyncio.sleep(delay)

    async def _connection(self) -> tuple[bool, int | None, str]:
        """Serve one connection: (whether it opened, its close code, the close reason)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

        url = connect_url(self.options.url, self.options.encoding)
        try:
            async with connect(
                url,
                additional_headers=auth_headers(self.options.token),
                compression="deflate" if self.options.deflate else None,
                max_size=MAX_FRAME_BYTES,
                open_timeout=10,
            ) as ws:
                with contextlib.suppress(ConnectionClosed):
                    await self._serve(ws)
                return True, ws.close_code, ws.close_reason or ""
        except InvalidStatus as exc:
            status = exc.response.status_code
            self.emit([f"handshake refused: HTTP {status}"], self.err)
            return False, (4001 if status in (401, 403) else None), ""
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self.emit([f"cannot connect to {url}: {exc}"], self.err)
            return False, None, ""

    async def _serve(self, ws: Any) -> None:
        for message in subscribe_messages(
            self.instruments, self.watcher.tracker.since(), self.options.max_rate, self._next_id
        ):
            self._next_id += 1
            await ws.send(encode_client(message, self.options.encoding))
        if not self._alerts_sent:
            self._alerts_sent = True
            for spec in self.options.alerts:
                await ws.send(encode_client(alert_create_message(self._id("a"), spec), self.options.encoding))
        helpers = [asyncio.create_task(self._ping(ws))]
        if self.options.stats:
            helpers.append(asyncio.create_task(self._report()))
        try:
            await self._receive(ws)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _receive(self, ws: Any) -> None:
        async for frame in ws:
            received_ns = self.clock()
            try:
                message = decode_frame(frame)
            except ValueError as exc:
                self.emit([f"{clock_text(received_ns)} unreadable frame: {exc}"], self.err)
                continue
            self.emit(self.watcher.handle(message, received_ns, time.monotonic()))
            if self.watcher.finished:
                await ws.close(1000, "done")
                return

    async def _ping(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.watcher.ping_interval_s())
            request_id = self._id("p")
            self.watcher.pings[request_id] = time.monotonic()
            await ws.send(encode_client({"type": "ping", "id": request_id}, self.options.encoding))

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            self.emit([self.watcher.stats_line(self.clock(), time.monotonic())])


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        options = parse_options(argv, os.environ if environ is None else environ)
    except WatchError as exc:
        print(f"watch: {exc}", file=err)
        return 2

    async def watch() -> int:
        instruments = options.instruments or await fetch_instruments(options)
        session = Session(options, instruments, out, err, time.time_ns)
        try:
            return await session.run()
        finally:
            print(f"watch: {session.watcher.summary()}", file=err)

    try:
        return asyncio.run(watch())
    except WatchError as exc:
        print(f"watch: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
