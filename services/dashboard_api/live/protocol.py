"""The client side of protocol v1: frames -> commands (pure, no I/O). See docs/websocket.md.

Text frames are JSON, binary frames are one `tapewire.v1.ClientMessage` protobuf; both become
the same commands. A frame that breaks a rule becomes a `ClientError` whose code is stable
(clients may switch on it) and whose reason is for people. The connection stays open after an
error; the session counts them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from tapewire.ticks import INSTRUMENT_PATTERN
from tapewire.v1 import alerts_pb2, stream_pb2

MESSAGE_TOO_LARGE = "message_too_large"
INVALID_JSON = "invalid_json"
INVALID_PROTOBUF = "invalid_protobuf"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_TYPE = "unknown_type"
INVALID_REQUEST_ID = "invalid_request_id"
INVALID_INSTRUMENTS = "invalid_instruments"
TOO_MANY_INSTRUMENTS = "too_many_instruments"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
INVALID_SINCE = "invalid_since"
INVALID_MAX_RATE = "invalid_max_rate"
RATE_LIMITED = "rate_limited"
INVALID_ALERT = "invalid_alert"
UNAVAILABLE = "unavailable"
BUSY = "busy"

MAX_REQUEST_ID_CHARS = 64
MAX_RATE = 1000.0
# Versions are uint64 on the wire but int64 where they are kept (PostgreSQL bigint), so no
# server ever holds a version above 2**63 - 1. A resume reads history from `since + 1`, which
# must still be one: a bigger `since` is a client bug (at 2**64 - 1 Redis even refuses the
# stream id and the client would be closed with 1013, again on every retry).
MAX_VERSION = 2**63 - 2


@dataclass(frozen=True, slots=True)
class Subscribe:
    instruments: tuple[str, ...]
    since: dict[str, int] = field(default_factory=dict)
    max_rate: float = 0.0
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    instruments: tuple[str, ...]
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Ping:
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class CreateAlert:
    """Checked by alerts/requests.py: the fields as the client sent them."""

    fields: dict[str, Any]
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class CancelAlert:
    fields: dict[str, Any]
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class ListAlerts:
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class ClientError:
    code: str
    reason: str
    request_id: str = ""


Command = Subscribe | Unsubscribe | Ping | CreateAlert | CancelAlert | ListAlerts

_TYPES = ("subscribe", "unsubscribe", "ping", "alert.create", "alert.cancel", "alert.list")


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int
    max_instruments: int


def parse_frame(frame: str | bytes, limits: Limits) -> Command | ClientError:
    """The command in one client frame, or the error to answer it with."""
    if isinstance(frame, bytes):
        if len(frame) > limits.max_message_bytes:
            return ClientError(MESSAGE_TOO_LARGE, f"message larger than {limits.max_message_bytes} bytes")
        return _from_protobuf(frame, limits)
    if _utf8_length_exceeds(frame, limits.max_message_bytes):
        return ClientError(MESSAGE_TOO_LARGE, f"message larger than {limits.max_message_bytes} bytes")
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return ClientError(INVALID_JSON, "message is not valid JSON")
    if not isinstance(message, dict):
        return ClientError(NOT_AN_OBJECT, "message must be a JSON object")
    return _from_json(message, limits)


def check_instruments(value: object, limit: int) -> tuple[str, ...] | ClientError:
    """A non-empty list of valid instrument names, without duplicates (first occurrence kept)."""
    if not isinstance(value, list | tuple):
        return ClientError(INVALID_INSTRUMENTS, '"instruments" must be a list of instrument names')
    if not value:
        return ClientError(INVALID_INSTRUMENTS, '"instruments" must not be empty')
    if len(value) > limit:
        return ClientError(TOO_MANY_INSTRUMENTS, f"at most {limit} instruments per request, got {len(value)}")
    for name in value:
        if not isinstance(name, str) or not INSTRUMENT_PATTERN.match(name):
            return ClientError(
                INVALID_INSTRUMENTS,
                f"invalid instrument {shown(name)}: expected 1-32 chars of [A-Za-z0-9._:/-]",
            )
    return tuple(dict.fromkeys(value))


def _from_json(message: dict[str, Any], limits: Limits) -> Command | ClientError:
    request_id = message.get("id", "")
    if not isinstance(request_id, str) or len(request_id) > MAX_REQUEST_ID_CHARS:
        return ClientError(
            INVALID_REQUEST_ID, f'"id" must be a string of at most {MAX_REQUEST_ID_CHARS} chars'
        )
    kind = message.get("type")
    command = _json_command(kind, message, limits, request_id)
    if isinstance(command, ClientError) and not command.request_id:
        return ClientError(command.code, command.reason, request_id)
    return command


def _json_command(
    kind: object, message: dict[str, Any], limits: Limits, request_id: str
) -> Command | ClientError:
    if kind == "ping":
        return Ping(request_id)
    if kind in ("subscribe", "unsubscribe"):
        if "instruments" not in message:
            return ClientError(INVALID_INSTRUMENTS, f'"{kind}" needs "instruments"')
        instruments = check_instruments(message["instruments"], limits.max_instruments)
        if isinstance(instruments, ClientError):
            return instruments
        if kind == "unsubscribe":
            return Unsubscribe(instruments, request_id)
        return _subscribe(instruments, message.get("since"), message.get("max_rate", 0), request_id)
    if kind == "alert.create":
        return CreateAlert({k: message.get(k) for k in ("instrument", "direction", "price")}, request_id)
    if kind == "alert.cancel":
        return CancelAlert({"alert_id": message.get("alert_id")}, request_id)
    if kind == "alert.list":
        return ListAlerts(request_id)
    if kind is None:
        return ClientError(UNKNOWN_TYPE, 'message has no "type"')
    return ClientError(UNKNOWN_TYPE, f'unknown "type" {shown(kind)}: expected one of {", ".join(_TYPES)}')


def _subscribe(
    instruments: tuple[str, ...], since: object, max_rate: object, request_id: str
) -> Subscribe | ClientError:
    checked_since = _check_since(since, instruments)
    if isinstance(checked_since, ClientError):
        return checked_since
    # The range check comes before isfinite: a JSON integer too big for a float would make
    # isfinite raise OverflowError (NaN fails the range check too, infinities as well).
    if (
        isinstance(max_rate, bool)
        or not isinstance(max_rate, int | float)
        or not 0 <= max_rate <= MAX_RATE
        or not math.isfinite(max_rate)
    ):
        return ClientError(INVALID_MAX_RATE, f'"max_rate" must be a number from 0 to {MAX_RATE:g}')
    return Subscribe(instruments, checked_since, float(max_rate), request_id)


def _check_since(since: object, instruments: tuple[str, ...]) -> dict[str, int] | ClientError:
    if since is None:
        return {}
    if not isinstance(since, dict):
        return ClientError(INVALID_SINCE, '"since" must be an object of instrument: version')
    asked = set(instruments)
    checked: dict[str, int] = {}
    for name, version in since.items():
        if name not in asked:
            return ClientError(INVALID_SINCE, f'"since" names {shown(name)}, which is not in "instruments"')
        if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
            return ClientError(
                INVALID_SINCE, f'"since" of {name} must be a version (integer from 0 to {MAX_VERSION})'
            )
        checked[name] = version
    return checked


def subscribe_request(request: stream_pb2.SubscribeRequest, limits: Limits) -> Subscribe | ClientError:
    """A gRPC SubscribeRequest, held to the same rules as the WebSocket's subscribe."""
    message = stream_pb2.ClientMessage()
    message.subscribe.CopyFrom(request)
    command = _from_protobuf(message.SerializeToString(), limits)
    if isinstance(command, Subscribe | ClientError):
        return command
    return ClientError(UNKNOWN_TYPE, "expected a subscribe request")


def _from_protobuf(frame: bytes, limits: Limits) -> Command | ClientError:
    message = stream_pb2.ClientMessage()
    try:
        message.ParseFromString(frame)
    except DecodeError:
        return ClientError(INVALID_PROTOBUF, "binary frame is not a tapewire.v1.ClientMessage")
    kind = message.WhichOneof("kind")
    as_json: dict[str, Any] = {"id": message.request_id}
    if kind == "subscribe":
        request = message.subscribe
        as_json.update(
            type="subscribe",
            instruments=list(request.instruments),
            since=dict(request.since) or None,
            max_rate=request.max_rate,
        )
    elif kind == "unsubscribe":
        as_json.update(type="unsubscribe", instruments=list(message.unsubscribe.instruments))
    elif kind == "ping":
        as_json.update(type="ping")
    elif kind == "create_alert":
        create = message.create_alert
        direction = {alerts_pb2.ALERT_DIRECTION_ABOVE: "above", alerts_pb2.ALERT_DIRECTION_BELOW: "below"}
        as_json.update(
            type="alert.create",
            instrument=create.instrument,
            direction=direction.get(create.direction, ""),
            price=create.price,
        )
    elif kind == "cancel_alert":
        as_json.update(type="alert.cancel", alert_id=message.cancel_alert.alert_id)
    elif kind == "list_alerts":
        as_json.update(type="alert.list")
    return _from_json(as_json, limits)


def _utf8_length_exceeds(text: str, limit: int) -> bool:
    # A character takes 1 to 4 bytes in UTF-8: only encode when the length alone cannot decide.
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def shown(value: object) -> str:
    """The repr of something a client sent, cut short: errors echo it, they must stay small."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
