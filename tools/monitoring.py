"""A Prometheus beside the suite (`python -m tools.suite --prometheus`, `make run PROMETHEUS=1`):
it scrapes every process of the suite with the recording and alerting rules of
deploy/prometheus/rules, so what compose and Kubernetes would alert on can be watched, and
tested, against live data.

The scrape config is built here from the suite's own environment: each worker's
`<NAME>_METRICS_PORT` and `DASHBOARD_API_PORT`, or the settings classes' defaults, so it
always points where the services actually listen. Job names are `tapewire-<service>`, as in
deploy/prometheus/prometheus.yml, which the rules select on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from services.cache_updater.settings import CacheUpdaterSettings
from services.dashboard_api.settings import DashboardApiSettings
from services.history_writer.settings import HistoryWriterSettings
from services.ingester.settings import IngesterSettings
from services.processor.settings import ProcessorSettings

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
# Not 9090: that is where a system Prometheus (Debian's package starts one under systemd) listens.
DEFAULT_PORT = 19090

# Where each service serves /metrics: the settings field, read under its env prefix.
METRICS_PORT_FIELD: Mapping[str, tuple[type[BaseSettings], str]] = {
    "ingester": (IngesterSettings, "metrics_port"),
    "processor": (ProcessorSettings, "metrics_port"),
    "history_writer": (HistoryWriterSettings, "metrics_port"),
    "cache_updater": (CacheUpdaterSettings, "metrics_port"),
    "dashboard_api": (DashboardApiSettings, "port"),
}


def job_name(service: str) -> str:
    return f"tapewire-{service}"


def metrics_port(service: str, env: Mapping[str, str]) -> int:
    """The port `service` serves /metrics on, given the environment it was started with."""
    settings, field = METRICS_PORT_FIELD[service]
    variable = f"{settings.model_config.get('env_prefix', '')}{field}".upper()
    value = env.get(variable)
    return int(value) if value else int(settings.model_fields[field].default)


def scrape_config(
    services: tuple[str, ...], env: Mapping[str, str], interval_s: float, rules_dir: Path = RULES_DIR
) -> dict[str, Any]:
    """Prometheus's configuration for the suite's `services` on loopback."""
    interval = f"{interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules_dir / "*.yml")],
        "scrape_configs": [
            {
                "job_name": job_name(service),
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port(service, env)}"]}],
            }
            for service in services
        ],
    }


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write `config` for Prometheus (JSON is YAML, so no YAML writer is needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def command(binary: str, config: Path, data_dir: Path, port: int) -> list[str]:
    """Prometheus on loopback only, keeping two days of samples (a dev box, not a store)."""
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
