"""Replay lines -> validated ticks, every field form and every reason a line is skipped."""

from __future__ import annotations

import io
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from services.ingester.sources import InvalidRecord, replay
from services.ingester.sources.replay import (
    BadRecord,
    LineParser,
    ReplaySource,
    numbered_lines,
    parse_iso_ns,
)
from tapewire.ticks import Quote, Trade

NOW_NS = 1_763_649_000_000_000_000  # 2025-11-20T14:30:00Z
TRADE = (
    '{"instrument":"AAPL","venue":"XNAS","kind":"trade","price":"187.42","size":"100","seq":17,'
    '"ts":"2025-11-20T14:30:00.123456Z"}'
)
QUOTE = (
    '{"instrument":"AAPL","kind":"quote","bid":"187.40","bid_size":"300","ask":"187.44",'
    '"ask_size":"200","ts_ns":1763649000123456000}'
)


def parse(line: str | bytes, venue: str = "SIM") -> Trade | Quote:
    parsed = LineParser(venue).parse(line.encode() if isinstance(line, str) else line, NOW_NS)
    assert parsed is not None
    return parsed.tick


def reason_of(line: str | bytes) -> str:
    with pytest.raises(BadRecord) as caught:
        parse(line)
    return caught.value.reason


def test_a_trade_line_with_every_field() -> None:
    assert parse(TRADE) == Trade(
        instrument="AAPL",
        venue="XNAS",
        price=Decimal("187.42"),
        size=Decimal("100"),
        sequence=17,
        exchange_time_ns=1_763_649_000_123_456_000,
    )


def test_a_quote_line_takes_the_default_venue_and_ts_ns() -> None:
    assert parse(QUOTE, venue="FEED") == Quote(
        instrument="AAPL",
        venue="FEED",
        bid_price=Decimal("187.40"),
        bid_size=Decimal("300"),
        ask_price=Decimal("187.44"),
        ask_size=Decimal("200"),
        sequence=1,
        exchange_time_ns=1_763_649_000_123_456_000,
    )


def test_json_numbers_are_exact() -> None:
    line = '{"instrument":"X","kind":"trade","price":0.1,"size":3,"ts_ns":1763649000000000000}'
    tick = parse(line)
    assert isinstance(tick, Trade)
    assert tick.price == Decimal("0.1")  # not 0.1000000000000000055...
    assert tick.size == Decimal(3)
    many_digits = parse(line.replace("0.1", "187.123456789012345"))
    assert many_digits.price == Decimal("187.123456789012345")  # type: ignore[union-attr]


def test_exponent_numbers_are_written_out_and_exponent_strings_refused() -> None:
    tick = parse('{"instrument":"X","kind":"trade","price":1.5e2,"size":"100"}')
    assert (tick.price, tick.size) == (Decimal(150), Decimal(100))  # type: ignore[union-attr]
    for line in (
        '{"instrument":"X","kind":"trade","price":"1","size":"1E+2"}',
        '{"instrument":"X","kind":"trade","price":1e999999999,"size":"1"}',
        '{"instrument":"X","kind":"trade","price":1e30,"size":"1"}',
    ):
        with pytest.raises(BadRecord, match=r"invalid_tick|not a decimal of the contract|out of range"):
            parse(line)


def test_sequence_defaults_to_one_more_than_the_last_per_instrument() -> None:
    parser = LineParser("SIM")
    lines = [
        '{"instrument":"A","kind":"trade","price":"1","size":"1"}',
        '{"instrument":"B","kind":"trade","price":"1","size":"1"}',
        '{"instrument":"A","kind":"trade","price":"1","size":"1"}',
        '{"instrument":"A","kind":"trade","price":"1","size":"1","seq":10}',
        '{"instrument":"A","kind":"trade","price":"1","size":"1"}',
        '{"instrument":"B","kind":"trade","price":"1","size":"1"}',
    ]
    sequences = [parser.parse(line.encode(), NOW_NS).tick.sequence for line in lines]  # type: ignore[union-attr]
    assert sequences == [1, 1, 2, 10, 11, 2]


def test_an_invalid_line_does_not_advance_the_sequence() -> None:
    parser = LineParser("SIM")
    good = b'{"instrument":"A","kind":"trade","price":"1","size":"1"}'
    with pytest.raises(BadRecord):
        parser.parse(b'{"instrument":"A","kind":"trade","price":"-1","size":"1"}', NOW_NS)
    assert parser.parse(good, NOW_NS).tick.sequence == 1  # type: ignore[union-attr]


def test_without_a_time_the_tick_is_stamped_now_and_untimed() -> None:
    parsed = LineParser("SIM").parse(b'{"instrument":"A","kind":"trade","price":"1","size":"1"}', NOW_NS)
    assert parsed is not None
    assert parsed.tick.exchange_time_ns == NOW_NS
    assert not parsed.timed
    assert LineParser("SIM").parse(TRADE.encode(), NOW_NS).timed  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-20T14:30:00Z", 1_763_649_000_000_000_000),
        ("2025-11-20T14:30:00.5Z", 1_763_649_000_500_000_000),
        ("2025-11-20T14:30:00.123456789Z", 1_763_649_000_123_456_789),
        ("2025-11-20T15:30:00.000000001+01:00", 1_763_649_000_000_000_001),
        ("2025-11-20T09:30:00-0500", 1_763_649_000_000_000_000),
        ("2025-11-20 14:30:00,25z", 1_763_649_000_250_000_000),
    ],
)
def test_iso_times_keep_nanoseconds_and_offsets(text: str, expected: int) -> None:
    assert parse_iso_ns(text) == expected


@pytest.mark.parametrize(
    "text",
    ["2025-11-20T14:30:00", "2025-11-20", "2025-13-20T14:30:00Z", "2025-11-20T14:30:00.1234567891Z", "soon"],
)
def test_iso_times_without_offset_or_malformed_are_refused(text: str) -> None:
    with pytest.raises(BadRecord) as caught:
        parse_iso_ns(text)
    assert caught.value.reason == replay.BAD_FIELD


@pytest.mark.parametrize("line", ["", "   ", "# a comment", '  # {"instrument":"A"}'])
def test_blank_and_comment_lines_are_skipped(line: str) -> None:
    assert LineParser("SIM").parse(line.encode(), NOW_NS) is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"\xff\xfe{}", replay.BAD_ENCODING),
        ("{not json", replay.BAD_JSON),
        ('{"instrument":"A","kind":"trade","price":NaN,"size":"1"}', replay.BAD_JSON),
        ('{"instrument":"A","kind":"trade","price":Infinity,"size":"1"}', replay.BAD_JSON),
        ("[" * 50_000, replay.BAD_JSON),
        ('["A","trade"]', replay.NOT_AN_OBJECT),
        ('"AAPL"', replay.NOT_AN_OBJECT),
        ('{"kind":"trade","price":"1","size":"1"}', replay.MISSING_FIELD),
        ('{"instrument":"A","price":"1","size":"1"}', replay.MISSING_FIELD),
        ('{"instrument":"A","kind":"trade","size":"1"}', replay.MISSING_FIELD),
        ('{"instrument":"A","kind":"trade","price":"1","size":null}', replay.MISSING_FIELD),
        ('{"instrument":"A","kind":"quote","bid":"1","bid_size":"1","ask":"2"}', replay.MISSING_FIELD),
        ('{"instrument":7,"kind":"trade","price":"1","size":"1"}', replay.BAD_FIELD),
        ('{"instrument":"A","kind":"cancel","price":"1","size":"1"}', replay.BAD_FIELD),
        ('{"instrument":"A","venue":5,"kind":"trade","price":"1","size":"1"}', replay.BAD_FIELD),
        ('{"instrument":"A","kind":"trade","price":true,"size":"1"}', replay.BAD_FIELD),
        ('{"instrument":"A","kind":"trade","price":["1"],"size":"1"}', replay.BAD_FIELD),
        ('{"instrument":"A","kind":"trade","price":"1","size":"1","seq":-1}', replay.BAD_FIELD),
        ('{"instrument":"A","kind":"trade","price":"1","size":"1","seq":1.5}', replay.BAD_FIELD),
        (
            '{"instrument":"A","kind":"trade","price":"1","size":"1","seq":18446744073709551616}',
            replay.BAD_FIELD,
        ),
        ('{"instrument":"A","kind":"trade","price":"1","size":"1","ts_ns":"1"}', replay.BAD_FIELD),
        (
            '{"instrument":"A","kind":"trade","price":"1","size":"1","ts_ns":9223372036854775808}',
            replay.BAD_FIELD,
        ),
        ('{"instrument":"A","kind":"trade","price":"1","size":"1","ts":1763649000}', replay.BAD_FIELD),
        ('{"instrument":"A","kind":"trade","price":"1","size":"1","ts":"x","ts_ns":1}', replay.BAD_FIELD),
        ('{"instrument":"A B","kind":"trade","price":"1","size":"1"}', replay.INVALID_TICK),
        ('{"instrument":"A","kind":"trade","price":"0","size":"1"}', replay.INVALID_TICK),
        ('{"instrument":"A","kind":"trade","price":"abc","size":"1"}', replay.INVALID_TICK),
        ('{"instrument":"A","kind":"trade","price":"1","size":"-100"}', replay.INVALID_TICK),
        (
            '{"instrument":"A","kind":"quote","bid":"2","bid_size":"1","ask":"1","ask_size":"1"}',
            replay.INVALID_TICK,
        ),
        ('{"instrument":"A","kind":"trade","price":"1","size":"1","ts_ns":1}', replay.INVALID_TICK),
        (
            '{"instrument":"A","kind":"trade","price":"1","size":"1","ts":"2099-01-01T00:00:00Z"}',
            replay.INVALID_TICK,
        ),
    ],
)
def test_every_reason_a_line_is_refused(line: str | bytes, reason: str) -> None:
    assert reason_of(line) == reason


def test_numbered_lines_skips_an_overlong_line_whole() -> None:
    stream = io.BytesIO(b"first\n" + b"x" * 100 + b"\nthird\n" + b"y" * 10 + b"\n" + b"last")
    assert list(numbered_lines(stream, max_bytes=10)) == [
        (1, b"first\n"),
        (2, None),
        (3, b"third\n"),
        (4, b"y" * 10 + b"\n"),
        (5, b"last"),
    ]


def test_numbered_lines_default_limit_is_64_kib() -> None:
    exactly = b"x" * replay.MAX_LINE_BYTES + b"\n"
    over = b"x" * (replay.MAX_LINE_BYTES + 1) + b"\n"
    assert [line is None for _, line in numbered_lines(io.BytesIO(exactly + over))] == [False, True]


class FakeClock:
    """A monotonic clock that only moves when the source waits on the stop event."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now


class ClockedStop(threading.Event):
    """A stop event whose `wait` advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self._clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self._clock.waits.append(round(timeout, 6))
        self._clock.now += timeout
        return self.is_set()


def source_of(lines: list[str], speed: float, clock: FakeClock) -> tuple[ReplaySource, list[InvalidRecord]]:
    invalid: list[InvalidRecord] = []
    stream = io.BytesIO("\n".join(lines).encode())
    source = ReplaySource(stream, LineParser("SIM"), speed, invalid.append, clock.monotonic, lambda: NOW_NS)
    return source, invalid


def timed(instrument: str, ts_ns: int) -> str:
    return json.dumps({"instrument": instrument, "kind": "trade", "price": "1", "size": "1", "ts_ns": ts_ns})


def test_replay_reports_invalid_lines_with_their_number_and_carries_on() -> None:
    clock = FakeClock()
    lines = [timed("A", NOW_NS), "# header", "{bad", "", timed("B", NOW_NS), '{"instrument":"C"}']
    source, invalid = source_of(lines, speed=0, clock=clock)
    ticks = list(source.read(ClockedStop(clock)))
    assert [t.instrument for t in ticks] == ["A", "B"]
    assert [(r.position, r.reason) for r in invalid] == [(3, replay.BAD_JSON), (6, replay.MISSING_FIELD)]
    assert (source.lines_read, source.ticks_read, source.invalid) == (6, 2, 2)
    assert clock.waits == []  # speed 0: no waiting at all


def test_replay_reproduces_line_times_at_the_given_speed() -> None:
    clock = FakeClock()
    second = 10**9
    lines = [timed("A", NOW_NS), timed("A", NOW_NS + second), timed("A", NOW_NS + 3 * second)]
    source, _ = source_of(lines, speed=2.0, clock=clock)
    emitted_at = []
    for _ in source.read(ClockedStop(clock)):
        emitted_at.append(clock.now - 100.0)
    assert emitted_at == [0.0, 0.5, 1.5]


def test_replay_does_not_wait_for_lines_without_time_or_going_backwards() -> None:
    clock = FakeClock()
    untimed = '{"instrument":"A","kind":"trade","price":"1","size":"1"}'
    lines = [timed("A", NOW_NS), untimed, timed("A", NOW_NS - 10**9), timed("A", NOW_NS + 10**9)]
    source, _ = source_of(lines, speed=1.0, clock=clock)
    assert len(list(source.read(ClockedStop(clock)))) == 4
    assert clock.waits == [1.0]


def test_replay_stops_when_told_while_waiting() -> None:
    clock = FakeClock()
    lines = [timed("A", NOW_NS), timed("A", NOW_NS + 60 * 10**9), timed("A", NOW_NS + 120 * 10**9)]
    source, _ = source_of(lines, speed=1.0, clock=clock)
    stop = ClockedStop(clock)
    ticks = source.read(stop)
    next(ticks)
    stop.set()
    assert list(ticks) == []


def test_the_readme_examples_are_valid_lines() -> None:
    readme = Path(replay.__file__).parents[1] / "README.md"
    block = (
        readme.read_text().split("### Replay line format", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    )
    parser = LineParser("SIM")
    parsed = [parser.parse(line.encode(), 1_795_200_000 * 10**9) for line in block.splitlines()]
    assert [type(p.tick).__name__ if p else None for p in parsed] == ["Trade", "Quote", "Trade", None]
    assert parsed[0].tick.exchange_time_ns == parsed[1].tick.exchange_time_ns  # type: ignore[union-attr]
