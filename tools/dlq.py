"""`python -m tools.dlq`: inspect the dead-letter queue and replay chosen records after a fix.

    python -m tools.dlq list                           # one line per dead letter, then counts by code
    python -m tools.dlq list --code invalid --json     # one JSON object per line
    python -m tools.dlq show 0:42                      # one record in full, with its Tick decoded
    python -m tools.dlq replay --code invalid --dry-run
    python -m tools.dlq replay --records 0:42,0:43

Reading changes nothing on the broker: the tool assigns the DLQ's partitions to itself (no
consumer group is joined, no offset committed) and reads up to the end offsets it found at
start. `replay` re-validates each chosen record exactly as the processor does and publishes
the ones that pass now, with their original key and value, to the raw topic, adding the header
`tapewire-replayed-from: <dlq topic>:<partition>:<offset>`.

Settings come from the environment like the services': KAFKA_*, TAPEWIRE_TOPIC_RAW (the DLQ
is `<raw>.dlq`) and PROCESSOR_MAX_RECORD_BYTES (the processor's size limit, for re-validation).
Exit status: 0 done, 1 a replayed record was not acknowledged, 2 nothing done (bad arguments or
settings, broker unreachable, topic or record not found), 130 interrupted.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tapewire import dead_letters
from tapewire.dead_letters import Refused, decode_raw_tick
from tapewire.errors import KafkaFailure, TapewireError
from tapewire.kafka import producer_config, watermark_offsets
from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.startup import explain
from tapewire.v1 import market_pb2 as pb

# The headers the processor puts on every dead letter, and the one replay adds.
H_ERROR = dead_letters.HEADER_ERROR
H_CODE = dead_letters.HEADER_CODE
H_SOURCE_TOPIC = dead_letters.HEADER_SOURCE_TOPIC
H_SOURCE_PARTITION = dead_letters.HEADER_SOURCE_PARTITION
H_SOURCE_OFFSET = dead_letters.HEADER_SOURCE_OFFSET
H_SERVICE = dead_letters.HEADER_SERVICE
H_FAILED_AT = dead_letters.HEADER_FAILED_AT
H_REPLAYED_FROM = dead_letters.HEADER_REPLAYED_FROM
KNOWN_CODES = dead_letters.CODES

HEX_DUMP_BYTES = 256
REASON_WIDTH = 60

Position = tuple[int, int]
"""(partition, offset) of a record in the DLQ."""

OffsetRanges = Mapping[int, tuple[int, int]]
"""partition -> [start, end) offsets to read."""


class DlqToolError(TapewireError):
    """A request the tool cannot carry out as asked."""


class RecordNotFound(DlqToolError):
    """A record or partition asked for is not in the DLQ."""


class DlqSettings(BaseSettings):
    """The services' Kafka and topic settings, plus the processor's record size limit."""

    model_config = SettingsConfigDict(env_prefix="PROCESSOR_", frozen=True, extra="ignore")

    # Same variable and default as the processor's, so re-validation rejects what it rejects.
    max_record_bytes: int = Field(default=4096, ge=256)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One DLQ record with the processor's headers decoded; a missing or garbled header is None
    (an empty string for `code` and `reason`)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    code: str
    reason: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    service: str | None
    failed_at_ns: int | None
    headers: tuple[tuple[str, str | None], ...] = ()

    @property
    def position(self) -> Position:
        return self.partition, self.offset


def dead_letter(
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> DeadLetter:
    """Decode a DLQ record as written by the processor's `_dead_letter`."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    decoded = tuple((name, _text(raw)) for name, raw in pairs)
    found = dict(decoded)
    return DeadLetter(
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        code=found.get(H_CODE) or "",
        reason=found.get(H_ERROR) or "",
        source_topic=found.get(H_SOURCE_TOPIC),
        source_partition=_int(found.get(H_SOURCE_PARTITION)),
        source_offset=_int(found.get(H_SOURCE_OFFSET)),
        service=found.get(H_SERVICE),
        failed_at_ns=_int(found.get(H_FAILED_AT)),
        headers=decoded,
    )


def _text(raw: str | bytes | None) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="replace")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# -- re-validation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the processor would do with a record now: accept it (`code` None) or dead-letter it."""

    code: str | None
    reason: str

    @property
    def valid(self) -> bool:
        return self.code is None


def revalidate(value: bytes | None, now_ns: int, max_record_bytes: int) -> Verdict:
    """What the processor would do with the record now: the very same checks."""
    try:
        decode_raw_tick(value, now_ns, max_record_bytes)
    except Refused as refused:
        return Verdict(refused.code, str(refused))
    return Verdict(None, "valid")


def decode_tick(value: bytes | None) -> pb.Tick | str:
    """The value as a wire Tick, or why it is not one."""
    if value is None:
        return "the record has no value"
    try:
        return pb.Tick.FromString(value)
    except DecodeError as exc:
        return f"does not decode: {exc}"


# -- selection ----------------------------------------------------------------------------------


def parse_position(text: str) -> Position:
    """`PARTITION:OFFSET`, both non-negative integers."""
    partition, sep, offset = text.strip().partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not PARTITION:OFFSET (e.g. 0:42)")
    return int(partition), int(offset)


def parse_positions(text: str) -> frozenset[Position]:
    """A comma-separated list of `PARTITION:OFFSET`."""
    return frozenset(parse_position(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command works on; None matches everything."""

    positions: frozenset[Position] | None = None
    code: str | None = None
    partition: int | None = None

    def matches(self, record: DeadLetter) -> bool:
        return (
            (self.positions is None or record.position in self.positions)
            and (self.code is None or record.code == self.code)
            and (self.partition is None or record.partition == self.partition)
        )


def offset_ranges(watermarks: OffsetRanges, from_offset: int | None = None) -> dict[int, tuple[int, int]]:
    """What to read of each partition: from its low watermark (or `from_offset`) to its end."""
    start = from_offset or 0
    return {p: (max(low, start), high) for p, (low, high) in watermarks.items() if max(low, start) < high}


def ranges_for(positions: Collection[Position], watermarks: OffsetRanges) -> dict[int, tuple[int, int]]:
    """The smallest ranges holding every position; RecordNotFound names those outside the topic."""
    missing = [f"{p}:{o}" for p, o in sorted(positions) if not _holds(watermarks, p, o)]
    if missing:
        held = ", ".join(
            f"{p}:{low}..{high - 1}" for p, (low, high) in sorted(watermarks.items()) if low < high
        )
        raise RecordNotFound(f"no record at {', '.join(missing)} (the topic holds {held or 'nothing'})")
    ranges: dict[int, tuple[int, int]] = {}
    for p, o in positions:
        start, end = ranges.get(p, (o, o + 1))
        ranges[p] = (min(start, o), max(end, o + 1))
    return ranges


def _holds(watermarks: OffsetRanges, partition: int, offset: int) -> bool:
    low, high = watermarks.get(partition, (0, 0))
    return low <= offset < high


# -- formatting ---------------------------------------------------------------------------------


def iso_utc(ns: int | None) -> str:
    """Epoch nanoseconds as ISO 8601 UTC with milliseconds; `?` when unknown."""
    if ns is None:
        return "?"
    stamp = datetime.fromtimestamp(ns // 10**9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 10**9 // 10**6:03d}Z"


def truncate(text: str, width: int) -> str:
    """One line of at most `width` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def show_bytes(data: bytes | None, width: int = 32) -> str:
    """A key for people: its text when printable UTF-8, else hex; `-` for none."""
    if data is None:
        return "-"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text.isprintable() and text:
        return truncate(text, width)
    return truncate("0x" + data.hex(), width)


def source_of(record: DeadLetter) -> str:
    """Where the processor read it: `<topic>:<partition>:<offset>`."""
    return f"{record.source_topic or '?'}:{_or_q(record.source_partition)}:{_or_q(record.source_offset)}"


def _or_q(value: int | None) -> str:
    return "?" if value is None else str(value)


def value_size(value: bytes | None) -> str:
    return "no value" if value is None else f"{len(value)} B"


LIST_HEADER = f"{'DLQ':<9} {'FAILED AT (UTC)':<24} {'CODE':<11} {'REASON':<{REASON_WIDTH}}  SOURCE  KEY  SIZE"


def format_line(record: DeadLetter, reason_width: int = REASON_WIDTH) -> str:
    """One line of `list`: DLQ position, time, code, reason, source, key, value size."""
    return (
        f"{record.partition}:{record.offset:<7} {iso_utc(record.failed_at_ns):<24} {record.code or '?':<11} "
        f"{truncate(record.reason, reason_width):<{reason_width}}  {source_of(record)}  "
        f"key={show_bytes(record.key)}  {value_size(record.value)}"
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def to_json(record: DeadLetter, topic: str) -> str:
    """One line of `list --json`: every header decoded, key and value in base64."""
    return json.dumps(
        {
            "topic": topic,
            "partition": record.partition,
            "offset": record.offset,
            "code": record.code,
            "reason": record.reason,
            "source_topic": record.source_topic,
            "source_partition": record.source_partition,
            "source_offset": record.source_offset,
            "service": record.service,
            "failed_at_ns": record.failed_at_ns,
            "failed_at": iso_utc(record.failed_at_ns) if record.failed_at_ns is not None else None,
            "headers": dict(record.headers),
            "key": _b64(record.key),
            "value": _b64(record.value),
            "value_size": None if record.value is None else len(record.value),
        }
    )


def format_summary(counts: Mapping[str, int], shown: int | None = None) -> str:
    """`3 records: invalid 2, undecodable 1`, noting how many were shown when --limit cut it."""
    total = sum(counts.values())
    by_code = ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))
    line = f"{total} record{'' if total == 1 else 's'}" + (f": {by_code}" if by_code else "")
    return line if shown is None or shown >= total else f"{line} (showing the first {shown})"


def hexdump(data: bytes, limit: int = HEX_DUMP_BYTES) -> list[str]:
    """`hexdump -C` style lines of the first `limit` bytes."""
    lines = []
    for start in range(0, min(len(data), limit), 16):
        chunk = data[start : min(start + 16, limit)]
        cells = [f"{b:02x}" for b in chunk] + ["  "] * (16 - len(chunk))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {' '.join(cells[:8])}  {' '.join(cells[8:])}  |{text}|")
    return lines


def format_detail(record: DeadLetter, topic: str, verdict: Verdict) -> list[str]:
    """Everything `show` prints about one record."""
    lines = [
        f"record     {topic}:{record.partition}:{record.offset}",
        f"code       {record.code or '?'}",
        f"reason     {record.reason}",
        f"source     {source_of(record)}",
        f"service    {record.service or '?'}",
        f"failed at  {iso_utc(record.failed_at_ns)} ({_or_q(record.failed_at_ns)} ns)",
        f"key        {show_bytes(record.key, 200)}"
        + (f" ({len(record.key)} bytes)" if record.key is not None else ""),
        f"value      {'no value' if record.value is None else f'{len(record.value)} bytes'}",
        "headers",
        *(f"  {name}: {value}" for name, value in record.headers),
    ]
    if record.value:
        shown = min(len(record.value), HEX_DUMP_BYTES)
        lines += [f"hex dump (first {shown} of {len(record.value)} bytes)"]
        lines += [f"  {line}" for line in hexdump(record.value)]
    tick = decode_tick(record.value)
    if isinstance(tick, str):
        lines.append(f"tapewire.v1.Tick: {tick}")
    else:
        lines += [
            "tapewire.v1.Tick",
            *(f"  {line}" for line in text_format.MessageToString(tick).splitlines()),
        ]
    now = "valid: replay would publish it" if verdict.valid else f"still {verdict.code}: {verdict.reason}"
    lines.append(f"now        {now}")
    return lines


# -- reading (I/O) ------------------------------------------------------------------------------


class DlqReader:
    """Reads offset ranges of a topic from partitions it assigns itself.

    No group is joined and no offset committed (librdkafka requires a group.id, which stays
    unused), so reading changes nothing on the broker.
    """

    def __init__(self, consumer: Consumer, bootstrap: str, timeout_s: float) -> None:
        self._consumer = consumer
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s

    def partitions(self, topic: str) -> list[int]:
        """The topic's partitions; KafkaFailure when the broker or the topic is not there."""
        try:
            metadata = self._consumer.list_topics(topic, timeout=self._timeout_s)
        except KafkaException as exc:
            raise KafkaFailure(
                f"broker at {self._bootstrap} not reachable within {self._timeout_s:g}s: {_describe(exc)}",
                _code(exc),
            ) from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            code = found.error.code() if found is not None else None
            raise KafkaFailure(f"topic {topic!r} does not exist on {self._bootstrap}", code)
        return sorted(found.partitions)

    def watermarks(self, topic: str, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(low, high) offsets of each partition, asked of the broker now."""
        marks = {}
        deadline = time.monotonic() + self._timeout_s
        for p in partitions:
            try:
                marks[p] = watermark_offsets(self._consumer, topic, p, deadline)
            except KafkaException as exc:
                raise KafkaFailure(f"end offsets of {topic}:{p}: {_describe(exc)}", _code(exc)) from exc
        return marks

    def read(self, topic: str, ranges: OffsetRanges) -> Iterator[DeadLetter]:
        """Every record in `ranges`, in order per partition; fails after `timeout_s` without progress."""
        remaining = {p: end for p, (start, end) in ranges.items() if start < end}
        if not remaining:
            return
        self._consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in remaining])
        deadline = time.monotonic() + self._timeout_s
        try:
            while remaining:
                if time.monotonic() > deadline:
                    left = ", ".join(f"{p} (to offset {end})" for p, end in sorted(remaining.items()))
                    raise KafkaFailure(
                        f"no progress reading {topic} for {self._timeout_s:g}s; partitions {left}"
                    )
                messages = self._consumer.consume(500, 0.2)
                if messages:
                    deadline = time.monotonic() + self._timeout_s
                for message in messages:
                    yield from _take(message, remaining)
        finally:
            self._consumer.unassign()


def _take(message: Message, remaining: dict[int, int]) -> Iterator[DeadLetter]:
    """Yield `message` if it lies in a range still being read; drop partitions that are done."""
    partition, offset = message.partition(), message.offset()
    if partition is None or offset is None or partition not in remaining:
        return
    error = message.error()
    if error is not None:
        # End of partition: nothing more to read there (e.g. the last offsets were control records).
        if error.code() == KafkaError._PARTITION_EOF:
            del remaining[partition]
        return
    end = remaining[partition]
    if offset < end:
        yield dead_letter(partition, offset, message.key(), message.value(), message.headers())
    if offset >= end - 1:
        del remaining[partition]


def _describe(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


def _client_conf(kafka: KafkaSettings, client_log: logging.Logger) -> dict[str, Any]:
    return {**kafka.as_librdkafka_dict(), "client.id": "tt-dlq", "logger": client_log}


@contextmanager
def open_reader(kafka: KafkaSettings, timeout_s: float, client_log: logging.Logger) -> Iterator[DlqReader]:
    consumer = Consumer(
        {
            **_client_conf(kafka, client_log),
            "group.id": f"tt-dlq-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            # Never create the topic asked about by a metadata request.
            "allow.auto.create.topics": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        yield DlqReader(consumer, kafka.bootstrap_servers, timeout_s)
    finally:
        consumer.close()


# -- replaying (I/O) ----------------------------------------------------------------------------


class Republisher:
    """Publishes dead letters back to a topic with the idempotent producer and tracks the acks."""

    def __init__(self, producer: Producer, topic: str, partitions: int, dlq_topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        self._dlq_topic = dlq_topic
        self.failures: list[str] = []

    def send(self, record: DeadLetter) -> None:
        where = f"{self._dlq_topic}:{record.partition}:{record.offset}"

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                self.failures.append(f"{record.partition}:{record.offset}: {error.str()}")

        while True:
            try:
                self._producer.produce(
                    self._topic,
                    value=record.value,
                    key=record.key,
                    partition=replay_partition(record, self._topic, self._partitions),
                    headers=[(H_REPLAYED_FROM, where)],
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def finish(self, timeout_s: float) -> int:
        """Wait for every acknowledgement; return how many records failed or stayed unacknowledged."""
        unacknowledged = self._producer.flush(timeout_s)
        failed = len(self.failures) + unacknowledged
        if unacknowledged:
            self.failures.append(f"{unacknowledged} records not acknowledged within {timeout_s:g}s")
        return failed


@dataclass
class ReplayCounts:
    """What `replay` did: `invalid` counts the still-invalid records, `forced` those sent anyway."""

    chosen: int = 0
    valid: int = 0
    invalid: int = 0
    forced: int = 0
    failed: int = 0

    def add(self, verdict: Verdict, action: str) -> None:
        self.chosen += 1
        self.valid += verdict.valid
        self.invalid += not verdict.valid
        self.forced += action == "force"

    def summary(self, dry_run: bool) -> str:
        sent = self.valid + self.forced - self.failed
        kept_out = f"forced {self.forced}" if self.forced else f"skipped {self.invalid}"
        replayed = f"would replay {sent}" if dry_run else f"replayed {sent}"
        invalid = f"still invalid {self.invalid} ({kept_out})"
        line = f"chosen {self.chosen}, {replayed}, {invalid}, failed {self.failed}"
        return f"dry run, nothing produced: {line}" if dry_run else line


def replay_partition(record: DeadLetter, target: str, partitions: int) -> int:
    """Back to the partition it came from, where its instrument's other ticks are; else -1 (by key).

    The producer's partitioner would pick the same partition only if the record's original
    producer used the same partitioner; the source partition is right whichever it was.
    """
    p = record.source_partition
    return p if record.source_topic == target and p is not None and 0 <= p < partitions else -1


def replay_action(verdict: Verdict, force: bool) -> str:
    """What replay does with a record given its verdict: `replay`, `force` or `skip`."""
    if verdict.valid:
        return "replay"
    return "force" if force else "skip"


def format_replay_line(
    record: DeadLetter, verdict: Verdict, action: str, target: tuple[str, int], dry_run: bool
) -> str:
    """One line per chosen record: what replay did (or would do) with it, and why."""
    topic, partition = target
    where = f"to {topic}:{partition}" if partition >= 0 else f"to {topic} (partition by key)"
    detail = where if verdict.valid else f"still {verdict.code}: {truncate(verdict.reason, 200)}"
    doing = f"{'would ' if dry_run else ''}{action}"
    return f"{record.partition}:{record.offset:<7} {record.code or '?':<11} {doing:<12} {detail}"


# -- command line -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    settings: DlqSettings
    topic: str
    timeout_s: float
    out: TextIO
    err: TextIO
    clock: Callable[[], int]
    client_log: logging.Logger

    def reader(self) -> AbstractContextManager[DlqReader]:
        return open_reader(self.settings.kafka, self.timeout_s, self.client_log)

    def say(self, line: str = "") -> None:
        print(line, file=self.out)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    selection = Selection(code=args.code, partition=args.partition)
    counts: Counter[str] = Counter()
    shown = 0
    with ctx.reader() as reader:
        partitions = reader.partitions(ctx.topic)
        if args.partition is not None and args.partition not in partitions:
            raise RecordNotFound(f"{ctx.topic} has no partition {args.partition} (it has {len(partitions)})")
        wanted = [p for p in partitions if args.partition in (None, p)]
        ranges = offset_ranges(reader.watermarks(ctx.topic, wanted), args.from_offset)
        if not args.json:
            ctx.say(LIST_HEADER)
        for record in reader.read(ctx.topic, ranges):
            if not selection.matches(record):
                continue
            counts[record.code or "?"] += 1
            if args.limit is None or shown < args.limit:
                ctx.say(to_json(record, ctx.topic) if args.json else format_line(record))
                shown += 1
    print(format_summary(counts, shown), file=ctx.err if args.json else ctx.out)
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    position: Position = args.position
    with ctx.reader() as reader:
        ranges = ranges_for([position], reader.watermarks(ctx.topic, reader.partitions(ctx.topic)))
        found = [r for r in reader.read(ctx.topic, ranges) if r.position == position]
    if not found:
        raise RecordNotFound(f"no record at {position[0]}:{position[1]} in {ctx.topic}")
    verdict = revalidate(found[0].value, ctx.clock(), ctx.settings.max_record_bytes)
    for line in format_detail(found[0], ctx.topic, verdict):
        ctx.say(line)
    return 0


def cmd_replay(ctx: Context, args: argparse.Namespace) -> int:
    target: str = args.to or ctx.settings.topics.raw
    if target == ctx.topic:
        raise DlqToolError(f"refusing to replay {ctx.topic} into itself")
    if args.records is not None and args.from_offset is not None:
        raise DlqToolError("--from-offset goes with --code or --all, not --records")
    selection = Selection(positions=args.records, code=args.code)
    with ctx.reader() as reader:
        target_partitions = len(reader.partitions(target))
        marks = reader.watermarks(ctx.topic, reader.partitions(ctx.topic))
        chosen: Iterable[DeadLetter]
        if args.records is not None:
            # Every record asked for must exist before anything is published.
            found = [
                r for r in reader.read(ctx.topic, ranges_for(args.records, marks)) if selection.matches(r)
            ]
            chosen = _all_found(found, args.records, ctx.topic)
        else:
            ranges = offset_ranges(marks, args.from_offset)
            chosen = (r for r in reader.read(ctx.topic, ranges) if selection.matches(r))
        if args.dry_run:
            return _replay(ctx, args, chosen, (target, target_partitions), None)
        producer = Producer(_producer_conf(ctx))
        republisher = Republisher(producer, target, target_partitions, ctx.topic)
        return _replay(ctx, args, chosen, (target, target_partitions), republisher)


def _all_found(records: list[DeadLetter], wanted: frozenset[Position], topic: str) -> list[DeadLetter]:
    missing = wanted - {r.position for r in records}
    if missing:
        raise RecordNotFound(f"no record at {', '.join(f'{p}:{o}' for p, o in sorted(missing))} in {topic}")
    return records


def _replay(
    ctx: Context,
    args: argparse.Namespace,
    chosen: Iterable[DeadLetter],
    target: tuple[str, int],
    republisher: Republisher | None,
) -> int:
    """Re-validate and (unless dry run) send each chosen record; `target` is (topic, partitions)."""
    counts = ReplayCounts()
    try:
        for record in chosen:
            verdict = revalidate(record.value, ctx.clock(), ctx.settings.max_record_bytes)
            action = replay_action(verdict, args.force)
            counts.add(verdict, action)
            where = (target[0], replay_partition(record, *target))
            ctx.say(format_replay_line(record, verdict, action, where, args.dry_run))
            if republisher is not None and action != "skip":
                republisher.send(record)
    finally:
        # Also when reading fails half-way: what was sent is acknowledged (or reported) first.
        if republisher is not None:
            counts.failed = republisher.finish(ctx.timeout_s + 10)
            for failure in republisher.failures:
                print(f"delivery failed: {failure}", file=ctx.err)
        ctx.say(counts.summary(args.dry_run))
    return 1 if counts.failed else 0


def _producer_conf(ctx: Context) -> dict[str, Any]:
    # A person is waiting: report a broker that stays away after the timeout rather than 2 minutes.
    timeout_ms = max(int(ctx.timeout_s * 1000), 1000)
    return producer_config(
        ctx.settings.kafka, "tt-dlq-replay", **{"delivery.timeout.ms": timeout_ms, "logger": ctx.client_log}
    )


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--topic", help="the DLQ to read (default: <TAPEWIRE_TOPIC_RAW>.dlq)")
    common.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="longest wait for the broker: per request, without progress while reading, for the acks "
        "(default: 30)",
    )
    common.add_argument("--verbose", action="store_true", help="show the Kafka client's own log on stderr")
    return common


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.dlq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,show,replay}")
    common = _common_options()
    codes = f"error code: {', '.join(KNOWN_CODES)}"

    p_list = sub.add_parser(
        "list",
        parents=[common],
        help="one line per dead letter, then counts by code",
        description="One line per dead letter: DLQ partition:offset, failed-at time (UTC), error code, "
        "reason, source topic:partition:offset, key and value size; then the count of each code.",
    )
    p_list.add_argument(
        "--limit", type=_non_negative, metavar="N", help="print at most N records (all counted)"
    )
    p_list.add_argument("--code", help=f"only this {codes}")
    p_list.add_argument("--partition", type=_non_negative, metavar="P", help="only this DLQ partition")
    p_list.add_argument(
        "--from-offset", type=_non_negative, metavar="O", help="start at offset O of each partition read"
    )
    p_list.add_argument("--json", action="store_true", help="one JSON object per line; counts on stderr")

    p_show = sub.add_parser(
        "show",
        parents=[common],
        help="one record in full: headers, hex, decoded Tick",
        description="Everything about one dead letter: its headers, key, value size, a hex dump of the "
        f"first {HEX_DUMP_BYTES} bytes, the tapewire.v1.Tick decoded as text if it decodes, and whether "
        "the processor would accept it now.",
    )
    p_show.add_argument("position", type=parse_position, metavar="PARTITION:OFFSET")

    p_replay = sub.add_parser(
        "replay",
        parents=[common],
        help="re-validate chosen records and publish the good ones to the raw topic",
        description="Re-validate each chosen record as the processor does and publish those that pass "
        "(original key and value, header tapewire-replayed-from) to the raw topic. Replaying a record "
        "twice publishes it twice: choose records, not the whole DLQ, after a replay.",
    )
    which = p_replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--records", type=parse_positions, metavar="P:O[,P:O...]", help="these records")
    which.add_argument("--code", help=f"every record with this {codes}")
    which.add_argument("--all", action="store_true", help="every record")
    p_replay.add_argument(
        "--from-offset", type=_non_negative, metavar="O", help="with --code/--all: from here"
    )
    p_replay.add_argument("--dry-run", action="store_true", help="say what would happen; produce nothing")
    p_replay.add_argument("--force", action="store_true", help="republish still-invalid records too (as is)")
    p_replay.add_argument("--to", metavar="TOPIC", help="publish here instead of TAPEWIRE_TOPIC_RAW")
    return parser


COMMANDS: dict[str, Callable[[Context, argparse.Namespace], int]] = {
    "list": cmd_list,
    "show": cmd_show,
    "replay": cmd_replay,
}


def _client_log(verbose: bool, err: TextIO) -> logging.Logger:
    log = logging.getLogger("tools.dlq.librdkafka")
    log.propagate = False
    log.handlers[:] = [logging.StreamHandler(err) if verbose else logging.NullHandler()]
    log.setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    return log


def main(
    argv: Sequence[str] | None = None,
    settings: DlqSettings | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> int:
    """Run one command; settings come from the environment unless given."""
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        settings = settings or DlqSettings()
    except ValidationError as exc:
        print(f"dlq: bad settings:\n{explain(exc, DlqSettings)}", file=err)
        return 2
    ctx = Context(
        settings=settings,
        topic=args.topic or settings.topics.raw_dlq,
        timeout_s=args.timeout,
        out=out,
        err=err,
        clock=clock,
        client_log=_client_log(args.verbose, err),
    )
    try:
        return COMMANDS[args.command](ctx, args)
    except TapewireError as exc:
        print(f"dlq: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("dlq: interrupted", file=err)
        return 130


if __name__ == "__main__":
    sys.exit(main())
