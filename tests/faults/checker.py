"""The fault suite's checker: what the broker acknowledged against what every store ended up with.

It trusts nothing the services say about themselves. Per instrument it reads the raw topic, the
processed topic (read_committed, every version), PostgreSQL (`instrument_state`, `bars_1s`,
`bars_1m`) and Redis (`<prefix>state:<instrument>`), and counts:

- **lost**: acknowledged ticks that no processed state reflects. The k-th acknowledged tick of
  an instrument is reflected by a state with version k whose `last_sequence` is that tick's.
- **duplicated**: versions published more than once.
- **out of order**: states published after a higher version, and states whose version does not
  match the tick they carry (ticks applied in another order than they were acknowledged).

Anything else that is wrong (an aggregate, a PostgreSQL row, a Redis hash) is a problem, named
in the summary.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from services.dashboard_api.rest import views
from tapewire.db import connect_kwargs
from tapewire.keys import STATE_PAYLOAD_FIELD, STATE_VERSION_FIELD, RedisKeys
from tapewire.redis_client import SyncClient, connect
from tapewire.settings import KafkaSettings, PostgresSettings, RedisSettings, TopicSettings
from tapewire.v1 import market_pb2 as pb
from tests.faults.loadgen import Acked, LoadGen
from tests.faults.wsclients import without_stamps

RESULTS = Path(__file__).resolve().parents[2] / "results" / "faults-summary.txt"
MAX_PROBLEMS_SHOWN = 15


@dataclass(frozen=True)
class Stores:
    """Where one fault test's pipeline keeps its data."""

    kafka: KafkaSettings
    topics: TopicSettings
    redis_settings: RedisSettings
    postgres: PostgresSettings

    @functools.cached_property
    def keys(self) -> RedisKeys:
        return RedisKeys.from_settings(self.redis_settings)

    def redis(self) -> SyncClient:
        return connect(self.redis_settings, socket_timeout=5, socket_connect_timeout=2)

    def postgres_connection(self) -> psycopg.Connection[Any]:
        return psycopg.connect(**connect_kwargs(self.postgres), autocommit=True, connect_timeout=5)


@dataclass(frozen=True)
class Expected:
    """What one instrument's acknowledged ticks add up to."""

    sequences: list[int]  # in the order they sit on the partition
    trades: int
    volume: Decimal


@dataclass
class Summary:
    title: str
    faults: int
    sent: int = 0
    acked: int = 0
    instruments: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    catch_up_s: float | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.problems)

    def format(self) -> str:
        catch_up = f"{self.catch_up_s:.1f} s" if self.catch_up_s is not None else "never"
        lines = [
            f"fault suite: {self.title}",
            f"  ticks sent {self.sent} | acknowledged {self.acked} | instruments {self.instruments}"
            f" | lost {self.lost} | duplicated {self.duplicated} | out of order {self.out_of_order}"
            f" | catch-up {catch_up}",
            *(f"  {note}" for note in self.notes),
            *(f"  PROBLEM {problem}" for problem in self.problems[:MAX_PROBLEMS_SHOWN]),
        ]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"  ... and {len(self.problems) - MAX_PROBLEMS_SHOWN} more problems")
        return "\n".join(lines)


def report(summary: Summary) -> str:
    """Print the summary and append it to results/faults-summary.txt; return the text."""
    text = summary.format()
    print(f"\n{text}", flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with RESULTS.open("a") as out:
        out.write(f"[{stamp}] {text}\n")
    return text


def expectations(acked: list[Acked]) -> dict[str, Expected]:
    by_instrument: dict[str, list[Acked]] = defaultdict(list)
    # In sequence order, not by the acknowledged offset: the load generator sends each
    # instrument's ticks in sequence order on an idempotent producer, which keeps that order in
    # the partition (audit_raw checks it), and a retried batch that the broker recognises as
    # already written is acknowledged without its offset (-1001).
    for tick in sorted(acked, key=lambda t: (t.instrument, t.sequence)):
        by_instrument[tick.instrument].append(tick)
    return {
        name: Expected(
            sequences=[t.sequence for t in ticks],
            trades=sum(1 for t in ticks if t.size is not None),
            volume=sum((t.size for t in ticks if t.size is not None), Decimal(0)),
        )
        for name, ticks in by_instrument.items()
    }


# -- catch-up -----------------------------------------------------------------------------------


def versions_in_redis(stores: Stores, instruments: list[str]) -> dict[str, int]:
    client = stores.redis()
    try:
        pipe = client.pipeline(transaction=False)
        for name in instruments:
            pipe.hget(stores.keys.state(name), STATE_VERSION_FIELD)
        return {name: int(v) for name, v in zip(instruments, pipe.execute(), strict=True) if v is not None}
    finally:
        client.close()


def versions_in_postgres(stores: Stores) -> dict[str, int]:
    with stores.postgres_connection() as conn:
        return dict(conn.execute("SELECT instrument, version FROM instrument_state").fetchall())


def wait_caught_up(stores: Stores, final: dict[str, int], since: float, timeout_s: float) -> float | None:
    """Seconds from `since` (monotonic) until Redis and PostgreSQL both hold every final version."""
    deadline = time.monotonic() + timeout_s
    names = sorted(final)
    while time.monotonic() < deadline:
        try:
            in_redis = versions_in_redis(stores, names)
            in_postgres = versions_in_postgres(stores)
        except (redis.RedisError, psycopg.OperationalError):
            in_redis, in_postgres = {}, {}
        if all(in_redis.get(n) == v and in_postgres.get(n) == v for n, v in final.items()):
            return time.monotonic() - since
        time.sleep(0.1)
    return None


# -- the check ----------------------------------------------------------------------------------


def verify(
    stores: Stores,
    load: LoadGen,
    summary: Summary,
    since: float,
    catch_up_timeout_s: float = 60.0,
) -> Summary:
    """Wait for catch-up (measured from `since`), then audit every store into `summary`."""
    acked = load.acked()
    expected = expectations(acked)
    summary.sent, summary.acked, summary.instruments = load.sent, len(acked), len(expected)
    final = {name: len(e.sequences) for name, e in expected.items()}
    summary.catch_up_s = wait_caught_up(stores, final, since, catch_up_timeout_s)
    if summary.catch_up_s is None:
        summary.problems.append(
            f"Redis and PostgreSQL did not reach the final versions in {catch_up_timeout_s}s"
        )
    audit_raw(stores, expected, summary)
    latest = audit_processed(stores, expected, summary)
    audit_postgres(stores, expected, summary)
    audit_redis(stores, expected, latest, summary)
    return summary


def read_topic(kafka: KafkaSettings, topic: str, timeout_s: float = 60.0) -> dict[str, list[bytes]]:
    """Every committed record of `topic`, grouped by key, in partition order."""
    consumer = Consumer(
        {
            **kafka.as_librdkafka_dict(),
            "group.id": f"faults-checker-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    records: dict[str, list[bytes]] = defaultdict(list)
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending, deadline = set(partitions), time.monotonic() + timeout_s
        while pending:
            assert time.monotonic() < deadline, (
                f"{topic}: partitions {sorted(pending)} not read in {timeout_s}s"
            )
            for message in consumer.consume(10_000, 0.5):
                error = message.error()
                if error is None:
                    records[(message.key() or b"").decode()].append(message.value() or b"")
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                else:
                    raise AssertionError(f"{topic}: {error.str()}")
    finally:
        consumer.close()
    return records


def audit_seen(stores: Stores, seen: list[dict[tuple[str, int], dict[str, Any]]], summary: Summary) -> None:
    """Every state a client saw over /ws equals, field by field except the stage stamps, the
    committed state of the same version (read_committed). The live path reads uncommitted; this
    is the proof that nothing it can show is distinguishable from the committed stream."""
    committed: dict[tuple[str, int], dict[str, Any]] = {}
    for values in read_topic(stores.kafka, stores.topics.processed).values():
        for value in values:
            state = pb.InstrumentState.FromString(value)
            committed[(state.instrument, state.version)] = without_stamps(views.state_to_json(state))
    compared = 0
    for n, states in enumerate(seen):
        for key, shown in states.items():
            compared += 1
            if key not in committed:
                summary.problems.append(f"ws client {n} saw {key[0]} v{key[1]}, which was never committed")
            elif shown != committed[key]:
                differ = sorted(
                    f for f in shown.keys() | committed[key].keys() if shown.get(f) != committed[key].get(f)
                )
                summary.problems.append(
                    f"ws client {n} saw {key[0]} v{key[1]} unlike the committed one: {differ}"
                )
    summary.notes.append(f"states seen by ws clients and checked against the committed stream: {compared}")


def audit_raw(stores: Stores, expected: dict[str, Expected], summary: Summary) -> None:
    raw = read_topic(stores.kafka, stores.topics.raw)
    for name, exp in expected.items():
        sequences = [pb.Tick.FromString(value).sequence for value in raw.get(name, [])]
        if sequences != exp.sequences:
            summary.problems.append(
                f"{name}: the raw topic holds {len(sequences)} ticks, {len(exp.sequences)} acknowledged"
            )


def audit_processed(
    stores: Stores, expected: dict[str, Expected], summary: Summary
) -> dict[str, pb.InstrumentState]:
    """Count loss, duplicates and disorder per instrument; return each one's highest state."""
    processed = read_topic(stores.kafka, stores.topics.processed)
    latest: dict[str, pb.InstrumentState] = {}
    for name, exp in expected.items():
        states = [pb.InstrumentState.FromString(value) for value in processed.get(name, [])]
        _audit_stream(name, states, exp, summary)
        if states:
            latest[name] = max(states, key=lambda s: s.version)
            _audit_aggregates(name, latest[name], exp, summary)
    return latest


def _audit_stream(name: str, states: list[pb.InstrumentState], exp: Expected, summary: Summary) -> None:
    versions = [s.version for s in states]
    summary.duplicated += len(versions) - len(set(versions))
    summary.out_of_order += sum(1 for before, after in pairwise(versions) if after < before)
    n = len(exp.sequences)
    mismatched = [
        s for s in states if not (1 <= s.version <= n and s.last_sequence == exp.sequences[s.version - 1])
    ]
    summary.out_of_order += len(mismatched)
    if mismatched:
        first = mismatched[0]
        summary.problems.append(
            f"{name}: {len(mismatched)} states do not carry the tick their version counts"
            f" (first: version {first.version} has sequence {first.last_sequence})"
        )
    reflected = {s.version for s in states} - {s.version for s in mismatched}
    if lost := n - len(reflected):
        summary.lost += lost
        missing = sorted(set(range(1, n + 1)) - reflected)
        summary.problems.append(f"{name}: {lost} of {n} versions missing, first {missing[:5]}")
    repeated = [v for v, count in Counter(versions).items() if count > 1]
    if repeated:
        summary.problems.append(f"{name}: versions published more than once: {sorted(repeated)[:5]}")


def _audit_aggregates(name: str, last: pb.InstrumentState, exp: Expected, summary: Summary) -> None:
    volume = Decimal(last.session_volume or "0")
    if (volume, last.trade_count) != (exp.volume, exp.trades):
        summary.problems.append(
            f"{name}: final state has volume {volume} over {last.trade_count} trades,"
            f" acknowledged {exp.volume} over {exp.trades}"
        )


def audit_postgres(stores: Stores, expected: dict[str, Expected], summary: Summary) -> None:
    with stores.postgres_connection() as conn:
        versions = dict(conn.execute("SELECT instrument, version FROM instrument_state").fetchall())
        bars = {
            table: {
                row[0]: (row[1], row[2])
                for row in conn.execute(
                    f"SELECT instrument, sum(volume), sum(trade_count) FROM {table} GROUP BY instrument"
                )
            }
            for table in ("bars_1s", "bars_1m")
        }
    for name, exp in expected.items():
        if versions.get(name) != len(exp.sequences):
            summary.problems.append(
                f"{name}: PostgreSQL instrument_state version {versions.get(name)},"
                f" expected {len(exp.sequences)}"
            )
        for table, sums in bars.items():
            volume, trades = sums.get(name, (Decimal(0), 0))
            if (volume, trades) != (exp.volume, exp.trades):
                summary.problems.append(
                    f"{name}: {table} sums to volume {volume} over {trades} trades,"
                    f" acknowledged {exp.volume} over {exp.trades}"
                )


def audit_redis(
    stores: Stores,
    expected: dict[str, Expected],
    latest: dict[str, pb.InstrumentState],
    summary: Summary,
) -> None:
    client = stores.redis()
    try:
        pipe = client.pipeline(transaction=False)
        for name in expected:
            pipe.hmget(stores.keys.state(name), [STATE_VERSION_FIELD, STATE_PAYLOAD_FIELD])
        rows = dict(zip(expected, pipe.execute(), strict=True))
    finally:
        client.close()
    for name, exp in expected.items():
        version, payload = rows[name]
        if version is None or payload is None:
            summary.problems.append(f"{name}: no state in Redis, expected version {len(exp.sequences)}")
            continue
        cached = pb.InstrumentState.FromString(payload)
        if int(version) != len(exp.sequences) or cached.version != int(version):
            summary.problems.append(
                f"{name}: Redis holds version {int(version)} (state {cached.version}),"
                f" expected {len(exp.sequences)}"
            )
        last = latest.get(name)
        if last is not None and _headline(cached) != _headline(last):
            summary.problems.append(
                f"{name}: Redis state {_headline(cached)} differs from"
                f" the processed topic's {_headline(last)}"
            )


def _headline(state: pb.InstrumentState) -> tuple[int, str, str]:
    return state.version, state.last_price, state.session_volume
