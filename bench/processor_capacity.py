"""Processor capacity: messages per second per core (CPU time from the OS, not wall time) of
tapewire's processor and of its Quix Streams peer (bench/peers/quix_processor.py), measured in
the same run on the same preloaded raw topic.

    .venv/bin/python -m bench.processor_capacity --messages 100000 --repetitions 3

What one run does:

1. Preloads a fresh raw topic with `messages` ticks over `instruments` instruments from the
   simulator's `Market` model (seeded, so every run sees the same market), keyed by instrument
   and stamped like the ingester does (`ingest_time_ns`); exchange times advance 1 ms per tick,
   so 1 s bars roll over about every thousand ticks and 1 min bars now and then.
2. For each repetition, and each contender in turn (the order rotates between repetitions, so no
   contender always runs first or last), starts the contender from the beginning of the raw
   topic with a fresh consumer group and fresh output topics, and waits until its output topic
   holds one output per tick (`messages` records, counted by a watcher in this process that
   reads with assign(), commits nothing and joins no group):
   - `tapewire`: `python -m services.processor` started through `tools.suite.Suite`, with topics
     and groups of its own. It is exactly-once (one Kafka transaction across batches, committed
     every 100 ms); it has no at-least-once mode. History (the PostgreSQL sink) is a service
     of its own and is not started: the peer has no sink either, and the sink is not
     enrichment. Its metrics port is off.
   - `quix`: the Quix Streams peer with Quix's default at-least-once guarantee, in its own venv.
   - `quix_eos` (unless `quix_exactly_once=False`): the same peer with Quix's exactly-once
     (Kafka transactions), the like-for-like comparison with tapewire's guarantee.
3. Samples the contender's CPU time (user + system, every thread, from /proc through
   bench.measure.ProcessSampler) from its **first output record** to its last. Start-up
   (interpreter and imports, topic checks, group join, state store setup) is excluded that way,
   without guessing an idle baseline; the records already seen at that moment are excluded from
   the count too. msgs/s per core = measured messages / CPU seconds; wall msgs/s = measured
   messages / wall seconds of the same window. The remaining error is the records produced
   between the watcher's fetch and the start of sampling: a few hundred at most, well under 1 %
   at 100k messages.

   The watcher reads `read_uncommitted`: a record counts once it is written, not once its
   transaction commits. Otherwise the window would follow the commits rather than the work:
   Quix's exactly-once commits one transaction per 5 s checkpoint, so its first output becomes
   visible only after 5 s of processing and the last up to 5 s after the work ended. So every
   commit inside the window is measured (tapewire's one per batch, Quix's checkpoints); the
   last one, after the last record is written, is not, for any contender. Each contender is
   then stopped with SIGTERM (a graceful stop that commits) and its exit code is recorded.

`run()` returns per contender every repetition and the medians, and the ratios tapewire/peer of
the medians (and per repetition). Everything it creates carries the run's id (topics, consumer
groups, Quix's changelog topics and state directory) and is deleted at the end unless `keep`.

Time (2-core machine, shared): preloading takes about 1 s per 20k ticks; each contender takes
its start-up (tapewire 1.5-2 s, Quix 3.5-6.5 s: topic checks, changelog topic creation,
RocksDB) plus messages / its wall rate (seen: tapewire 6-12k/s, Quix 2-4k/s), plus up to a
few seconds to stop. 20k messages, 1 repetition, three contenders: about 30-40 s; 100k
messages, 3 repetitions: roughly 5-7 minutes. The first call also builds the Quix venv (about
1 minute, once).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.measure import ProcessSampler, ProcessUsage, median
from bench.peers.quix_env import ensure_quix_venv
from services.ingester.sources.simulator import Market
from tapewire.kafka import ensure_topics
from tapewire.settings import KafkaSettings
from tapewire.ticks import to_proto
from tools.isolation import delete_topics
from tools.suite import Suite

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "bench" / "peers" / "quix_processor.py"
WORK_DIR = ROOT / ".local" / "bench"
TAPEWIRE = "tapewire"
QUIX = "quix"
QUIX_EOS = "quix_eos"
GUARANTEES = {
    TAPEWIRE: "exactly-once (one Kafka transaction across batches, committed every 100 ms)",
    QUIX: "at-least-once (Quix default; commit every 5 s)",
    QUIX_EOS: "exactly-once (Quix; a Kafka transaction per 5 s checkpoint)",
}
SEED = 20_240_601
EXCHANGE_STEP_NS = 1_000_000  # 1 ms of exchange time between ticks: 1000 ticks/s over all
INGEST_DELAY_NS = 2_000_000  # the stamp a 2 ms feed-to-ingester hop would give


@dataclass(frozen=True)
class Repetition:
    contender: str
    repetition: int
    messages: int  # measured: the outputs counted after sampling began
    cpu_s: float
    wall_s: float
    msgs_per_core_s: float
    msgs_per_s: float
    cores: float  # average cores busy over the window
    peak_rss_mb: float
    startup_s: float  # launch to first output record
    exit_code: int | None  # after SIGTERM: 0 is a clean stop


@dataclass
class _Window:
    """What the watcher saw: set once the last record arrived (or it gave up)."""

    first_seen_at: float = 0.0
    counted_before: int = 0
    count: int = 0
    sampler: ProcessSampler | None = None
    usage: dict[str, ProcessUsage] = dataclasses.field(default_factory=dict)
    error: str | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


class OutputWatcher:
    """Counts the records of `topic` (read_uncommitted) in a thread; starts `sampler` at the first
    and stops it at the `expected`-th."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, expected: int) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-watch-{uuid.uuid4().hex[:8]}",  # never joined: assign()
                "enable.auto.commit": False,
                # Written, not committed: see the module docstring (step 3).
                "isolation.level": "read_uncommitted",
                "fetch.wait.max.ms": 50,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self._expected = expected
        self._stop = threading.Event()
        self.window = _Window()
        self._thread: threading.Thread | None = None

    def start(self, sampler: ProcessSampler) -> OutputWatcher:
        self.window.sampler = sampler
        self._thread = threading.Thread(target=self._run, name="output-watcher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        window = self.window
        try:
            while not self._stop.is_set() and window.count < self._expected:
                batch = self._consumer.consume(10_000, 0.1)
                good = sum(1 for message in batch if message.error() is None)
                if good and window.count == 0:
                    assert window.sampler is not None
                    window.sampler.start()
                    window.first_seen_at = time.monotonic()
                    window.counted_before = good
                window.count += good
        except KafkaException as exc:
            window.error = str(exc)
        finally:
            # Stopped on every path once started (its thread would otherwise sample on); only a
            # complete count makes the usage a result.
            if window.first_seen_at and window.sampler is not None:
                usage = window.sampler.stop()
                if window.count >= self._expected:
                    window.usage = usage
            window.done.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._consumer.close()


def preload(bootstrap: str, topic: str, messages: int, instruments: int, partitions: int) -> None:
    """Create `topic` and publish `messages` simulated ticks to it, keyed by instrument."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    ensure_topics(kafka, {topic: partitions})
    market = Market(instruments, venue="SIM", trade_ratio=0.3, seed=SEED)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    start_ns = time.time_ns() - messages * EXCHANGE_STEP_NS
    for n in range(messages):
        exchange_ns = start_ns + n * EXCHANGE_STEP_NS
        tick = dataclasses.replace(
            market.next_tick(exchange_ns), ingest_time_ns=exchange_ns + INGEST_DELAY_NS
        )
        value = to_proto(tick).SerializeToString()
        while True:
            try:
                producer.produce(topic, key=tick.instrument.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"preload: {remaining} ticks not acknowledged")


@dataclass
class _Launch:
    """A started contender: its pid, how to stop it, and where its log is."""

    pid: int
    stop: Callable[[], int | None]
    log: Path
    exited: Callable[[], int | None]


def _launch_tapewire(
    bootstrap: str, raw: str, tag: str, partitions: int, log_dir: Path
) -> tuple[_Launch, str]:
    processed = f"{tag}_processed"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "TAPEWIRE_TOPIC_RAW": raw,
        "TAPEWIRE_TOPIC_PROCESSED": processed,
        "TAPEWIRE_TOPIC_PROCESSOR_STATE": f"{tag}_state",
        "TAPEWIRE_TOPIC_COMMANDS": f"{tag}_commands",
        "TAPEWIRE_TOPIC_PROCESSOR_ALERTS": f"{tag}_alerts",
        "TAPEWIRE_TOPIC_ALERT_EVENTS": f"{tag}_alert_events",
        "TAPEWIRE_TOPIC_INSTRUMENTS": f"{tag}_instruments",
        "TAPEWIRE_TOPIC_PARTITIONS": str(partitions),
        "PROCESSOR_GROUP_ID": f"{tag}-group",
        "PROCESSOR_METRICS_PORT": "0",
    }
    # The processed topic must exist before the watcher assigns it; the processor creates the
    # rest (and finds this one) at start-up.
    ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), {processed: partitions})
    suite = Suite(env=env, log_dir=log_dir, services=("processor",))
    process = suite.start_service("processor", instance=tag)

    def stop() -> int | None:
        return suite.stop(30).get(tag)

    return _Launch(process.pid, stop, log_dir / f"{tag}.log", process.poll), processed


def _launch_quix(
    bootstrap: str, raw: str, tag: str, partitions: int, log_dir: Path, state_root: Path, exactly_once: bool
) -> tuple[_Launch, str]:
    output = f"{tag}_out"
    ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), {output: partitions})
    python = ensure_quix_venv()
    argv = [
        str(python),
        str(PEER),
        "--bootstrap",
        bootstrap,
        "--input",
        raw,
        "--output",
        output,
        "--group",
        f"{tag}-group",
        "--state-dir",
        str(state_root / tag),
    ]
    if exactly_once:
        argv.append("--exactly-once")
    log_path = log_dir / f"{tag}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> int | None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
        finally:
            log_file.close()

    return _Launch(process.pid, stop, log_path, process.poll), output


@dataclass(frozen=True)
class _Measured:
    startup_s: float  # launch to the first output record
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    messages: int  # outputs after sampling began


def measure_one(
    launch: _Launch, bootstrap: str, output: str, partitions: int, messages: int, timeout_s: float
) -> _Measured:
    """Watch `output` until it holds `messages` records, sampling the contender's CPU meanwhile."""
    launched_at = time.monotonic()
    sampler = ProcessSampler({"contender": launch.pid})
    watcher = OutputWatcher(bootstrap, output, partitions, messages).start(sampler)
    window = watcher.window
    deadline = launched_at + timeout_s
    try:
        while not window.done.wait(0.2):
            code = launch.exited()
            if code is not None:
                raise RuntimeError(
                    f"contender exited with {code} after {window.count} outputs:\n{_tail(launch.log)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{window.count} of {messages} outputs after {timeout_s:.0f} s:\n{_tail(launch.log)}"
                )
    finally:
        watcher.close()
    if window.error is not None or "contender" not in window.usage:
        raise RuntimeError(f"watcher failed after {window.count} outputs: {window.error}")
    usage = window.usage["contender"]
    return _Measured(
        startup_s=window.first_seen_at - launched_at,
        wall_s=sampler.wall_s,
        cpu_s=usage.cpu_s,
        peak_rss_mb=usage.peak_rss_mb,
        messages=messages - window.counted_before,
    )


def run_contender(
    contender: str,
    repetition: int,
    bootstrap: str,
    raw: str,
    run_id: str,
    messages: int,
    partitions: int,
    dirs: tuple[Path, Path],
    timeout_s: float,
) -> Repetition:
    log_dir, state_root = dirs
    tag = f"b{run_id}_{contender}_{repetition}"
    if contender == TAPEWIRE:
        launch, output = _launch_tapewire(bootstrap, raw, tag, partitions, log_dir)
    else:
        launch, output = _launch_quix(
            bootstrap, raw, tag, partitions, log_dir, state_root, exactly_once=contender == QUIX_EOS
        )
    try:
        m = measure_one(launch, bootstrap, output, partitions, messages, timeout_s)
    finally:
        exit_code = launch.stop()
    return Repetition(
        contender=contender,
        repetition=repetition,
        messages=m.messages,
        cpu_s=round(m.cpu_s, 3),
        wall_s=round(m.wall_s, 3),
        msgs_per_core_s=round(m.messages / m.cpu_s, 1) if m.cpu_s > 0 else math.nan,
        msgs_per_s=round(m.messages / m.wall_s, 1) if m.wall_s > 0 else math.nan,
        cores=round(m.cpu_s / m.wall_s, 3) if m.wall_s > 0 else math.nan,
        peak_rss_mb=round(m.peak_rss_mb, 1),
        startup_s=round(m.startup_s, 2),
        exit_code=exit_code,
    )


def run(
    kafka_bootstrap: str,
    messages: int,
    repetitions: int,
    instruments: int = 100,
    *,
    partitions: int = 6,
    quix_exactly_once: bool = True,
    timeout_s: float | None = None,
    keep: bool = False,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Measure every contender `repetitions` times on one preloaded raw topic (module docstring).

    `timeout_s` bounds each contender's start-up plus processing (default: 60 s plus 2 ms per
    message). Returns a JSON-ready dict.
    """
    if messages < 1 or repetitions < 1:
        raise ValueError("messages and repetitions must be at least 1")
    contenders = [TAPEWIRE, QUIX, *([QUIX_EOS] if quix_exactly_once else [])]
    limit = timeout_s if timeout_s is not None else 60.0 + messages * 0.002
    run_id = uuid.uuid4().hex[:10]
    raw = f"b{run_id}_raw"
    ensure_quix_venv()  # before any timing: the first call may install it
    reps: dict[str, list[Repetition]] = {name: [] for name in contenders}
    with _workspace(run_id, keep) as dirs:
        try:
            started = time.monotonic()
            preload(kafka_bootstrap, raw, messages, instruments, partitions)
            log(f"preloaded {messages} ticks into {raw} in {time.monotonic() - started:.1f} s")
            for repetition in range(repetitions):
                shift = repetition % len(contenders)
                for contender in contenders[shift:] + contenders[:shift]:
                    result = run_contender(
                        contender, repetition, kafka_bootstrap, raw, run_id, messages, partitions, dirs, limit
                    )
                    reps[contender].append(result)
                    log(
                        f"rep {repetition} {contender}: {result.msgs_per_core_s:.0f} msgs/s per core, "
                        f"{result.msgs_per_s:.0f} msgs/s wall, {result.cores:.2f} cores, "
                        f"start-up {result.startup_s:.1f} s"
                    )
        finally:
            if not keep:
                _delete_kafka_objects(kafka_bootstrap, run_id)
    return _report(run_id, raw, messages, instruments, partitions, repetitions, reps)


def _report(
    run_id: str,
    raw: str,
    messages: int,
    instruments: int,
    partitions: int,
    repetitions: int,
    reps: dict[str, list[Repetition]],
) -> dict[str, Any]:
    contenders: dict[str, Any] = {}
    for name, results in reps.items():
        contenders[name] = {
            "guarantee": GUARANTEES[name],
            "repetitions": [dataclasses.asdict(r) for r in results],
            "median": {
                key: round(median([getattr(r, key) for r in results]), 3)
                for key in ("msgs_per_core_s", "msgs_per_s", "cpu_s", "wall_s", "cores", "peak_rss_mb")
            },
        }
    ratios: dict[str, Any] = {}
    for peer in (name for name in reps if name != TAPEWIRE):
        ratios[f"{TAPEWIRE}/{peer}"] = {
            key: _ratio(contenders[TAPEWIRE]["median"][key], contenders[peer]["median"][key])
            for key in ("msgs_per_core_s", "msgs_per_s")
        } | {
            "msgs_per_core_s_per_repetition": [
                _ratio(a.msgs_per_core_s, b.msgs_per_core_s)
                for a, b in zip(reps[TAPEWIRE], reps[peer], strict=True)
            ]
        }
    return {
        "benchmark": "processor_capacity",
        "run_id": run_id,
        "raw_topic": raw,
        "messages": messages,
        "instruments": instruments,
        "partitions": partitions,
        "repetitions": repetitions,
        "cpu_window": "first output record to the last; CPU of the contender's process from the OS",
        "contenders": contenders,
        "ratios": ratios,
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else math.nan


@contextmanager
def _workspace(run_id: str, keep: bool) -> Iterator[tuple[Path, Path]]:
    """(log dir, Quix state root) of this run, under .local/bench/; removed unless `keep`."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix=f"processor-capacity-{run_id}-", dir=WORK_DIR))
    logs, states = base / "logs", base / "state"
    logs.mkdir()
    states.mkdir()
    try:
        yield logs, states
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _delete_kafka_objects(bootstrap: str, run_id: str) -> None:
    """Delete the topics and consumer groups of this run only: every name carries `b<run_id>`."""
    # log_level 4: no notice-level chatter (librdkafka's "purging unserved events" on close).
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    mark = f"b{run_id}"
    topics = [name for name in admin.list_topics(timeout=10).topics if mark in name]
    if topics:
        delete_topics(KafkaSettings(bootstrap_servers=bootstrap), topics)
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid if mark in g.group_id]
    for future in admin.delete_consumer_groups(groups).values() if groups else []:
        with suppress(KafkaException):
            future.result()


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or the devstack's)",
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--instruments", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--no-quix-eos", action="store_true", help="skip the Quix exactly-once contender")
    parser.add_argument("--keep", action="store_true", help="keep topics, groups, logs and state")
    args = parser.parse_args()
    result = run(
        args.bootstrap,
        args.messages,
        args.repetitions,
        args.instruments,
        partitions=args.partitions,
        quix_exactly_once=not args.no_quix_eos,
        keep=args.keep,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
