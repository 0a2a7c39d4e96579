"""tools.monitoring: the suite's scrape config follows the ports the services will listen on."""

from __future__ import annotations

import json
from pathlib import Path

from tools.monitoring import command, metrics_port, scrape_config, write_config

SERVICES = ("ingester", "processor", "history_writer", "cache_updater", "dashboard_api")


def test_ports_come_from_the_environment_else_the_settings_defaults() -> None:
    env = {"PROCESSOR_METRICS_PORT": "19102", "DASHBOARD_API_PORT": "18000"}
    assert [metrics_port(s, env) for s in SERVICES] == [9101, 19102, 9104, 9103, 18000]


def test_one_job_per_service_named_as_the_rules_expect() -> None:
    config = scrape_config(SERVICES, {"CACHE_UPDATER_METRICS_PORT": "29103"}, 1.0, Path("/rules"))
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert config["rule_files"] == ["/rules/*.yml"]
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert jobs == {
        "tapewire-ingester": ["127.0.0.1:9101"],
        "tapewire-processor": ["127.0.0.1:9102"],
        "tapewire-history_writer": ["127.0.0.1:9104"],
        "tapewire-cache_updater": ["127.0.0.1:29103"],
        "tapewire-dashboard_api": ["127.0.0.1:8000"],
    }


def test_the_config_is_written_as_json_which_prometheus_reads_as_yaml(tmp_path: Path) -> None:
    config = scrape_config(("ingester",), {}, 15.0)
    path = write_config(tmp_path / "sub" / "prometheus.yml", config)
    assert json.loads(path.read_text()) == config


def test_prometheus_listens_on_loopback_only(tmp_path: Path) -> None:
    argv = command("/usr/bin/prometheus", tmp_path / "p.yml", tmp_path / "data", 19090)
    assert "--web.listen-address=127.0.0.1:19090" in argv
    assert f"--storage.tsdb.path={tmp_path / 'data'}" in argv
