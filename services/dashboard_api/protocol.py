"""The client side of the WebSocket protocol: text frames -> commands (pure, no I/O).

    {"type": "subscribe",   "instruments": ["AAPL", "MSFT"]}
    {"type": "unsubscribe", "instruments": ["AAPL"]}
    {"type": "ping"}

A frame that breaks a rule becomes a `ClientError` whose code is stable (clients may switch on
it) and whose reason is for people. The connection stays open after an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tapewire.ticks import INSTRUMENT_PATTERN

MESSAGE_TOO_LARGE = "message_too_large"
BINARY_NOT_SUPPORTED = "binary_not_supported"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_TYPE = "unknown_type"
INVALID_INSTRUMENTS = "invalid_instruments"
TOO_MANY_INSTRUMENTS = "too_many_instruments"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"


@dataclass(frozen=True, slots=True)
class Subscribe:
    instruments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    instruments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class ClientError:
    code: str
    reason: str


Command = Subscribe | Unsubscribe | Ping


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int
    max_instruments: int


def parse_frame(frame: str | bytes, limits: Limits) -> Command | ClientError:
    """The command in one client frame, or the error to answer it with."""
    if isinstance(frame, bytes):
        return ClientError(BINARY_NOT_SUPPORTED, "binary frames are not supported: send JSON as text")
    if _utf8_length_exceeds(frame, limits.max_message_bytes):
        return ClientError(MESSAGE_TOO_LARGE, f"message larger than {limits.max_message_bytes} bytes")
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return ClientError(INVALID_JSON, "message is not valid JSON")
    if not isinstance(message, dict):
        return ClientError(NOT_AN_OBJECT, "message must be a JSON object")
    return _command(message, limits)


def check_instruments(value: object, limit: int) -> tuple[str, ...] | ClientError:
    """A non-empty list of valid instrument names, without duplicates (first occurrence kept)."""
    if not isinstance(value, list):
        return ClientError(INVALID_INSTRUMENTS, '"instruments" must be a list of instrument names')
    if not value:
        return ClientError(INVALID_INSTRUMENTS, '"instruments" must not be empty')
    if len(value) > limit:
        return ClientError(TOO_MANY_INSTRUMENTS, f"at most {limit} instruments per request, got {len(value)}")
    for name in value:
        if not isinstance(name, str) or not INSTRUMENT_PATTERN.match(name):
            return ClientError(
                INVALID_INSTRUMENTS,
                f"invalid instrument {_shown(name)}: expected 1-32 chars of [A-Za-z0-9._:/-]",
            )
    return tuple(dict.fromkeys(value))


def _command(message: dict[str, object], limits: Limits) -> Command | ClientError:
    kind = message.get("type")
    if kind == "ping":
        return Ping()
    if kind in ("subscribe", "unsubscribe"):
        if "instruments" not in message:
            return ClientError(INVALID_INSTRUMENTS, f'"{kind}" needs "instruments"')
        instruments = check_instruments(message["instruments"], limits.max_instruments)
        if isinstance(instruments, ClientError):
            return instruments
        return Subscribe(instruments) if kind == "subscribe" else Unsubscribe(instruments)
    if kind is None:
        return ClientError(UNKNOWN_TYPE, 'message has no "type"')
    return ClientError(
        UNKNOWN_TYPE, f'unknown "type" {_shown(kind)}: expected subscribe, unsubscribe or ping'
    )


def _utf8_length_exceeds(text: str, limit: int) -> bool:
    # A character takes 1 to 4 bytes in UTF-8: only encode when the length alone cannot decide.
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def _shown(value: object) -> str:
    """The repr of something a client sent, cut short: errors echo it, they must stay small."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
