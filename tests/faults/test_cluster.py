"""The pipeline on a three-broker Kafka cluster: topics with 3 replicas, 2 in sync before any
record is acknowledged; under load, the leader of a partition and then the quorum's active
controller are killed with SIGKILL and restarted, and a broker comes back with an empty disk and
re-replicates. The fault suite's checker then audits every store.

The cluster is the test's own (`private_servers.PrivateKafkaCluster`: devstack's jars, three
nodes each a broker and a controller); Redis and PostgreSQL are the usual ones. The module's
`kafka_settings` and `topics` fixtures replace the suite's, so every other fixture (the
services' environment, the stores) follows the cluster.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tapewire.kafka import reader_config
from tapewire.settings import KafkaSettings, TopicSettings
from tests.faults.checker import Stores, Summary, verify
from tests.faults.harness import Pipeline, pace, wait_flowing
from tests.faults.private_servers import (
    PrivateKafkaCluster,
    free_ports,
    kafka_runtime_missing,
    private_kafka_cluster,
)
from tests.faults.test_faults import LOAD_END_TIMEOUT_S, NAMES, PROCESSORS, Pipelines, conclude, start_load
from tests.support import wait_for
from tools.devstack.kafka_cluster import (
    cluster_directory,
    cluster_down,
    cluster_running,
    cluster_up,
    node_pid,
)
from tools.isolation import own_topics

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

DOWN_S = 6.0  # how long a killed node stays down: a session timeout's worth
IN_SYNC_TIMEOUT_S = 120.0
# The catch-up allowed after the last fault. A transaction call that librdkafka wedges while a
# coordinator moves is given up on at its timeout (30 s here) plus 10 s, and the restarted
# processor's restore may wait another transaction timeout for the killed transaction to be
# aborted (docs/guarantees.md, "On a Kafka cluster"): up to ~75 s for one wedge.
CATCH_UP_S = 120.0
# What a processor logs when it exits for its supervisor to restart it.
ON_PURPOSE = ("services.processor.run.ProducerFenced", '"msg": "wedged, exiting at once"')


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafkaCluster]:
    missing = kafka_runtime_missing()
    if missing:
        pytest.fail(f"a private Kafka cluster cannot run: {missing}")
    with private_kafka_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def kafka_settings(cluster: PrivateKafkaCluster) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=cluster.bootstrap_servers, session_timeout_ms=6000)


@pytest.fixture
def topics(kafka_settings: KafkaSettings, unique: str) -> Iterator[TopicSettings]:
    with own_topics(kafka_settings, unique, replication_factor=3) as names:
        assert names.effective_min_insync_replicas == 2
        yield names


@dataclass
class Bounces:
    """Kills a node, keeps it down DOWN_S, starts it again (emptied first, if asked) and waits
    until it is back in every partition's ISR; notes how long that took."""

    cluster: PrivateKafkaCluster
    topics: list[str]
    notes: list[str] = field(default_factory=list)

    def __call__(self, node: int, what: str, wipe: bool = False) -> None:
        self.cluster.kill(node)
        down_at = time.monotonic()
        pace(down_at + DOWN_S)
        if wipe:
            self.cluster.wipe(node)
        self.cluster.start_node(node)
        wait_for(
            lambda: self.cluster.in_sync(node, self.topics),
            IN_SYNC_TIMEOUT_S,
            f"node {node} back in sync",
            0.5,
        )
        self.notes.append(
            f"{what} (node {node}): in sync again {time.monotonic() - down_at:.1f} s after the kill"
        )


# Injects a test's faults through `Bounces`; returns how many.
Faults = Callable[[Bounces], int]


@pytest.fixture
def under_load(
    cluster: PrivateKafkaCluster,
    pipelines: Pipelines,
    fault_env: dict[str, str],
    stores: Stores,
    kafka_settings: KafkaSettings,
) -> Callable[[float, str, Faults], None]:
    """`under_load(duration_s, title, faults)`: the pipeline on the cluster under 300 ticks/s
    for `duration_s`, `faults` injected meanwhile (processors that exit on purpose restarted),
    then the checker's audit of every store."""

    def run(duration_s: float, title: str, faults: Faults) -> None:
        # The transaction timeout docs/configuration.md asks for on a cluster, not the fault
        # suite's short one: a transaction open when its coordinator's broker dies must outlive
        # the failover (broker.session.timeout.ms, 9 s, plus an election), or the broker
        # aborts it and fences the producer.
        pipeline = pipelines({**fault_env, "PROCESSOR_TRANSACTION_TIMEOUT_MS": "30000"})
        for instance in (*PROCESSORS, "history_writer", "cache_updater"):
            pipeline.start(instance)
        load = start_load(kafka_settings, stores.topics, rate=300, duration_s=duration_s)
        wait_flowing(stores, NAMES, pipeline)
        bounce = Bounces(cluster, list(stores.topics.all_topics()))
        with supervised(pipeline, PROCESSORS) as restarts:
            count = faults(bounce)
            since = max(time.monotonic(), load.finish(LOAD_END_TIMEOUT_S))
            summary = verify(stores, load, Summary(title, count), since, catch_up_timeout_s=CATCH_UP_S)
        summary.notes.extend(bounce.notes)
        summary.notes.append(
            f"processors restarted after a fenced producer or a wedged call: {sum(restarts.values())}"
        )
        if not summary.ok:
            summary.notes.extend(
                where_it_stands(kafka_settings, stores.topics, fault_env["PROCESSOR_GROUP_ID"])
            )
        conclude(pipeline, summary)

    return run


def test_a_partition_leader_kill9(
    under_load: Callable[[float, str, Faults], None], cluster: PrivateKafkaCluster, stores: Stores
) -> None:
    """The broker kill `make test` runs: the leader of a raw partition, under load."""

    def faults(bounce: Bounces) -> int:
        bounce(cluster.leader(stores.topics.raw, 0), "partition leader kill -9")
        return 1

    under_load(24, "3-broker cluster: partition leader kill -9", faults)


@pytest.mark.cluster
def test_leader_and_controller_kill9_and_a_broker_back_empty(
    under_load: Callable[[float, str, Faults], None], cluster: PrivateKafkaCluster, stores: Stores
) -> None:
    def faults(bounce: Bounces) -> int:
        # Every partition carries the same load: the leader of the raw topic's first one.
        bounce(cluster.leader(stores.topics.raw, 0), "partition leader kill -9")
        bounce(cluster.active_controller(), "active controller kill -9")
        bounce(cluster.leader(stores.topics.processed, 1), "broker restarted with an empty disk", wipe=True)
        return 3

    under_load(60, "3-broker cluster: leader, controller kill -9, a broker back empty", faults)


def where_it_stands(kafka: KafkaSettings, topics: TopicSettings, group: str) -> list[str]:
    """Per partition: the raw topic's end and the processors' committed offset, and the processed
    topic's end and last stable offset (an open or hanging transaction holds the latter back)."""
    lines = []
    for isolation in ("read_uncommitted", "read_committed"):
        probe = Consumer({**reader_config(kafka, group), "isolation.level": isolation})
        try:
            for topic in (topics.raw, topics.processed):
                ends = [
                    probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in range(topics.partitions)
                ]
                lines.append(f"{topic} {isolation} ends {ends}")
            if isolation == "read_committed":
                committed = probe.committed(
                    [TopicPartition(topics.raw, p) for p in range(topics.partitions)], timeout=10
                )
                lines.append(f"{topics.raw} committed by {group}: {[tp.offset for tp in committed]}")
        finally:
            probe.close()
    return lines


@contextmanager
def supervised(pipeline: Pipeline, instances: tuple[str, ...]) -> Iterator[Counter[str]]:
    """While the block runs, restart any of `instances` that exited on purpose, as `make run`'s
    supervisor and compose's restart policy do (docs/guarantees.md): its producer fenced (a
    transaction left open across a coordinator's failover outlived its timeout, and the broker
    aborted it) or a transaction call wedged past its timeout (librdkafka#5456). Any other exit
    stays an exit, and fails the test. Yields the restarts per instance."""
    restarts: Counter[str] = Counter()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            for instance in set(pipeline.exited()) & set(instances):
                if sum(pipeline.log_count(instance, why) for why in ON_PURPOSE) > restarts[instance]:
                    restarts[instance] += 1
                    pipeline.restart(instance)

    watcher = threading.Thread(target=watch, name="supervisor", daemon=True)
    watcher.start()
    try:
        yield restarts
    finally:
        done.set()
        watcher.join(10)


def test_devstack_runs_a_cluster_and_stops_it() -> None:
    """What `DEVSTACK_KAFKA_BROKERS=3 make run` starts (tools/devstack/kafka_cluster.py), on ports
    of this test's own: three nodes form one cluster, a topic of 3 replicas with 2 in sync takes
    a record acknowledged by all, and `down` stops every node and wipes their data."""
    free = free_ports(6)
    ports = {node: (free[2 * node - 2], free[2 * node - 1]) for node in (1, 2, 3)}
    bootstrap = ",".join(f"127.0.0.1:{client}" for client, _ in ports.values())
    topic = f"devstack-cluster-{uuid.uuid4().hex[:8]}"
    try:
        cluster_up(ports)
        assert cluster_running(ports)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3]
        created = admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])
        created[topic].result(30)
        delivered: list[str | None] = []
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
        producer.produce(topic, b"tick", on_delivery=lambda err, _msg: delivered.append(err and err.str()))
        assert producer.flush(30) == 0
        assert delivered == [None]
        partition = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
        assert sorted(partition.replicas) == [1, 2, 3] and sorted(partition.isrs) == [1, 2, 3]
    finally:
        cluster_down(True, ports)
    assert not any(node_pid(client) for client, _ in ports.values())
    assert not cluster_directory(ports).exists()
