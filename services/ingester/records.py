"""What goes through the queue: a tick encoded once, when it is accepted, ready to produce.

Encoding at acceptance is what makes "accepted" mean "publishable": a tick whose encoding raises,
or whose record would be larger than `INGESTER_MAX_RECORD_BYTES`, is refused there and then,
with a reason, instead of failing in the publisher after its sender was told "accepted".

The queue stamps `ingest_time_ns` when it accepts a record (under its lock, after any wait for
room), which is after the encoding. So the tick is encoded without it, and the stamp is appended
as one more encoded field when the record is produced: a protobuf parser reads concatenated
encodings of a message as their merge, so `body + stamp` decodes to the stamped tick, for a few
bytes' work instead of a second encoding. The size check allows for the largest stamp.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from services.ingester.receipts import StreamReceipt
from tapewire.errors import TapewireError
from tapewire.ticks import RawTick, to_proto
from tapewire.v1 import market_pb2 as pb

# Why a tick that passed validation was still refused; label values of ingester_invalid_records_total.
TOO_LARGE = "too_large"
UNENCODABLE = "unencodable"
REASONS = (TOO_LARGE, UNENCODABLE)

# The largest the appended stamp can be: field 12's tag and a 64-bit varint.
MAX_STAMP_BYTES = len(pb.Tick(ingest_time_ns=2**63 - 1).SerializeToString())
_MAX_DETAIL_CHARS = 200


class Unpublishable(TapewireError):
    """A valid tick that cannot be published; `code` is one of REASONS."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class Record:
    """One tick as it will be produced, and (for a pushed tick) where its outcome is reported."""

    key: bytes  # the instrument, UTF-8
    body: bytes  # the tick's encoding, without ingest_time_ns
    ingest_time_ns: int = 0
    receipt: StreamReceipt | None = None  # None for the built-in source's ticks
    index: int = 0  # the tick's position in its stream, from 0 (with a receipt)

    def value(self) -> bytes:
        """The record's value: the encoded tick with its ingest time."""
        return self.body + pb.Tick(ingest_time_ns=self.ingest_time_ns).SerializeToString()


def encode(tick: RawTick, max_bytes: int, receipt: StreamReceipt | None = None, index: int = 0) -> Record:
    """`tick` as a record of at most `max_bytes` once stamped; raise `Unpublishable` if it cannot be."""
    try:
        message = to_proto(tick)
        message.ClearField("ingest_time_ns")
        body, key = message.SerializeToString(), tick.instrument.encode()
    except Exception as exc:  # whatever the cause (decimal.Overflow on an absurd exponent, ...)
        detail = f"the tick cannot be encoded: {type(exc).__name__}: {exc}"
        raise Unpublishable(UNENCODABLE, detail[:_MAX_DETAIL_CHARS]) from exc
    size = len(body) + MAX_STAMP_BYTES
    if size > max_bytes:
        raise Unpublishable(
            TOO_LARGE, f"its record of up to {size} bytes exceeds the ingester's limit of {max_bytes}"
        )
    return Record(key, body, receipt=receipt, index=index)


def stamped(record: Record, ingest_time_ns: int) -> Record:
    return dataclasses.replace(record, ingest_time_ns=ingest_time_ns)


def report_dropped(record: Record) -> None:
    """Tell the record's stream, if any, that `drop_oldest` displaced it from the queue."""
    if record.receipt is not None:
        record.receipt.dropped()
