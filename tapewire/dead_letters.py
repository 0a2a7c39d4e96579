"""The dead-letter contract: why a raw record is refused, and the headers that say so.

The processor dead-letters with these; `python -m tools.dlq` reads them and re-validates with
the same `decode_raw_tick`, so the two can never disagree about what is valid.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from tapewire.errors import InvalidTick, TapewireError
from tapewire.ticks import RawTick, from_proto
from tapewire.v1 import market_pb2 as pb

HEADER_ERROR = "tapewire-error"
HEADER_CODE = "tapewire-error-code"
HEADER_SOURCE_TOPIC = "tapewire-source-topic"
HEADER_SOURCE_PARTITION = "tapewire-source-partition"
HEADER_SOURCE_OFFSET = "tapewire-source-offset"
HEADER_SERVICE = "tapewire-service"
HEADER_FAILED_AT = "tapewire-failed-at-ns"
# Added by the DLQ tool to a record it republishes: <dlq topic>:<partition>:<offset>.
HEADER_REPLAYED_FROM = "tapewire-replayed-from"

# `key_mismatch`: the tick's instrument is not its record key. Keys place an instrument on one
# partition, which is what orders its ticks and makes each one count once; a tick under another
# key would be applied from another partition, out of order with the rest.
# `processing_failed`: the tick was valid but applying it raised (a bug, not a bad feed): it is
# set aside with the exception as the reason so that the partition keeps flowing.
CODES = ("empty", "too_large", "undecodable", "invalid", "key_mismatch", "processing_failed")


class Refused(TapewireError):
    """A raw record that cannot be processed; `code` (one of CODES) is a bounded metrics label."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def decode_raw_tick(
    value: bytes | None, now_ns: int, max_record_bytes: int, key: bytes | None = None
) -> RawTick:
    """A raw record's value as a validated tick, or `Refused` with the first rule it breaks.

    `now_ns` bounds the exchange time (at most a day ahead of it): the processor passes the
    record's own timestamp, so that a record is judged the same on every attempt. `key`, when
    given, must be the tick's instrument."""
    if value is None:
        raise Refused("empty", "record has no value")
    if len(value) > max_record_bytes:
        raise Refused("too_large", f"record of {len(value)} bytes exceeds {max_record_bytes}")
    try:
        wire = pb.Tick.FromString(value)
    except DecodeError as exc:
        raise Refused("undecodable", f"not a tapewire.v1.Tick: {exc}") from exc
    try:
        tick = from_proto(wire, now_ns)
    except InvalidTick as exc:
        raise Refused("invalid", str(exc)) from exc
    if key is not None and key != tick.instrument.encode():
        shown = key[:40].decode(errors="replace")
        raise Refused("key_mismatch", f"instrument {tick.instrument!r} under the record key {shown!r}")
    return tick


def processing_failed(error: Exception) -> Refused:
    """The refusal of a valid tick whose processing raised: the exception is the reason."""
    return Refused("processing_failed", f"{type(error).__name__}: {str(error)[:200]}")


def headers(
    refused: Refused,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    service: str,
    failed_at_ns: int,
) -> list[tuple[str, str]]:
    """The headers a dead letter carries."""
    return [
        (HEADER_ERROR, str(refused)),
        (HEADER_CODE, refused.code),
        (HEADER_SOURCE_TOPIC, source_topic),
        (HEADER_SOURCE_PARTITION, str(source_partition)),
        (HEADER_SOURCE_OFFSET, str(source_offset)),
        (HEADER_SERVICE, service),
        (HEADER_FAILED_AT, str(failed_at_ns)),
    ]
