"""The tapewire suite as the benchmark runs it: processor, history_writer, cache_updater and
dashboard_api as processes on topics, a Redis prefix and a PostgreSQL schema of this run's own
(the load generator stands in for the feed and the ingester), and the consumer lag of its
groups."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families
from redis.cluster import RedisCluster

from tapewire.settings import TopicSettings
from tools.isolation import free_port, own_service_env
from tools.suite import Suite, prepare

from .ready import wait_http_ok

STAGES = ("processor", "history_writer", "cache_updater", "dashboard_api")
# The stages `--instances` runs several of (consumer groups over the partitions).
SCALED_STAGES = ("processor", "cache_updater")


class LagProbe:
    """Consumer-group lag from the broker: committed offsets against high watermarks. One admin
    client and one probe consumer for the whole run, not a new pair per question."""

    def __init__(self, bootstrap: str) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._probe = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-probe-{uuid.uuid4().hex[:6]}"}
        )

    def lag(self, group: str, topic: str, partitions: int) -> int:
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
        committed = self._admin.list_consumer_group_offsets([request])[group].result().topic_partitions
        total = 0
        for tp in committed:
            _low, high = self._probe.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=5)
            total += max(0, high - max(tp.offset, 0))
        return total

    def close(self) -> None:
        self._probe.close()


def listening_pid(address: str) -> int | None:
    """The local process listening on `address` (host:port), or None (remote, or not ours to see)."""
    try:
        port = int(address.rsplit(":", 1)[1])
        listeners = psutil.net_connections(kind="tcp")
    except (IndexError, ValueError, psutil.Error):
        return None
    for conn in listeners:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


@dataclass
class RunningStack:
    suite: Suite
    env: dict[str, str]
    topics: TopicSettings
    bootstrap: str
    api_port: int
    probe: LagProbe

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.api_port}/ws"

    def pids(self) -> dict[str, int]:
        """The services, and the Kafka broker and Redis when they run on this machine: every
        figure then shows where the machine's cores went."""
        servers = {"kafka": self.env["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0]}
        for n, address in enumerate(self._redis_addresses()):
            servers["redis" if n == 0 else f"redis-{n + 1}"] = address  # the report sums them
        found = {name: listening_pid(address) for name, address in servers.items()}
        return {
            **{name: process.pid for name, process in self.suite.processes.items()},
            **{name: pid for name, pid in found.items() if pid is not None},
        }

    def _redis_addresses(self) -> list[str]:
        """Redis's address, or on a Redis Cluster (REDIS_CLUSTER=true) every node's."""
        if self.env.get("REDIS_CLUSTER", "").lower() != "true":
            return [urlsplit(self.env["REDIS_URL"]).netloc.rsplit("@", 1)[-1]]
        client = RedisCluster.from_url(self.env["REDIS_URL"])
        try:
            return sorted(f"{node.host}:{node.port}" for node in client.get_nodes())
        finally:
            client.close()

    def backlog(self) -> dict[str, int]:
        """Messages not yet consumed: raw behind the processor, processed behind cache_updater
        and behind history_writer."""
        partitions = self.topics.partitions
        return {
            "processor": self.probe.lag(self.env["PROCESSOR_GROUP_ID"], self.topics.raw, partitions),
            "cache_updater": self.probe.lag(
                self.env["CACHE_UPDATER_GROUP_ID"], self.topics.processed, partitions
            ),
            "history_writer": self.probe.lag(
                self.env["HISTORY_WRITER_GROUP_ID"], self.topics.processed, partitions
            ),
        }

    def check_running(self) -> None:
        """Raise if a stage has died: what follows would measure nothing."""
        if ended := self.suite.exited():
            tails = "\n".join(f"--- {name} ---\n{self.suite.log_tail(name, 8)}" for name in ended)
            raise RuntimeError(f"stages exited: {ended}\n{tails}")

    def drain(self, timeout_s: float) -> bool:
        """Wait until every group has caught up; False if they did not within the timeout.

        The processed topic is written in transactions: each ends with a commit marker that
        takes an offset but is never consumed, so "caught up" there is one offset per partition.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                backlog = self.backlog()
            except KafkaException:  # e.g. the group coordinator still loading on a fresh broker
                time.sleep(0.5)
                continue
            behind = max(backlog["cache_updater"], backlog["history_writer"])
            if backlog["processor"] == 0 and behind <= self.topics.partitions:
                return self._relay_settled(deadline)
            time.sleep(0.5)
        return False

    def _relay_settled(self, deadline: float) -> bool:
        """Kafka is drained, but dashboard_api may still be reading what cache_updater published
        (a saturated run leaves seconds of it in Redis's buffer for its subscription): wait until
        its count of updates received stops moving, so the next run does not start behind."""
        last = -1.0
        while time.monotonic() < deadline:
            received = self.relay_received()
            if received == last:
                return True
            last = received
            time.sleep(0.5)
        return False

    def relay_received(self) -> float:
        """dashboard_api's updates received from Redis so far."""
        return sum(value for _, value in self.api_samples("dashboard_api_updates_received_total"))

    def api_samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """The labels and value of each sample `name` on dashboard_api's /metrics."""
        text = httpx.get(f"http://127.0.0.1:{self.api_port}/metrics", timeout=5).text
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]


@contextmanager
def running_stack(
    stack_env: dict[str, str],
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    services: tuple[str, ...] = STAGES,
    instances: int = 1,
) -> Iterator[RunningStack]:
    """The suite on topics, keys and groups of its own; `instances` of each consumer stage that
    scales by partitions (processor, cache_updater), named `processor`, `processor-2`, ..."""
    unique = f"bench{uuid.uuid4().hex[:8]}"
    api_port = free_port()
    with own_service_env(
        stack_env,
        unique,
        DASHBOARD_API_PORT=str(api_port),
        # Every bench client (silent ones included) comes from one address: lift the per-address cap.
        DASHBOARD_API_MAX_CONNECTIONS_PER_IP="10000",
        TAPEWIRE_LOG_LEVEL="WARNING",
        **(extra_env or {}),
    ) as (env, topics):
        prepare(env)
        suite = Suite(env=env, log_dir=log_dir, services=services).start()
        try:
            for stage in SCALED_STAGES:
                for n in range(2, instances + 1):
                    own_metrics = {f"{stage.upper()}_METRICS_PORT": str(free_port())}
                    suite.start_service(stage, own_metrics, instance=f"{stage}-{n}")
            api = suite.processes["dashboard_api"]
            wait_http_ok(
                f"http://127.0.0.1:{api_port}/readyz", 60, lambda: api.poll() is None, "dashboard_api"
            )
            bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
            probe = LagProbe(bootstrap)
            try:
                yield RunningStack(suite, env, topics, bootstrap, api_port, probe)
            finally:
                probe.close()
        finally:
            suite.stop()
