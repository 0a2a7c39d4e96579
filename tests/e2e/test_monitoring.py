"""The Prometheus rules and the Grafana dashboard against live data: the suite as `make run
PROMETHEUS=1` runs it, scraped every second by a real Prometheus (Debian's package) loaded with
deploy/prometheus/rules.

Every target is up, every rule evaluates without error, the recorded stage rates show ticks
flowing through every stage, every query of the dashboard runs and (but for the series that
exist only once something has gone wrong) returns data; then the processor is killed and
TapewireServiceDown goes pending for it, and for nothing else.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.ingester.sources.simulator import instrument_names
from tests.support import answers, stop_and_show, viewer, wait_for
from tools.isolation import free_port
from tools.suite import SERVICES, Suite, prepare

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tapewire.json"
API = "dashboard_api"
INSTRUMENTS = instrument_names(4)
# The rule groups evaluate every 15 s (their own `interval`), whatever the scrape interval.
RULES_S = 15.0
# Labelled series that appear only once something has gone wrong (a dead letter, a rewound
# batch, a slow client, a refused or closed connection): their queries must run, but return
# nothing on a healthy suite. Every other query must return data.
ONLY_AFTER_TROUBLE = (
    "dead_lettered",
    "batch_failures",
    "slow_client_steps",
    "refused_connections",
    "auth_failures",
    "session_closes",
)


@dataclass
class Monitored:
    suite: Suite
    prometheus: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        body = reply.json()
        assert reply.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        return list(body["data"]["result"])

    def get(self, path: str) -> Any:
        reply = httpx.get(f"{self.prometheus}{path}", timeout=10)
        reply.raise_for_status()
        return reply.json()["data"]


@pytest.fixture
def suite_env(env_for_services: Callable[..., dict[str, str]]) -> dict[str, str]:
    workers = [name for name in SERVICES if name != API]
    env = env_for_services(
        DASHBOARD_API_HOST="127.0.0.1",
        DASHBOARD_API_PORT=str(free_port()),
        INGESTER_INSTRUMENTS=str(len(INSTRUMENTS)),
        INGESTER_RATE="50",
        **{f"{name.upper()}_METRICS_HOST": "127.0.0.1" for name in workers},
        **{f"{name.upper()}_METRICS_PORT": str(free_port()) for name in workers},
    )
    prepare(env)
    return env


@pytest.fixture
def monitored(suite_env: dict[str, str], tmp_path: Path) -> Iterator[Monitored]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: `make prometheus` installs Debian's package")
    suite = Suite(env=suite_env, log_dir=tmp_path / "logs").start()
    port = free_port()
    suite.start_prometheus(binary, port, tmp_path / "prometheus", interval_s=1.0)
    try:
        yield Monitored(suite, f"http://127.0.0.1:{port}")
    finally:
        stop_and_show(suite)


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_rules_and_dashboard_on_live_data(monitored: Monitored) -> None:
    jobs = {f"tapewire-{name}" for name in SERVICES}

    def all_up() -> bool:
        if not answers(f"{monitored.prometheus}/-/ready"):  # Prometheus itself still starting
            return False
        up = {r["metric"]["job"]: r["value"][1] for r in monitored.query("up")}
        return up == dict.fromkeys(jobs, "1")

    wait_for(all_up, 90, "every service scraped and up")
    with viewer(monitored.suite.env["DASHBOARD_API_PORT"], INSTRUMENTS) as frames:
        check_rules_and_dashboard(monitored)
        assert frames[0] > 0, "the viewer got nothing"

    monitored.suite.processes["processor"].kill()

    def processor_down() -> list[dict[str, Any]] | None:
        alerts = monitored.get("/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "TapewireServiceDown"] or None

    [alert] = wait_for(
        processor_down, 3 * RULES_S, "TapewireServiceDown for the killed processor", interval_s=1
    )
    assert alert["labels"]["job"] == "tapewire-processor"
    assert alert["state"] == "pending"  # `for: 1m`: firing only after a minute down


def check_rules_and_dashboard(monitored: Monitored) -> None:
    def rules_evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in monitored.get("/api/v1/rules")["groups"] for rule in group["rules"]]
        done = all(rule["health"] == "ok" and rule["lastEvaluation"] > "2000" for rule in rules)
        return rules if rules and done else None

    rules = wait_for(rules_evaluated, 4 * RULES_S, "every rule evaluated without error")
    assert len(rules) > 20

    flowing = {"ingester", "processor", "cache_updater", "history_writer", "dashboard_api"}

    def stages_moving() -> set[str] | None:
        moving = {r["metric"]["stage"] for r in monitored.query("tapewire:stage_records:rate1m > 0")}
        return moving if moving == flowing else None

    wait_for(stages_moving, 6 * RULES_S, "ticks recorded flowing through every stage", interval_s=1)
    assert monitored.query("tapewire:ingest_to_sent_seconds:p99_5m >= 0"), "no end-to-end p99"
    lag = {r["metric"]["consumer"] for r in monitored.query("tapewire:consumer_lag:sum")}
    assert {"processor", "cache_updater", "history_writer"} <= lag
    assert monitored.query("cache_updater_redis_memory_used_bytes > 0"), "no Redis memory reading"

    empty = [expr for expr in dashboard_queries() if not monitored.query(expr)]
    unexpected = [expr for expr in empty if not any(mark in expr for mark in ONLY_AFTER_TROUBLE)]
    assert unexpected == [], "dashboard queries with no data on a running suite"
    print(f"dashboard queries with no data yet, as expected: {empty}")

    alerts = monitored.get("/api/v1/alerts")["alerts"]
    assert [a for a in alerts if a["labels"]["severity"] == "critical"] == []
