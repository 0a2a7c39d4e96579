"""The benchmark clients' bookkeeping: per update its age at receipt, and per instrument the
gap since the previous receipt and the age the state held until then had reached."""

from __future__ import annotations

import math

from bench.wsload import ClientSpec, Recorded, _kept, _record, _subscription
from tapewire.v1 import market_pb2

MS = 1_000_000


def state(instrument: str, ingest_ms: int) -> market_pb2.InstrumentState:
    found = market_pb2.InstrumentState(instrument=instrument)
    found.times.ingest_ns = ingest_ms * MS
    found.times.processed_ns = found.times.cached_ns = found.times.sent_ns = ingest_ms * MS
    return found


def test_receipts_of_one_instrument_give_gap_and_replaced_age() -> None:
    record = Recorded()
    held: dict[str, tuple[int, int]] = {}
    _record(record, state("A", 1_000), 1_005 * MS, held)
    _record(record, state("B", 1_050), 1_060 * MS, held)
    _record(record, state("A", 1_098), 1_107 * MS, held)
    assert list(record.e2e_ms) == [5.0, 10.0, 9.0]
    # A's first receipt has nothing before it; its second comes 102 ms later, when the state it
    # replaces (ingested at 1,000 ms) was 107 ms old.
    assert math.isnan(record.gap_ms[0]) and math.isnan(record.gap_ms[1])
    assert record.gap_ms[2] == 102.0
    assert record.replaced_age_ms[2] == 107.0
    assert record.updates == 3


def test_kept_values_leave_out_the_unmeasured() -> None:
    recorded = Recorded()
    recorded.gap_ms.extend([math.nan, 100.0, 120.0, 90.0])
    assert list(_kept(recorded.gap_ms.tobytes(), [0, 1, 3])) == [100.0, 90.0]


def test_every_instrument_has_as_many_watchers() -> None:
    spec = ClientSpec("ws://x", 4, ["A", "B", "C", "D"], 2, 1.0, max_rate=10.0)
    assert [_subscription(i, spec) for i in range(4)] == [["A", "B"], ["C", "D"], ["A", "B"], ["C", "D"]]
