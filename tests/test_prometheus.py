"""deploy/prometheus/ and deploy/grafana/, checked offline with the real promtool (Debian's
prometheus package: `make prometheus`, which `make test` runs first).

promtool validates the compose scrape config and the rules, then runs the rules' own unit tests
(deploy/prometheus/tests/*.test.yml: each alert fires on the series that should trip it and
stays quiet on a healthy one). Every metric a rule or a dashboard panel names is then looked up
among the metrics the services really export, read off their metrics classes, so a renamed
metric breaks this test instead of a panel going blank in production. tests/e2e/test_monitoring.py
runs the same rules and queries against a live suite.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.cache_updater.metrics import CacheUpdaterMetrics
from services.cache_updater.redis_memory import RedisMemoryCollector
from services.dashboard_api.metrics import DashboardApiMetrics
from services.ingester.metrics import IngesterMetrics
from services.processor.metrics import ProcessorMetrics
from tapewire.consume_loop import LoopMetrics

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tapewire.json"
SERVICE_PREFIXES = ("ingester_", "processor_", "cache_updater_", "history_writer_", "dashboard_api_")
SERVICES = ("ingester", "processor", "cache_updater", "history_writer", "dashboard_api")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _promtool(*args: str, cwd: Path = ROOT) -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: `make prometheus` installs Debian's prometheus package")
    result = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


class _NoRedis:
    def info(self, section: str) -> dict[str, Any]:
        return {"used_memory": 0}


def exported_series() -> set[str]:
    """Every series name the services can export, from their metrics classes on a fresh registry."""
    registry = CollectorRegistry()
    IngesterMetrics("simulator", registry)
    ProcessorMetrics(registry)
    CacheUpdaterMetrics(registry)
    LoopMetrics("history_writer", registry)
    DashboardApiMetrics(registry)
    registry.register(RedisMemoryCollector(_NoRedis()))
    return {
        family.name + suffix for family in registry.collect() for suffix in SUFFIXES.get(family.type, ("",))
    }


def metric_names(expr: str) -> set[str]:
    """The tapewire series and recorded series a PromQL expression names (quoted strings, where
    label values live, are left out)."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", unquoted))
    return {n for n in names if n.startswith(SERVICE_PREFIXES) or n.startswith("tapewire:")}


def rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def panels() -> list[dict[str, Any]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return list(dashboard["panels"])


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel.get("targets", [])]


def test_the_compose_scrape_config_and_its_rules_are_valid() -> None:
    out = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "SUCCESS" in out


def test_the_rules_are_valid() -> None:
    _promtool("check", "rules", *map(str, RULE_FILES))


def test_every_alert_is_unit_tested_and_the_tests_pass() -> None:
    out = _promtool("test", "rules", *(p.name for p in RULE_TESTS), cwd=PROMETHEUS / "tests")
    assert out.count("SUCCESS") == len(RULE_TESTS)
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts - tested == set(), "alerts no test ever sees firing"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_entry() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules():
        if "alert" not in rule:
            continue
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"#### {rule['alert']}" in runbook, f"docs/operations.md has no runbook for {rule['alert']}"


def test_the_scrape_jobs_are_the_ones_the_rules_select() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == {f"tapewire-{s}" for s in SERVICES}


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_named_is_one_the_services_export(source: str) -> None:
    exprs = [rule["expr"] for rule in rules()] if source == "rules" else dashboard_queries()
    known = exported_series() | recorded()
    named = set().union(*(metric_names(expr) for expr in exprs))
    assert named, "no metric found: the name pattern is wrong"
    assert named - known == set()


def test_the_name_check_catches_a_typo() -> None:
    assert metric_names('rate(processor_tiks_total{outcome="processor_x"}[1m])') == {"processor_tiks_total"}
    assert "processor_tiks_total" not in exported_series()


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "tapewire-overview"
    [variable] = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    covered = " ".join(dashboard_queries())
    # What the dashboard must show, by the series it reads.
    for needed in (
        "tapewire:stage_records:rate1m",
        "tapewire:ingest_to_sent_seconds:p99_5m",
        "tapewire:stage_seconds:p99_5m",
        "processor_consumer_lag",
        "tapewire:consumer_lag:sum",
        "ingester_queue_depth",
        "ingester_queue_dropped_total",
        "dashboard_api_ws_connections",
        "tapewire:slow_client_steps:rate5m",
        "cache_updater_redis_memory_used_bytes",
        "tapewire:dead_lettered:rate5m",
    ):
        assert needed in covered, f"the dashboard does not show {needed}"
