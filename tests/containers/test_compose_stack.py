"""compose.yaml for real: the whole suite in containers, on the images ``make containers`` built.

``docker-compose`` drives podman through its Docker API (tools/containers), with the offline
images of compose.local.yaml and, for these tests only, the servers published on loopback so
that the fault suite's load generator and checker reach them from outside. One stack serves the
module: it comes up with two processors, two cache_updaters and two dashboard_api replicas behind
the `lb` profile's HAProxy, serves live prices (through the load balancer, from both replicas)
and the dashboard's first HTML, and loses nothing when its processors are killed under load.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from tapewire.settings import KafkaSettings, PostgresSettings, RedisSettings, TopicSettings
from tests.browser.grid import GridRows
from tests.faults.checker import Stores, Summary, report, verify, versions_in_redis
from tests.faults.loadgen import LoadGen, LoadProfile
from tests.support import answers, viewer, wait_for
from tools.containers import images
from tools.containers.compose import FILES, compose_command
from tools.containers.engine import DOCKER_HOST, ensure_api, podman
from tools.containers.health import HealthChecks
from tools.devstack.process import pid_alive
from tools.isolation import free_port

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]

UP_TIMEOUT_S = 300
PRICE = re.compile(r"\d+(\.\d+)?")
PROJECT_PREFIX = "tapewire-test-"
SERVICES = {
    "kafka", "redis", "postgres", "init", "ingester", "processor", "history_writer", "cache_updater",
    "dashboard_api", "dashboard", "lb",
}  # fmt: skip
# One line per client dashboard_api accepted, in `compose logs`: the replica is the line's prefix.
CLIENT_CONNECTED = re.compile(r"^(\S+)\s+\|.*\"msg\": \"client connected\"")
PARTITIONS = 6  # compose.yaml's TAPEWIRE_TOPIC_PARTITIONS
# The servers on loopback, for the load generator and the checker on this side. Kafka gets a
# third listener for them; the containers keep reaching it as kafka:9092.
TEST_OVERRIDE = """\
services:
  kafka:
    environment:
      KAFKA_LISTENERS: PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:9094
      KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:9092,HOST://127.0.0.1:{kafka}
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT
    ports: ["127.0.0.1:{kafka}:9094"]
  redis:
    ports: ["127.0.0.1:{redis}:6379"]
  postgres:
    ports: ["127.0.0.1:{postgres}:5432"]
  # Two replicas: reached through the load balancer only, as a deployment would.
  dashboard_api:
    ports: !reset []
"""


@dataclass
class Stack:
    project: str
    files: tuple[Path, ...]
    env: dict[str, str]
    api: str  # dashboard_api, through the load balancer
    dashboard: str
    lb_port: int
    stores: Stores
    up_s: float

    env_file: Path

    def compose(
        self, *args: str, timeout_s: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        options = ("--project-name", self.project, "--env-file", str(self.env_file))
        command = compose_command(*options, *args, files=self.files)
        proc = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout_s)
        if check:
            assert proc.returncode == 0, (
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        return proc

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        """`compose ps --all` as dicts (one JSON object a line, or one list)."""
        out = self.compose("ps", "--all", "--format", "json", *([service] if service else [])).stdout.strip()
        if out.startswith("["):
            rows: list[dict[str, Any]] = json.loads(out)
            return rows
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", service).stdout

    def diagnosis(self) -> str:
        """Each container's status, and the last health check output of the unhealthy."""
        label = f"label=com.docker.compose.project={self.project}"
        rows = podman("ps", "--all", "--filter", label, "--format", "{{.Names}}\t{{.Status}}").stdout
        lines = [rows]
        for name in [row.split("\t")[0] for row in rows.splitlines() if "unhealthy" in row]:
            health = podman("inspect", "--format", "{{json .State.Health.Log}}", name, check=False).stdout
            lines.append(f"{name}: {health[-1500:]}")
        return "\n".join(lines)


def remove_orphan_stacks() -> None:
    """Remove the stacks of test sessions that were killed before their `down` (the project
    name holds the session's pid): their containers, volumes and network."""
    rows = podman("ps", "--all", "--format", '{{index .Labels "com.docker.compose.project"}}').stdout
    for project in {row for row in rows.split() if row.startswith(PROJECT_PREFIX)}:
        pid = project.removeprefix(PROJECT_PREFIX).split("-")[0]
        if pid.isdigit() and pid_alive(int(pid)):
            continue
        label = f"label=com.docker.compose.project={project}"
        ids = podman("ps", "--all", "--quiet", "--filter", label).stdout.split()
        if ids:
            podman("rm", "--force", *ids, check=False)
        volumes = podman("volume", "ls", "--quiet", "--filter", label).stdout.split()
        if volumes:
            podman("volume", "rm", "--force", *volumes, check=False)
        podman("network", "rm", "--force", f"{project}_default", check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ensure_api()
    images.build(images.ALL)  # cached layers: seconds when `make containers` ran
    remove_orphan_stacks()
    ports = {name: free_port() for name in ("kafka", "redis", "postgres", "dashboard", "lb")}
    folder = tmp_path_factory.mktemp("compose")
    override = folder / "compose.test.yaml"
    override.write_text(TEST_OVERRIDE.format(**ports))
    # An empty env file and only these variables: nothing from the developer's shell or an
    # untracked .env changes what is tested.
    env_file = folder / "empty.env"
    env_file.write_text("")
    password = secrets.token_urlsafe(16)
    env = {
        **{name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ},
        "DOCKER_HOST": DOCKER_HOST,
        "POSTGRES_PASSWORD": password,
        "AUTH_ALLOW_ANONYMOUS": "true",
        # Published on loopback only: with auth off, nobody else may reach them.
        "TAPEWIRE_DASHBOARD_PORT": f"127.0.0.1:{ports['dashboard']}",
        "TAPEWIRE_LB_PORT": f"127.0.0.1:{ports['lb']}",
        "COMPOSE_PROFILES": "lb",
        "TAPEWIRE_PUBLIC_API_URL": f"http://127.0.0.1:{ports['lb']}",
    }
    redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
    stack = Stack(
        project=f"{PROJECT_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}",
        files=(*FILES, override),
        env=env,
        env_file=env_file,
        api=f"http://127.0.0.1:{ports['lb']}",
        dashboard=f"http://127.0.0.1:{ports['dashboard']}",
        lb_port=ports["lb"],
        stores=Stores(
            kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{ports['kafka']}"),
            topics=TopicSettings(),
            redis_settings=RedisSettings(url=SecretStr(redis_url), key_prefix="tt:"),
            postgres=PostgresSettings(
                url=SecretStr(f"postgresql://tapewire:{password}@127.0.0.1:{ports['postgres']}/tapewire"),
                schema_name="tapewire",
            ),
        ),
        up_s=0.0,
    )
    with HealthChecks():
        started = time.monotonic()
        try:
            try:
                stack.compose(
                    "up", "--detach", "--wait", "--wait-timeout", str(UP_TIMEOUT_S),
                    "--scale", "processor=2", "--scale", "cache_updater=2", "--scale", "dashboard_api=2",
                    timeout_s=UP_TIMEOUT_S + 60,
                )  # fmt: skip
            except AssertionError as e:
                raise AssertionError(f"{e}\n{stack.diagnosis()}") from None
            stack.up_s = time.monotonic() - started
            print(
                f"\ncompose up (2 of each consumer, 2 dashboard_api) healthy in {stack.up_s:.0f} s",
                flush=True,
            )
            yield stack
        finally:
            # Not asserted: a failing `down` must not hide the failure that led here.
            down = stack.compose("down", "--volumes", "--timeout", "10", timeout_s=300, check=False)
            if down.returncode != 0:
                print(f"compose down failed ({down.returncode}):\n{down.stderr[-2000:]}", flush=True)


def test_the_suite_comes_up_healthy_and_scaled(stack: Stack) -> None:
    containers = stack.containers()
    by_service: dict[str, list[dict[str, Any]]] = {}
    for row in containers:
        by_service.setdefault(row["Service"], []).append(row)
    assert set(by_service) == SERVICES, sorted(by_service)
    assert [len(by_service[name]) for name in ("processor", "cache_updater", "dashboard_api")] == [2, 2, 2]
    for service, rows in by_service.items():
        for row in rows:
            if service == "init":
                assert row["State"] == "exited" and row["ExitCode"] == 0, row
                continue
            assert row["State"] == "running", row
            assert row["Health"] == "healthy", row


def test_two_replicas_split_the_partitions(stack: Stack) -> None:
    admin = AdminClient({"bootstrap.servers": stack.stores.kafka.bootstrap_servers})

    def split(group: str) -> list[set[int]] | None:
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
        if described.state != ConsumerGroupState.STABLE or len(described.members) != 2:
            return None
        shares = [{tp.partition for tp in m.assignment.topic_partitions} for m in described.members]
        return shares if all(shares) else None

    for group, topic in (("tt-processor", "tt_raw_data"), ("tt-cache-updater", "tt_processed_data")):
        shares = wait_for(lambda g=group: split(g), 90, f"{group}'s two members to share the partitions")  # type: ignore[misc]
        assert not shares[0] & shares[1], f"{group}: a partition owned twice: {shares}"
        assert shares[0] | shares[1] == set(range(PARTITIONS)), f"{group} leaves {topic} partitions unread"


def test_live_prices_on_the_published_port(stack: Stack) -> None:
    def versions() -> dict[str, int]:
        body = httpx.get(f"{stack.api}/api/snapshot", timeout=5).raise_for_status().json()
        return {s["instrument"]: s["version"] for s in body["states"] if s["last_price"] is not None}

    first = wait_for(versions, 60, "prices in the snapshot")
    moved = wait_for(
        lambda: [name for name, v in versions().items() if v > first.get(name, 0)], 30, "a price to move"
    )
    assert moved


def test_the_load_balancer_spreads_clients_over_both_replicas(stack: Stack) -> None:
    """HAProxy finds the replicas by the service's name on the compose network and sends each new
    client to the ready one with the fewest connections: clients opened one by one through it
    reach both, and every one of them gets live updates."""
    wait_for(
        lambda: answers(f"http://127.0.0.1:{stack.lb_port}/readyz"), 60, "a replica behind the load balancer"
    )
    before = clients_per_replica(stack)
    with contextlib.ExitStack() as clients:
        counts: list[list[int]] = []

        def both_replicas() -> dict[str, int] | None:
            counts.append(clients.enter_context(viewer(stack.lb_port, ["AAPL", "MSFT"])))
            after = clients_per_replica(stack)
            new = {replica: n - before.get(replica, 0) for replica, n in after.items()}
            return new if len([n for n in new.values() if n > 0]) == 2 else None

        spread = wait_for(both_replicas, 60, "clients through the load balancer on both replicas")
        wait_for(lambda: all(frames[0] > 2 for frames in counts), 30, "updates on every client")
    print(f"\nclients through the load balancer, per replica: {spread}", flush=True)


def clients_per_replica(stack: Stack) -> dict[str, int]:
    """How many clients each dashboard_api replica has accepted, from its log."""
    counts: dict[str, int] = {}
    for line in stack.compose("logs", "--no-color", "dashboard_api").stdout.splitlines():
        if (match := CLIENT_CONNECTED.match(line)) is not None:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def test_the_dashboards_first_html_holds_prices(stack: Stack) -> None:
    """The server-rendered grid: every instrument that has traded shows its price, at the
    instrument's decimals (the simulator's equities: two)."""

    def grid() -> dict[str, str] | None:
        parser = GridRows()
        parser.feed(httpx.get(f"{stack.dashboard}/", timeout=10).raise_for_status().text)
        prices = {name: cells.get("last_price", "").strip() for name, (_, cells) in parser.rows.items()}
        return prices if sum(bool(PRICE.fullmatch(p)) for p in prices.values()) >= 6 else None

    prices = wait_for(grid, 60, "the first HTML to hold prices")
    # Anything else is the placeholder of an instrument with no trade yet.
    odd = {name: price for name, price in prices.items() if not PRICE.fullmatch(price) and price != "—"}
    assert not odd, odd
    assert re.fullmatch(r"\d+\.\d\d", prices["AAPL"]), prices["AAPL"]


def test_killed_processors_lose_nothing_and_restart(stack: Stack) -> None:
    """Under load: one processor dies as the OOM killer would kill it (SIGKILL from outside), and
    `restart: unless-stopped` brings it back; then `docker-compose kill processor` stops both,
    which a restart policy leaves stopped (an explicit stop, on Docker as on podman), and
    `docker-compose start` brings them back. The fault suite's checker then audits every store."""
    profile = LoadProfile(rate=300, duration_s=40)
    load = LoadGen(stack.stores.kafka, stack.stores.topics.raw, profile).start()
    names = profile.names()
    wait_for(lambda: len(versions_in_redis(stack.stores, names)) == len(names), 90, "the load to reach Redis")

    victim = stack.containers("processor")[0]["Name"]
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", victim).stdout)
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        state = podman("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", victim).stdout.split()
        return state[0] == "running" and int(state[1]) >= 1

    wait_for(restarted, 60, f"{victim} to be restarted by its restart policy")
    # Let the restarted one rejoin and take partitions before the next fault, so that the
    # kill lands on two working processors, not on a rebalance.
    time.sleep(8)
    stack.compose("kill", "processor")
    wait_for(
        lambda: {row["State"] for row in stack.containers("processor")} == {"exited"}, 30, "both to stop"
    )
    # A few seconds with no processor at all: ticks pile up in the raw topic meanwhile.
    time.sleep(3)
    stack.compose("start", "processor")
    since = max(time.monotonic(), load.finish(120))
    title = "compose: a processor SIGKILLed, then docker-compose kill processor"
    summary = verify(stack.stores, load, Summary(title, 2), since, 120)
    summary.notes.append(f"compose up took {stack.up_s:.0f} s")
    text = report(summary)
    assert summary.ok, f"{text}\n{stack.logs('processor')}"
