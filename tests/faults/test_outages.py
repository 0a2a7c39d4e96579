"""Outages and backlogs: the ingester rides out a broker that goes away, and a stage that is far
behind works through its backlog in bounded memory, with its lag in plain sight.

The broker outage runs on a private broker (`private_servers.PrivateKafka`) that the test stops
and starts again; the backlogs run on the shared servers, on the test's own topics.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from services.ingester.sources.simulator import Market
from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.ticks import to_proto
from tapewire.v1 import market_pb2 as pb
from tests.faults.private_servers import PrivateKafka, free_ports, kafka_runtime_missing, private_kafka
from tests.support import wait_for
from tools.suite import Suite

pytestmark = pytest.mark.faults

SAMPLE_EVERY_S = 0.5

# The ingester's queue, and how long each act of the outage lasts at least.
QUEUE_SIZE = 2_000
FLOW_S, OUTAGE_S, RECOVERY_S = 5.0, 10.0, 10.0
# librdkafka buffers up to queue.buffering.max.messages (100 000 by default; the ingester keeps
# it) before produce() pushes back, and only then does the ingester's queue fill. At 500 ticks/s
# a 10 s outage (5 000 ticks) never gets that far: the queue policy would not be exercised at
# all. So the feed runs faster, and the broker stays down until the policy has acted.
RATE = 8_000
FILL_TIMEOUT_S = 60.0

BACKLOG = 100_000
# Measured on a 2-core machine busy with other test runs, 100 000 ticks of backlog: the
# processor peaked at 104-109 MiB RSS and cache_updater at 115-126 MiB. One-off runs of the
# processor on bigger backlogs peaked at 152 MiB (300 000), 171 MiB (600 000) and 170 MiB
# (1 200 000): librdkafka's prefetch cap (queued.max.messages.kbytes), not the backlog, sets the
# ceiling. The bound is about twice what this test's backlog needs.
RSS_BOUND_MIB = 250


# --------------------------------------------------------------------------- sampling


def scrape(url: str) -> dict[str, float] | None:
    """Every sample of a Prometheus endpoint, summed over its labels; None if it does not answer."""
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def rss_mib(pid: int) -> float | None:
    """VmRSS of `pid`, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), None)
    return None if kib is None else kib / 1024


@dataclass(frozen=True)
class Sample:
    phase: str
    alive: bool
    rss_mib: float | None
    metrics: dict[str, float] | None  # None when /metrics did not answer

    def get(self, name: str) -> float:
        return (self.metrics or {}).get(name, 0.0)


@dataclass
class Sampler:
    """A service process (alive? RSS) and its /metrics, sampled every SAMPLE_EVERY_S until `done`."""

    process: subprocess.Popen[bytes]
    metrics_url: str
    phase: str = "start"
    samples: list[Sample] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.done.is_set():
            alive = self.process.poll() is None
            rss = rss_mib(self.process.pid) if alive else None
            metrics = scrape(self.metrics_url) if alive else None
            self.samples.append(Sample(self.phase, alive, rss, metrics))
            self.done.wait(SAMPLE_EVERY_S)

    def scraped(self, phase: str | None = None) -> list[Sample]:
        return [s for s in self.samples if s.metrics is not None and phase in (None, s.phase)]

    def latest(self, name: str) -> float:
        scraped = self.scraped()
        return scraped[-1].get(name) if scraped else 0.0

    def highest(self, name: str, phase: str | None = None) -> float:
        return max((s.get(name) for s in self.scraped(phase)), default=0.0)

    def timeline(self, names: tuple[str, ...]) -> str:
        """One line per phase: how many samples, and each metric's first and last value in it."""
        lines = []
        for phase in dict.fromkeys(s.phase for s in self.samples):
            scraped = self.scraped(phase)
            values = (f"{n} {scraped[0].get(n):.0f}..{scraped[-1].get(n):.0f}" for n in names if scraped)
            count = sum(s.phase == phase for s in self.samples)
            lines.append(f"  {phase}: {count} samples, {len(scraped)} scraped; {', '.join(values)}")
        return "\n".join(lines)


@contextmanager
def sampling(process: subprocess.Popen[bytes], metrics_url: str) -> Iterator[Sampler]:
    """A `Sampler` at work on a thread of its own until the block ends."""
    sampler = Sampler(process, metrics_url)
    thread = threading.Thread(target=sampler.run, name="sampler", daemon=True)
    thread.start()
    try:
        yield sampler
    finally:
        sampler.done.set()
        thread.join(10)


def wait_sampled(sampler: Sampler, condition: Callable[[Sampler], bool], timeout_s: float, what: str) -> None:
    """Until `condition` holds for the samples so far; fail at once if the process ended."""

    def met() -> bool:
        assert sampler.process.poll() is None, f"the process ended (code {sampler.process.returncode})"
        return condition(sampler)

    wait_for(met, timeout_s, what, interval_s=SAMPLE_EVERY_S / 2)


def hold(phase_started: float, at_least_s: float) -> None:
    """The deliberate length of an act of the scenario (monotonic), not an awaitable event."""
    time.sleep(max(0.0, phase_started + at_least_s - time.monotonic()))


# --------------------------------------------------------------------------- the broker outage


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafka]:
    """One private broker for the outage tests (each on its own topic): a start costs seconds."""
    missing = kafka_runtime_missing()
    if missing:
        pytest.skip(f"a private Kafka broker cannot run: {missing}")
    with private_kafka(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture
def broker(module_broker: PrivateKafka) -> PrivateKafka:
    """The private broker, running (a failed test may have left it stopped)."""
    return module_broker if module_broker.running else module_broker.start()


@dataclass(frozen=True)
class Summary:
    """The ingester's last log line, `ingester stopped`."""

    accepted: int
    invalid: int
    published: int
    delivery_failures: int
    dropped: int
    left: int
    failed: bool

    @property
    def documented_exit_code(self) -> int:
        """services/ingester/README.md: 1 when ticks were lost or a part failed, else 0."""
        return 1 if self.failed or self.delivery_failures or self.left else 0


def ingester_summary(log: Path) -> Summary:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    stopped = [line for line in lines if line.get("msg") == "ingester stopped"]
    assert stopped, "the ingester did not log its summary"
    return Summary(**{f.name: stopped[-1][f.name] for f in fields(Summary)})


def read_ticks(kafka: KafkaSettings, topic: str) -> dict[int, list[tuple[str, int]]]:
    """partition -> (instrument, sequence) of every record, in offset order, up to the current end."""
    consumer = Consumer(
        {**kafka.as_librdkafka_dict(), "group.id": "outage-reader", "enable.partition.eof": True}
    )
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ticks: dict[int, list[tuple[str, int]]] = {p: [] for p in partitions}
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 0.5):
                partition, error = message.partition(), message.error()
                assert partition is not None
                if error is None:
                    tick = pb.Tick.FromString(message.value() or b"")
                    ticks[partition].append((tick.instrument, tick.sequence))
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(partition)
                else:
                    raise AssertionError(f"reading {topic}: {error}")
        assert not pending, f"partitions {sorted(pending)} of {topic} were not read to their end"
        return ticks
    finally:
        consumer.close()


def check_sequences(ticks: dict[int, list[tuple[str, int]]], contiguous: bool) -> None:
    """No (instrument, sequence) twice; each instrument's sequence rises, by one when `contiguous`."""
    pairs = [pair for records in ticks.values() for pair in records]
    assert len(pairs) == len(set(pairs)), f"{len(pairs) - len(set(pairs))} duplicate (instrument, sequence)"
    for partition, records in ticks.items():
        last: dict[str, int] = {}
        for instrument, sequence in records:
            previous = last.get(instrument, 0)
            assert sequence > previous, f"{instrument} on partition {partition}: {sequence} after {previous}"
            assert not contiguous or sequence == previous + 1, f"{instrument}: {previous} -> {sequence}"
            last[instrument] = sequence


INGESTER_METRICS = (
    "ingester_ticks_accepted_total",
    "ingester_published_total",
    "ingester_queue_depth",
    "ingester_queue_dropped_total",
)


def ingester_env(broker: PrivateKafka, topic: str, policy: str, metrics_port: int) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "TAPEWIRE_TOPIC_RAW": topic,
        "TAPEWIRE_TOPIC_PARTITIONS": "3",
        "INGESTER_RATE": str(RATE),
        "INGESTER_SEED": "7",
        "INGESTER_QUEUE_SIZE": str(QUEUE_SIZE),
        "INGESTER_QUEUE_POLICY": policy,
        "INGESTER_METRICS_HOST": "127.0.0.1",
        "INGESTER_METRICS_PORT": str(metrics_port),
        "INGESTER_GRPC_ENABLED": "false",
    }


def queue_pushed_back(policy: str) -> Callable[[Sampler], bool]:
    """The policy is at work: the queue was full (block) or has dropped a tick (drop_oldest)."""
    if policy == "block":
        return lambda s: s.highest("ingester_queue_depth", "outage") >= QUEUE_SIZE
    return lambda s: s.latest("ingester_queue_dropped_total") > 0


def run_through_outage(sampler: Sampler, broker: PrivateKafka, policy: str) -> None:
    """Flow, then the broker down until the queue pushed back (and OUTAGE_S at least), then back."""
    wait_sampled(sampler, lambda s: s.latest("ingester_published_total") > 0, 60, "the first ack")
    sampler.phase = "flow"
    hold(time.monotonic(), FLOW_S)
    sampler.phase = "outage"
    down_since = time.monotonic()
    broker.stop()
    wait_sampled(sampler, queue_pushed_back(policy), FILL_TIMEOUT_S, f"the {policy} policy to act")
    hold(down_since, OUTAGE_S)
    sampler.phase = "restart"
    broker.start()
    sampler.phase = "recovery"
    hold(time.monotonic(), RECOVERY_S)


@pytest.mark.parametrize("policy", ["block", "drop_oldest"])
def test_ingester_rides_out_a_broker_outage(
    policy: str, broker: PrivateKafka, unique: str, tmp_path: Path
) -> None:
    topic = f"t{unique}_raw"
    (metrics_port,) = free_ports(1)
    suite = Suite(ingester_env(broker, topic, policy, metrics_port), tmp_path / "logs", services=())
    suite.log_dir.mkdir(parents=True)
    ingester = suite.start_service("ingester")
    try:
        with sampling(ingester, f"http://127.0.0.1:{metrics_port}/metrics") as sampler:
            try:
                run_through_outage(sampler, broker, policy)
            finally:
                print(f"{policy}, by phase:\n{sampler.timeline(INGESTER_METRICS)}")
        ingester.send_signal(signal.SIGTERM)
        code = ingester.wait(60)
    finally:
        suite.stop()
    summary = ingester_summary(suite.log_dir / "ingester.log")
    outage = sampler.scraped("outage") + sampler.scraped("restart")
    print(
        f"{policy}: {summary}, exit {code}; during the outage: {len(outage)} scrapes, queue depth max "
        f"{sampler.highest('ingester_queue_depth', 'outage'):.0f}, ingester RSS max "
        f"{max(s.rss_mib or 0 for s in sampler.samples):.0f} MiB"
    )

    # It never exited while the broker was away, kept serving /metrics, and stopped on SIGTERM.
    assert all(s.alive for s in sampler.samples), suite.log_tail("ingester")
    assert len(outage) >= OUTAGE_S / SAMPLE_EVERY_S / 2, "/metrics hardly answered during the outage"
    assert code == summary.documented_exit_code, f"exit {code} for {summary}"
    assert summary.delivery_failures == 0 and not summary.failed, summary
    # The queue stayed bounded; its policy decided what happened to the overflow.
    assert max(s.get("ingester_queue_depth") for s in sampler.scraped()) <= QUEUE_SIZE
    assert summary.accepted == summary.published + summary.dropped + summary.left, summary
    if policy == "block":
        assert summary.dropped == 0 and sampler.latest("ingester_queue_dropped_total") == 0
    else:
        assert summary.dropped > 0, summary
    # It reconnected by itself: acknowledgements resumed once the broker was back.
    assert sampler.highest("ingester_published_total", "recovery") > sampler.highest(
        "ingester_published_total", "outage"
    )

    # Nothing acknowledged is lost, nothing is written twice, and each instrument stays in order.
    ticks = read_ticks(KafkaSettings(bootstrap_servers=broker.bootstrap_servers), topic)
    records = sum(map(len, ticks.values()))
    assert summary.published <= records <= summary.accepted - summary.dropped, (records, summary)
    assert records >= sampler.latest("ingester_published_total")
    # Under `block` every tick the simulator numbered was accepted, so numbers run without gaps.
    check_sequences(ticks, contiguous=policy == "block")


# --------------------------------------------------------------------------- backlogs


def preload_raw_ticks(kafka: KafkaSettings, topic: str, count: int) -> None:
    """`count` simulator ticks, produced as fast as the broker takes them."""
    market = Market(instruments=50, venue="SIM", trade_ratio=0.3, seed=11)
    producer = Producer(
        {**kafka.as_librdkafka_dict(), "enable.idempotence": True, "linger.ms": 20, "compression.type": "lz4"}
    )
    for _ in range(count):
        tick = market.next_tick(time.time_ns())
        key, value = tick.instrument.encode(), to_proto(tick).SerializeToString()
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0, "the backlog was not acknowledged"


@pytest.fixture
def backlog_env(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    env_for_services: Callable[..., dict[str, str]],
) -> Iterator[dict[str, str]]:
    yield env_for_services(
        PROCESSOR_METRICS_HOST="127.0.0.1",
        CACHE_UPDATER_METRICS_HOST="127.0.0.1",
    )
    # A backlog of 100 000 ticks and as many states is not worth keeping on the shared broker.
    admin = AdminClient(kafka_settings.as_librdkafka_dict())
    for future in admin.delete_topics(list(topics.all_topics()), operation_timeout=30).values():
        future.result()


@dataclass(frozen=True)
class Backlog:
    """How one stage went through its backlog."""

    seconds: float
    lag_max: float
    lag_end: float
    rss_max_mib: float
    rss_end_mib: float

    def __str__(self) -> str:
        return (
            f"{BACKLOG} records in {self.seconds:.1f}s, lag max {self.lag_max:.0f} -> {self.lag_end:.0f}, "
            f"RSS max {self.rss_max_mib:.0f} MiB, {self.rss_end_mib:.0f} MiB at the end"
        )


def work_through(suite: Suite, service: str, metrics_port: int) -> Backlog:
    """Start `service` on its backlog and sample it until it has consumed all of it, lag 0."""
    started = time.monotonic()
    process = suite.start_service(service, {f"{service.upper()}_METRICS_PORT": str(metrics_port)})
    consumed, lag = f"{service}_records_consumed_total", f"{service}_consumer_lag"

    def done(s: Sampler) -> bool:
        scraped = s.scraped()
        last = scraped[-1].metrics if scraped else None
        return last is not None and last.get(consumed, 0) >= BACKLOG and last.get(lag) == 0

    with sampling(process, f"http://127.0.0.1:{metrics_port}/metrics") as sampler:
        wait_sampled(sampler, done, 120, f"{service} to work through {BACKLOG} records")
    return Backlog(
        seconds=time.monotonic() - started,
        lag_max=sampler.highest(lag),
        lag_end=sampler.latest(lag),
        rss_max_mib=max(s.rss_mib or 0.0 for s in sampler.samples),
        rss_end_mib=sampler.scraped()[-1].rss_mib or 0.0,
    )


def test_a_stage_behind_works_through_its_backlog_in_bounded_memory_with_lag_visible(
    backlog_env: dict[str, str], kafka_settings: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    preload_raw_ticks(kafka_settings, topics.raw, BACKLOG)
    suite = Suite(backlog_env, tmp_path / "logs", services=())
    suite.log_dir.mkdir(parents=True)
    processor_port, cache_updater_port = free_ports(2)
    try:
        processor = work_through(suite, "processor", processor_port)
        # Every tick became a state on the processed topic: the cache_updater's backlog.
        cache_updater = work_through(suite, "cache_updater", cache_updater_port)
    finally:
        codes = suite.stop()
    print(f"processor: {processor}\ncache_updater: {cache_updater}")
    assert codes == dict.fromkeys(suite.processes, 0), f"did not stop cleanly: {codes}"
    for stage in (processor, cache_updater):
        # The lag showed the backlog while there was one, and came down to nothing.
        assert stage.lag_max > 0 and stage.lag_end == 0, stage
        assert stage.rss_max_mib < RSS_BOUND_MIB, stage
