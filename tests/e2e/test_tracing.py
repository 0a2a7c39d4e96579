"""Traces across the hops, received by a real Jaeger (v2, built from the Go module proxy by
`make jaeger`): the suite as `make run JAEGER=1` runs it, a share of ticks sampled at the
ingester, and one trace holding a span of each stage, each the child of the one before:
ingester publish → processor apply → cache_updater apply → dashboard_api relay. Only about the
sampled share of ticks is traced: the stages follow the ingester's choice, they add none.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.ingester.sources.simulator import instrument_names
from tests.support import answers, stop_and_show, viewer, wait_for
from tools.devstack.jaeger import BIN_DIR, JaegerPorts
from tools.isolation import free_port
from tools.suite import Suite, prepare

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

INSTRUMENTS = instrument_names(4)
RATE = 100  # ticks/s
SAMPLE_RATIO = 0.05
HOPS = (
    ("ingester", "ingester publish"),
    ("processor", "processor apply"),
    ("cache_updater", "cache_updater apply"),
    ("dashboard_api", "dashboard_api relay"),
)


@dataclass
class Traced:
    suite: Suite
    jaeger: str
    api_port: int
    ingester_metrics: int

    def traces(self, service: str, limit: int = 200) -> list[dict[str, Any]]:
        reply = httpx.get(
            f"{self.jaeger}/api/traces",
            params={"service": service, "limit": limit, "lookback": "1h"},
            timeout=10,
        )
        reply.raise_for_status()
        return list(reply.json()["data"] or [])

    def published(self) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.ingester_metrics}/metrics", timeout=5).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "ingester_published_total"
        )


@pytest.fixture
def traced(env_for_services: Callable[..., dict[str, str]], tmp_path: Path) -> Iterator[Traced]:
    binary = BIN_DIR / "jaeger"
    if not binary.exists():
        pytest.fail("Jaeger is missing: `make jaeger` builds it")
    ports = JaegerPorts(
        otlp_grpc=free_port(), query_http=free_port(), query_grpc=free_port(), health=free_port()
    )
    api_port, ingester_metrics = free_port(), free_port()
    env = env_for_services(
        DASHBOARD_API_PORT=str(api_port),
        INGESTER_METRICS_PORT=str(ingester_metrics),
        INGESTER_INSTRUMENTS=str(len(INSTRUMENTS)),
        INGESTER_RATE=str(RATE),
        TRACING_OTLP_ENDPOINT=ports.otlp_endpoint,
        TRACING_SAMPLE_RATIO=str(SAMPLE_RATIO),
    )
    prepare(env)
    suite = Suite(env=env, log_dir=tmp_path / "logs")
    suite.start_jaeger(binary, ports, tmp_path / "jaeger")
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{ports.health}/status"), 30, "Jaeger's health endpoint")
        suite.start()
        wait_for(lambda: answers(f"http://127.0.0.1:{api_port}/readyz"), 60, "dashboard_api's /readyz")
        yield Traced(suite, ports.query_url, api_port, ingester_metrics)
    finally:
        codes = stop_and_show(suite)
    assert codes == dict.fromkeys(suite.processes, 0)


def whole_trace(traces: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The spans, in hop order, of the first trace holding every hop each the child of the
    previous one; None when there is none yet."""
    for trace in traces:
        service_of = {pid: process["serviceName"] for pid, process in trace["processes"].items()}
        by_hop = {(service_of[span["processID"]], span["operationName"]): span for span in trace["spans"]}
        chain = [by_hop.get(hop) for hop in HOPS]
        if any(span is None for span in chain):
            continue
        if all(_child_of(child, parent) for parent, child in itertools.pairwise(chain)):
            return [span for span in chain if span is not None]
    return None


def _child_of(span: dict[str, Any] | None, parent: dict[str, Any] | None) -> bool:
    assert span is not None and parent is not None
    return any(
        ref["refType"] == "CHILD_OF" and ref["spanID"] == parent["spanID"]
        for ref in span.get("references", [])
    )


def test_one_trace_spans_every_hop_and_only_the_sampled_share_is_traced(traced: Traced) -> None:
    with viewer(traced.api_port, INSTRUMENTS) as frames:
        chain = wait_for(
            lambda: whole_trace(traced.traces("dashboard_api")),
            90,
            "a trace spanning ingester → processor → cache_updater → dashboard_api",
            interval_s=1.0,
        )
        assert frames[0] > 0
    # Each span starts no earlier than its parent did: the clocks are the stages' own readings.
    starts = [span["startTime"] for span in chain]
    assert starts == sorted(starts), chain
    assert all(span["duration"] >= 0 for span in chain)
    assert {tag["key"] for tag in chain[0]["tags"]} >= {"instrument", "partition", "offset"}
    # Head sampling: about SAMPLE_RATIO of the ticks published start a trace, never all of them.
    published = wait_for(
        lambda: p if (p := traced.published()) >= 1000 else None, 60, "1,000 ticks published"
    )
    traces = len(traced.traces("ingester", limit=10_000))
    assert 0 < traces < 3 * SAMPLE_RATIO * published, (traces, published)
