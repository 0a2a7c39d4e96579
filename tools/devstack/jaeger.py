"""Jaeger, the OTLP receiver the tracing test and `make run JAEGER=1` export spans to.

Jaeger v2 (`github.com/jaegertracing/jaeger/cmd/jaeger`, built from the Go module proxy at a
pinned version into .local/bin) runs with a configuration of our own (`config()`): an OTLP/gRPC
receiver, spans kept in memory, the query API (`/api/traces`, `/api/services`) and a health
endpoint, each on a port of the caller's choosing, on loopback. A binary built with
`go install` carries no web UI (its assets are built with npm in Jaeger's own release), so the
query port answers the API and a placeholder page; point a Jaeger UI or Grafana's Jaeger data
source at it to browse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tools.devstack.go_install import go_install
from tools.devstack.paths import HOST, LOCAL

MODULE = "github.com/jaegertracing/jaeger"
PACKAGE = f"{MODULE}/cmd/jaeger"
VERSION = "v1.75.0"
BIN_DIR = LOCAL / "bin"


def ensure_jaeger() -> Path:
    """The Jaeger binary, built on first use (a few minutes with a cold Go cache)."""
    return go_install(MODULE, PACKAGE, VERSION, BIN_DIR)


@dataclass(frozen=True)
class JaegerPorts:
    otlp_grpc: int  # where the services export spans: TRACING_OTLP_ENDPOINT=http://127.0.0.1:<this>
    query_http: int  # /api/traces, /api/services
    query_grpc: int
    health: int  # /status

    @property
    def otlp_endpoint(self) -> str:
        return f"http://{HOST}:{self.otlp_grpc}"

    @property
    def query_url(self) -> str:
        return f"http://{HOST}:{self.query_http}"


def config(ports: JaegerPorts, max_traces: int = 50_000) -> str:
    """Jaeger v2's configuration (an OpenTelemetry Collector's) for an in-memory store."""
    return f"""\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: {HOST}:{ports.health}
  jaeger_query:
    # Off: Jaeger would trace its own queries to the default OTLP port, 4317, where nothing
    # listens (or another Jaeger does), and spend up to ten seconds of its shutdown retrying.
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: {HOST}:{ports.query_http}
    grpc:
      endpoint: {HOST}:{ports.query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {max_traces}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {HOST}:{ports.otlp_grpc}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def jaeger_command(binary: Path, config_path: Path) -> list[str]:
    return [str(binary), "--config", f"file:{config_path}"]
