"""latest_rows: one row per instrument and per bar, from the newest state that changed it."""

from __future__ import annotations

from dataclasses import dataclass

from services.history_writer.run import latest_rows
from tapewire.v1 import market_pb2 as pb

SECOND_NS = 1_000_000_000


@dataclass
class Record:
    """What latest_rows reads of a consumed Kafka message."""

    payload: bytes | None

    def value(self) -> bytes | None:
        return self.payload

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


def state(instrument: str, version: int, second: int, close: str, vwap: str) -> Record:
    bar = pb.Bar(
        start_time_ns=second * SECOND_NS,
        open="10",
        high="12",
        low="9",
        close=close,
        volume="5",
        trade_count=version,
    )
    message = pb.InstrumentState(
        instrument=instrument,
        version=version,
        vwap=vwap,
        bar_1s=bar,
        bar_1m=pb.Bar(
            start_time_ns=60 * SECOND_NS,
            open="10",
            high="12",
            low="9",
            close=close,
            volume="5",
            trade_count=version,
        ),
    )
    return Record(message.SerializeToString())


def test_the_newest_state_makes_each_row() -> None:
    batch = [
        state("AAPL", 1, 61, "10", "10"),
        state("AAPL", 2, 61, "11", "10.5"),
        state("AAPL", 3, 62, "12", "11"),
        state("MSFT", 7, 61, "20", ""),
        state("AAPL", 2, 61, "99", "99"),  # a replayed older version changes nothing
        Record(None),
    ]
    states, bars_1s, bars_1m = latest_rows(batch)  # type: ignore[arg-type]
    assert {(s.instrument, s.version) for s in states} == {("AAPL", 3), ("MSFT", 7)}
    by_key = {(row.instrument, row.bar.start_time_ns): row for row in bars_1s}
    assert by_key[("AAPL", 61 * SECOND_NS)].bar.close == "11"
    assert by_key[("AAPL", 61 * SECOND_NS)].version == 2
    assert by_key[("AAPL", 61 * SECOND_NS)].vwap == "10.5"
    assert by_key[("AAPL", 62 * SECOND_NS)].bar.close == "12"
    assert by_key[("MSFT", 61 * SECOND_NS)].vwap == ""
    minute = {row.instrument: row for row in bars_1m}
    assert minute["AAPL"].version == 3 and minute["AAPL"].bar.close == "12"
    assert len(bars_1m) == 2
