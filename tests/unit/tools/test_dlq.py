"""The DLQ tool's pure parts: header decoding, re-validation, selection, formatting, replay accounting."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from tapewire.startup import explain
from tapewire.v1 import market_pb2 as pb
from tools.dlq import (
    DeadLetter,
    DlqSettings,
    RecordNotFound,
    ReplayCounts,
    Republisher,
    Selection,
    Verdict,
    dead_letter,
    format_line,
    format_summary,
    hexdump,
    iso_utc,
    offset_ranges,
    parse_position,
    parse_positions,
    ranges_for,
    replay_action,
    replay_partition,
    revalidate,
    show_bytes,
    to_json,
)

NOW = 1_763_649_000 * 10**9  # 2025-11-20 14:30:00 UTC
GOOD = pb.Tick(
    instrument="AAPL", venue="XNAS", kind=pb.TICK_KIND_TRADE, price="187.42", size="100", exchange_time_ns=NOW
).SerializeToString()
HEADERS: list[tuple[str, str | bytes | None]] = [
    ("tapewire-error", b"price must be > 0, got -1"),
    ("tapewire-error-code", b"invalid"),
    ("tapewire-source-topic", b"tt_raw_data"),
    ("tapewire-source-partition", b"4"),
    ("tapewire-source-offset", b"1234"),
    ("tapewire-service", b"processor"),
    ("tapewire-failed-at-ns", str(NOW + 123_456_789).encode()),
]


def record(**fields: Any) -> DeadLetter:
    base = dead_letter(0, 7, b"AAPL", GOOD, HEADERS)
    return DeadLetter(**{**{f: getattr(base, f) for f in DeadLetter.__slots__}, **fields})


def test_headers_decode_into_a_dead_letter() -> None:
    dl = dead_letter(1, 42, b"AAPL", b"\x01", HEADERS)

    assert (dl.partition, dl.offset, dl.key, dl.value) == (1, 42, b"AAPL", b"\x01")
    assert (dl.code, dl.reason, dl.service) == ("invalid", "price must be > 0, got -1", "processor")
    assert (dl.source_topic, dl.source_partition, dl.source_offset) == ("tt_raw_data", 4, 1234)
    assert dl.failed_at_ns == NOW + 123_456_789
    assert dl.headers[0] == ("tapewire-error", "price must be > 0, got -1")


def test_missing_or_garbled_headers_become_unknown() -> None:
    dl = dead_letter(0, 0, None, None, [("tapewire-source-partition", b"x"), ("other", b"\xff")])

    assert (dl.code, dl.reason, dl.source_topic, dl.source_partition, dl.failed_at_ns) == (
        "",
        "",
        None,
        None,
        None,
    )
    assert dl.headers[1] == ("other", "\ufffd")
    assert dead_letter(0, 0, None, None, None).headers == ()


@pytest.mark.parametrize(
    ("value", "code", "reason"),
    [
        (None, "empty", "record has no value"),
        (b"x" * 300, "too_large", "record of 300 bytes exceeds 256"),
        (b"\xff\xfe not protobuf", "undecodable", "not a tapewire.v1.Tick: "),
        (
            pb.Tick(
                instrument="AAPL", kind=pb.TICK_KIND_TRADE, price="0", size="1", exchange_time_ns=NOW
            ).SerializeToString(),
            "invalid",
            "price must be > 0, got 0",
        ),
    ],
)
def test_revalidate_applies_the_processors_checks_in_order(
    value: bytes | None, code: str, reason: str
) -> None:
    verdict = revalidate(value, NOW, max_record_bytes=256)

    assert verdict.code == code and verdict.reason.startswith(reason) and not verdict.valid


def test_revalidate_accepts_a_valid_tick_at_the_given_time() -> None:
    assert revalidate(GOOD, NOW, 4096) == Verdict(None, "valid")
    # The time rule is judged against the clock at replay: a day and a bit earlier it is "ahead".
    assert revalidate(GOOD, NOW - 2 * 86_400 * 10**9, 4096).code == "invalid"


def test_positions_parse_and_bad_ones_are_refused() -> None:
    assert parse_position(" 2:15 ") == (2, 15)
    assert parse_positions("0:1, 2:3,") == frozenset({(0, 1), (2, 3)})
    for bad in ("2", "a:1", "1:-1", "1:2:3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_position(bad)


def test_selection_matches_on_every_given_criterion() -> None:
    dl = record()

    assert Selection().matches(dl)
    assert Selection(positions=frozenset({(0, 7)}), code="invalid", partition=0).matches(dl)
    assert not Selection(code="undecodable").matches(dl)
    assert not Selection(positions=frozenset({(0, 8)})).matches(dl)
    assert not Selection(partition=1).matches(dl)


def test_offset_ranges_start_at_the_low_watermark_or_the_asked_offset() -> None:
    marks = {0: (0, 10), 1: (5, 8), 2: (3, 3)}

    assert offset_ranges(marks) == {0: (0, 10), 1: (5, 8)}
    assert offset_ranges(marks, from_offset=7) == {0: (7, 10), 1: (7, 8)}


def test_ranges_for_positions_cover_them_or_name_the_missing() -> None:
    marks = {0: (0, 10), 1: (5, 8)}

    assert ranges_for([(0, 3), (0, 6), (1, 5)], marks) == {0: (3, 7), 1: (5, 6)}
    with pytest.raises(RecordNotFound, match=r"no record at 1:2, 3:0 \(the topic holds 0:0..9, 1:5..7\)"):
        ranges_for([(0, 1), (1, 2), (3, 0)], marks)


def test_times_are_iso_utc_with_milliseconds() -> None:
    assert iso_utc(NOW + 123_456_789) == "2025-11-20T14:30:00.123Z"
    assert iso_utc(None) == "?"


def test_keys_show_as_text_when_printable_else_hex() -> None:
    assert show_bytes(b"AAPL") == "AAPL"
    assert show_bytes(b"\x00\xff") == "0x00ff"
    assert show_bytes(None) == "-"
    assert show_bytes(b"A" * 50, width=10) == "AAAAAAA..."


def test_list_line_truncates_the_reason_to_fit() -> None:
    line = format_line(record(reason="x " * 100), reason_width=20)

    assert line.startswith("0:7       2025-11-20T14:30:00.123Z invalid     x x x x x x x x x...  ")
    assert line.endswith(f"tt_raw_data:4:1234  key=AAPL  {len(GOOD)} B")


def test_json_has_every_header_and_base64_bytes() -> None:
    obj = json.loads(to_json(record(value=None), "tt_raw_data.dlq"))

    assert (obj["topic"], obj["partition"], obj["offset"], obj["code"]) == (
        "tt_raw_data.dlq",
        0,
        7,
        "invalid",
    )
    assert base64.b64decode(obj["key"]) == b"AAPL" and obj["value"] is None and obj["value_size"] is None
    assert obj["headers"]["tapewire-source-offset"] == "1234"
    assert obj["failed_at"] == "2025-11-20T14:30:00.123Z"


def test_summary_counts_by_code() -> None:
    assert format_summary({"invalid": 2, "empty": 1}) == "3 records: empty 1, invalid 2"
    assert format_summary({"invalid": 2}, shown=1) == "2 records: invalid 2 (showing the first 1)"
    assert format_summary({}) == "0 records"


def test_hexdump_shows_offsets_bytes_and_text() -> None:
    lines = hexdump(bytes(range(65, 85)))

    assert lines == [
        "00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|",
        "00000010  51 52 53 54" + " " * 39 + "|QRST|",
    ]
    assert lines[0].index("|") == lines[1].index("|")
    assert len(hexdump(b"\x00" * 1000)) == 16


def test_replay_goes_back_to_the_source_partition_of_the_same_topic() -> None:
    dl = record()

    assert replay_partition(dl, "tt_raw_data", partitions=6) == 4
    assert replay_partition(dl, "elsewhere", partitions=6) == -1
    assert replay_partition(dl, "tt_raw_data", partitions=3) == -1
    assert replay_partition(record(source_partition=None), "tt_raw_data", partitions=6) == -1


def test_replay_actions_and_summary() -> None:
    good, bad = Verdict(None, "valid"), Verdict("invalid", "price must be > 0, got -1")
    assert [replay_action(good, False), replay_action(bad, False), replay_action(bad, True)] == [
        "replay",
        "skip",
        "force",
    ]

    counts = ReplayCounts()
    counts.add(good, "replay")
    counts.add(bad, "skip")
    counts.add(bad, "skip")
    assert counts.summary(dry_run=False) == "chosen 3, replayed 1, still invalid 2 (skipped 2), failed 0"
    assert counts.summary(dry_run=True).startswith("dry run, nothing produced: chosen 3, would replay 1")


class FakeProducer:
    """Records what is produced; `flush` runs the delivery callbacks with the given errors."""

    def __init__(self, errors: list[Any], unacknowledged: int = 0) -> None:
        self.produced: list[dict[str, Any]] = []
        self._errors = errors
        self._unacknowledged = unacknowledged

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append({"topic": topic, **kwargs})

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        for sent, error in zip(self.produced, self._errors, strict=False):
            callback: Callable[[Any, Any], None] = sent["on_delivery"]
            callback(error, None)
        return self._unacknowledged


class FakeError:
    def str(self) -> str:
        return "Broker: Not enough in-sync replicas"


def test_republisher_sends_original_bytes_with_the_replayed_from_header() -> None:
    producer = FakeProducer(errors=[None])
    republisher = Republisher(producer, "tt_raw_data", 6, "tt_raw_data.dlq")  # type: ignore[arg-type]

    republisher.send(record())

    [sent] = producer.produced
    assert (sent["topic"], sent["key"], sent["value"], sent["partition"]) == ("tt_raw_data", b"AAPL", GOOD, 4)
    assert sent["headers"] == [("tapewire-replayed-from", "tt_raw_data.dlq:0:7")]
    assert republisher.finish(1) == 0 and republisher.failures == []


def test_republisher_counts_failed_and_unacknowledged_deliveries() -> None:
    producer = FakeProducer(errors=[None, FakeError()], unacknowledged=1)
    republisher = Republisher(producer, "tt_raw_data", 6, "tt_raw_data.dlq")  # type: ignore[arg-type]
    for offset in range(3):
        republisher.send(record(offset=offset))

    assert republisher.finish(1) == 2
    assert republisher.failures == [
        "0:1: Broker: Not enough in-sync replicas",
        "1 records not acknowledged within 1s",
    ]


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSOR_MAX_RECORD_BYTES", "3")

    with pytest.raises(ValidationError) as caught:
        DlqSettings()

    assert (
        explain(caught.value, DlqSettings)
        == "  PROCESSOR_MAX_RECORD_BYTES: Input should be greater than or equal to 256"
    )
