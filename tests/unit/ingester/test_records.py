"""Encoding at acceptance: the record's value, the size bound, and what cannot be encoded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.ingester.records import MAX_STAMP_BYTES, TOO_LARGE, UNENCODABLE, Unpublishable, encode, stamped
from tapewire.ticks import Quote, from_proto
from tapewire.v1 import market_pb2 as pb

from .fakes import NOW_NS, trade


def test_the_stamped_value_decodes_to_the_tick_with_its_ingest_time() -> None:
    tick = trade("AAPL", 7)
    record = stamped(encode(tick, 4_096), NOW_NS + 5)
    assert record.key == b"AAPL"
    decoded = from_proto(pb.Tick.FromString(record.value()), NOW_NS)
    assert decoded == trade("AAPL", 7, ingest_time_ns=NOW_NS + 5)


def test_a_client_ingest_time_is_not_carried_into_the_record() -> None:
    record = encode(trade("AAPL", 7, ingest_time_ns=123), 4_096)
    assert pb.Tick.FromString(record.value()).ingest_time_ns == 0  # until the queue stamps it


def test_the_bound_counts_the_largest_stamp() -> None:
    tick = trade("AAPL", 7)
    largest = stamped(encode(tick, 4_096), 2**63 - 1)
    assert len(largest.value()) == len(largest.body) + MAX_STAMP_BYTES
    assert encode(tick, len(largest.value())).body == largest.body
    with pytest.raises(Unpublishable) as caught:
        encode(tick, len(largest.value()) - 1)
    assert caught.value.code == TOO_LARGE
    assert f"exceeds the ingester's limit of {len(largest.value()) - 1}" in str(caught.value)


def test_a_tick_whose_encoding_raises_is_unencodable() -> None:
    # Not reachable through from_proto's grammar any more, but a source's own tick could be.
    absurd = Quote(
        "AAPL", "X", Decimal("1e999999999"), Decimal(1), Decimal("2e999999999"), Decimal(1), 1, NOW_NS
    )
    with pytest.raises(Unpublishable) as caught:
        encode(absurd, 4_096)
    assert caught.value.code == UNENCODABLE
    assert str(caught.value).startswith("the tick cannot be encoded: Overflow")
