"""The checker itself, on made-up streams: it must see loss, duplicates and disorder."""

from __future__ import annotations

from decimal import Decimal

from tapewire.v1 import market_pb2 as pb
from tests.faults.checker import Expected, Summary, _audit_aggregates, _audit_stream, expectations
from tests.faults.loadgen import Acked

EXPECTED = Expected(sequences=[1, 2, 3, 4], trades=2, volume=Decimal("3.5"))


def states(*versions: int, sequences: list[int] | None = None) -> list[pb.InstrumentState]:
    carried = sequences or list(versions)
    return [
        pb.InstrumentState(instrument="X", version=v, last_sequence=s)
        for v, s in zip(versions, carried, strict=True)
    ]


def audited(stream: list[pb.InstrumentState]) -> Summary:
    summary = Summary("made up", 0)
    _audit_stream("X", stream, EXPECTED, summary)
    return summary


def test_a_complete_stream_passes() -> None:
    summary = audited(states(1, 2, 3, 4))
    assert (summary.lost, summary.duplicated, summary.out_of_order, summary.problems) == (0, 0, 0, [])


def test_a_missing_version_is_lost() -> None:
    summary = audited(states(1, 2, 4))
    assert (summary.lost, summary.duplicated, summary.out_of_order) == (1, 0, 0)


def test_a_repeated_version_is_a_duplicate() -> None:
    summary = audited(states(1, 2, 2, 3, 4))
    assert (summary.lost, summary.duplicated, summary.out_of_order) == (0, 1, 0)


def test_a_version_going_back_is_out_of_order() -> None:
    summary = audited(states(1, 3, 2, 4))
    assert (summary.lost, summary.duplicated, summary.out_of_order) == (0, 0, 1)


def test_versions_carrying_other_ticks_are_out_of_order_and_their_ticks_lost() -> None:
    summary = audited(states(1, 2, 3, 4, sequences=[1, 3, 2, 4]))
    assert (summary.lost, summary.out_of_order) == (2, 2)


def test_aggregates_must_add_up_to_the_acknowledged_trades() -> None:
    summary = Summary("made up", 0)
    _audit_aggregates("X", pb.InstrumentState(session_volume="3.5", trade_count=2), EXPECTED, summary)
    assert summary.ok
    _audit_aggregates("X", pb.InstrumentState(session_volume="3.4", trade_count=2), EXPECTED, summary)
    assert not summary.ok


def test_expectations_follow_the_partition_order() -> None:
    acked = [
        Acked("X", 2, None, None, partition=1, offset=8),
        Acked("X", 1, Decimal("1.5"), Decimal("10"), partition=1, offset=7),
        Acked("X", 3, Decimal("2"), Decimal("11"), partition=1, offset=9),
    ]
    assert expectations(acked) == {"X": Expected(sequences=[1, 2, 3], trades=2, volume=Decimal("3.5"))}
