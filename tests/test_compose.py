"""compose.yaml, checked statically with the docker-compose binary of the dev extras (no Docker engine).

`docker-compose config` resolves anchors, merges and interpolation exactly as `docker compose up`
would, so these tests read the same model the engine would be given.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.containers import images
from tools.containers.compose import compose_binary

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"

SERVERS = {"kafka", "redis", "postgres"}
TAPEWIRE_SERVICES = {"ingester", "processor", "history_writer", "cache_updater", "dashboard_api"}
# The servers each tapewire service talks to, hence must wait for.
NEEDS = {
    "ingester": {"kafka"},
    "processor": {"kafka"},
    "history_writer": {"kafka", "postgres"},
    "cache_updater": {"kafka", "redis"},
    "dashboard_api": {"redis", "postgres"},
}
SCALABLE = {"ingester", "processor", "history_writer", "cache_updater"}


def _config(tmp_path: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose [options] config --format json` with exactly the given variables from the
    environment."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("COMPOSE_", "DOCKER_")) and name not in {"POSTGRES_PASSWORD"}
    }
    # An empty env file, so that a developer's untracked .env cannot leak into the test.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    command = [
        str(compose_binary()),
        "-f",
        str(COMPOSE_FILE),
        "--env-file",
        str(env_file),
        *options,
        "config",
        "--format",
        "json",
    ]
    return subprocess.run(
        command, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = _config(tmp_path_factory.mktemp("compose"), POSTGRES_PASSWORD="not-a-secret")
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def services(model: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = model["services"]
    return found


def test_all_services_are_defined(services: dict[str, Any]) -> None:
    assert set(services) == SERVERS | TAPEWIRE_SERVICES | {"init", "dashboard"}


def test_dashboard_renders_from_dashboard_api_and_is_published(services: dict[str, Any]) -> None:
    dashboard = services["dashboard"]
    assert dashboard["build"]["context"] == str(ROOT / "dashboard")
    assert dashboard["environment"]["TAPEWIRE_API_URL"] == "http://dashboard_api:8000"
    assert dashboard["depends_on"]["dashboard_api"]["condition"] == "service_healthy"
    assert [port["target"] for port in dashboard["ports"]] == [3000]
    assert dashboard["healthcheck"]["test"]


def test_outside_facing_services_take_auth_from_the_environment(services: dict[str, Any]) -> None:
    for name in ("dashboard_api", "ingester"):
        assert "AUTH_HS256_SECRET" in services[name]["environment"], name
    targets = sorted(port["target"] for port in services["dashboard_api"]["ports"])
    assert targets == [8000, 50051], "REST/WebSocket and gRPC"


def test_workers_can_be_scaled(services: dict[str, Any]) -> None:
    for name in SCALABLE:
        assert "container_name" not in services[name], name
        assert not services[name].get("ports"), f"{name} publishes a host port: --scale would clash"


def test_dashboard_api_publishes_a_port_range(services: dict[str, Any]) -> None:
    service = services["dashboard_api"]
    assert "container_name" not in service
    for port in service["ports"]:
        assert "-" in str(port["published"]), "a single host port cannot be shared by scaled replicas"


def test_tapewire_services_share_one_image(services: dict[str, Any]) -> None:
    for name in TAPEWIRE_SERVICES | {"init"}:
        assert services[name]["image"] == "tapewire:latest", name
        assert services[name]["build"]["context"] == str(ROOT), name


@pytest.mark.parametrize("name", sorted(TAPEWIRE_SERVICES))
def test_services_wait_for_their_servers_and_init(services: dict[str, Any], name: str) -> None:
    depends_on = services[name]["depends_on"]
    assert set(depends_on) == NEEDS[name] | {"init"}
    for server in NEEDS[name]:
        assert depends_on[server]["condition"] == "service_healthy", (name, server)
    assert depends_on["init"]["condition"] == "service_completed_successfully", name
    assert services[name]["restart"] == "unless-stopped"
    assert services[name]["stop_grace_period"], name


def test_init_runs_once_after_kafka_and_postgres(services: dict[str, Any]) -> None:
    init = services["init"]
    assert init["restart"] == "no"
    assert {name: dep["condition"] for name, dep in init["depends_on"].items()} == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
    }
    script = " ".join(init["command"])
    assert "tapewire.topics" in script
    assert "tapewire.db.migrate" in script


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name in SERVERS | TAPEWIRE_SERVICES:
        healthcheck = services[name].get("healthcheck")
        assert healthcheck and healthcheck.get("test") and not healthcheck.get("disable"), name


def test_services_reach_the_servers_by_service_name(services: dict[str, Any]) -> None:
    for name in TAPEWIRE_SERVICES | {"init"}:
        environment = services[name]["environment"]
        if "KAFKA_BOOTSTRAP_SERVERS" in environment:
            assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        if "REDIS_URL" in environment:
            assert environment["REDIS_URL"].startswith("redis://redis:6379/")
        if "DATABASE_URL" in environment:
            assert environment["DATABASE_URL"] == "postgresql://tapewire:not-a-secret@postgres:5432/tapewire"


def test_redis_persists_with_appendonly(services: dict[str, Any]) -> None:
    command = services["redis"]["command"]
    assert "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"


def test_kafka_is_single_node_kraft_without_auto_created_topics(services: dict[str, Any]) -> None:
    environment = services["kafka"]["environment"]
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert environment["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_postgres_password_is_required(tmp_path: Path) -> None:
    result = _config(tmp_path)
    assert "POSTGRES_PASSWORD" in result.stderr
    # The wrapper fallback of _compose_binary() always exits 0: then the empty output tells.
    assert result.returncode != 0 or not result.stdout.strip()


def test_no_secret_is_written_in_the_file() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for line in text.splitlines():
        if "POSTGRES_PASSWORD:" in line and not line.lstrip().startswith("#"):
            assert "${POSTGRES_PASSWORD:?" in line, line


def test_monitoring_is_a_profile_with_prometheus_and_grafana(
    tmp_path: Path, services: dict[str, Any]
) -> None:
    assert not {"prometheus", "grafana"} & set(services), "monitoring starts only with its profile"
    result = _config(tmp_path, "--profile", "monitoring", POSTGRES_PASSWORD="not-a-secret")
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    monitored = model["services"]
    prometheus, grafana = monitored["prometheus"], monitored["grafana"]
    mounts = {v["target"]: (v["source"], v.get("read_only", False)) for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus"] == (str(ROOT / "deploy" / "prometheus"), True)
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    # Grafana's admin password: a secret read from the environment, never a value in the file.
    assert grafana["environment"] == {
        "GF_SECURITY_ADMIN_PASSWORD__FILE": "/run/secrets/grafana_admin_password",
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
    }
    assert model["secrets"]["grafana_admin_password"]["environment"] == "GRAFANA_ADMIN_PASSWORD"
    provisioned = {v["target"] for v in grafana["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= provisioned


def test_prometheus_scrapes_each_service_where_compose_serves_its_metrics(services: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    scraped = {
        job["job_name"]: (sd["names"], sd["port"])
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
    }
    for name in TAPEWIRE_SERVICES:
        env = services[name]["environment"]
        port = int(
            env["DASHBOARD_API_PORT"] if name == "dashboard_api" else env[f"{name.upper()}_METRICS_PORT"]
        )
        assert scraped[f"tapewire-{name}"] == ([name], port), name


def test_tracing_is_off_unless_asked_and_jaeger_is_a_profile(
    tmp_path: Path, services: dict[str, Any]
) -> None:
    assert "jaeger" not in services, "Jaeger starts only with its profile"
    for name in TAPEWIRE_SERVICES:
        assert services[name]["environment"]["TRACING_OTLP_ENDPOINT"] == "", name
    result = _config(
        tmp_path,
        "--profile",
        "tracing",
        POSTGRES_PASSWORD="not-a-secret",
        TRACING_OTLP_ENDPOINT="http://jaeger:4317",
    )
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)["services"]
    assert "4317" in model["jaeger"]["expose"]
    for name in TAPEWIRE_SERVICES:
        assert model[name]["environment"]["TRACING_OTLP_ENDPOINT"] == "http://jaeger:4317", name


def test_the_load_balancer_is_a_profile_that_finds_every_dashboard_api_replica(
    tmp_path: Path, services: dict[str, Any]
) -> None:
    assert "lb" not in services, "the load balancer starts only with its profile"
    result = _config(
        tmp_path, "--profile", "lb", "-f", str(ROOT / "compose.local.yaml"), POSTGRES_PASSWORD="x"
    )
    assert result.returncode == 0, result.stderr
    lb = json.loads(result.stdout)["services"]["lb"]
    assert lb["image"] == images.HAPROXY.tag and lb["pull_policy"] == "never"
    mounts = {v["target"]: (v["source"], v.get("read_only", False)) for v in lb["volumes"]}
    assert mounts["/usr/local/etc/haproxy/haproxy.cfg"] == (
        str(ROOT / "deploy" / "haproxy" / "haproxy.cfg"),
        True,
    )
    # The replicas by the service's name, on the port dashboard_api listens on.
    port = services["dashboard_api"]["environment"]["DASHBOARD_API_PORT"]
    assert lb["environment"]["TAPEWIRE_LB_SERVICE"] == f"dashboard_api:{port}"
    assert lb["depends_on"]["dashboard_api"]["condition"] == "service_healthy"
    assert [p["published"] for p in lb["ports"]] == ["8080"]


def test_offline_dashboard_api_publishes_single_ports(local_services: dict[str, Any]) -> None:
    """podman's Docker API refuses a host port range, so the offline override publishes one."""
    published = [p["published"] for p in local_services["dashboard_api"]["ports"]]
    assert published == ["8000", "50051"]


def test_exec_form_health_checks_have_one_word_per_argument(services: dict[str, Any]) -> None:
    """podman 4's Docker API splits CMD-form health check arguments on whitespace
    (tapewire/healthcheck.py): a `python -c "import ..."` check would never pass there."""
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test", [])
        if test[:1] == ["CMD"]:
            assert not [arg for arg in test if any(ch.isspace() for ch in arg)], f"{name}: {test}"


@pytest.fixture(scope="module")
def local_services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yaml with compose.local.yaml, as `make compose-up` runs it."""
    result = _config(
        tmp_path_factory.mktemp("local"), "-f", str(ROOT / "compose.local.yaml"), POSTGRES_PASSWORD="x"
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)["services"]
    return found


@pytest.mark.parametrize("name", sorted(SERVERS | TAPEWIRE_SERVICES | {"dashboard", "init"}))
def test_the_offline_override_replaces_every_image_with_a_local_build(
    local_services: dict[str, Any], name: str
) -> None:
    """compose.local.yaml: each server from its own image that tools/containers builds, never
    pulled; the tapewire images built on the local Python and Node images."""
    service = local_services[name]
    own = {"kafka": images.KAFKA, "redis": images.REDIS, "postgres": images.POSTGRES}
    if name in own:
        assert service["image"] == own[name].tag and service["pull_policy"] == "never"
    elif name == "dashboard":
        assert service["build"]["args"]["NODE_IMAGE"] == images.NODE.tag
        assert service["image"] == "tapewire-dashboard:latest"
    else:
        assert service["build"]["args"]["PYTHON_IMAGE"] == images.PYTHON.tag
        assert service["image"] == "tapewire:latest"
