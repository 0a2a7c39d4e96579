"""tapewire.tracing: off by default and free when off, the head decision, and the trace context
carried from one stage to the next (spans kept in memory by the SDK's own exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import ValidationError

from tapewire import tracing
from tapewire.tracing import Tracer, TracingSettings
from tests.support import in_memory_tracer


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


def tracer(exporter: InMemorySpanExporter, ratio: float = 1.0, draw: float = 0.0) -> Tracer:
    return in_memory_tracer(exporter, ratio, [draw])


def test_without_an_endpoint_tracing_is_off_and_samples_nothing() -> None:
    off = tracing.start("ingester", TracingSettings())
    assert off is tracing.DISABLED
    assert not off.enabled
    assert not any(off.sampled() for _ in range(1000))
    off.close()  # nothing to flush, and no error


def test_settings_bound_the_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACING_SAMPLE_RATIO", "1.5")
    with pytest.raises(ValidationError):
        TracingSettings()
    monkeypatch.setenv("TRACING_SAMPLE_RATIO", "0.25")
    monkeypatch.setenv("TRACING_OTLP_ENDPOINT", "http://collector:4317")
    assert TracingSettings().sample_ratio == 0.25
    assert TracingSettings().otlp_endpoint == "http://collector:4317"


def test_with_an_endpoint_the_tracer_exports_over_otlp() -> None:
    on = tracing.start("processor", TracingSettings(otlp_endpoint="http://127.0.0.1:1", sample_ratio=0.5))
    try:
        assert on.enabled
    finally:
        on.close()


def test_the_head_decision_is_the_ratio(exported: InMemorySpanExporter) -> None:
    assert tracer(exported, ratio=0.01, draw=0.009).sampled()
    assert not tracer(exported, ratio=0.01, draw=0.01).sampled()
    assert not tracer(exported, ratio=0.0, draw=0.0).sampled()


def test_a_span_continues_the_trace_its_parent_handed_on(exported: InMemorySpanExporter) -> None:
    first, second = tracer(exported), tracer(exported)
    root = first.start("ingester publish", 1_000, attributes={"instrument": "AAPL"})
    handed_on = tracing.traceparent(root)
    root.end(end_time=2_000)
    child = second.start(
        "processor apply", 3_000, tracing.from_headers([("traceparent", handed_on.encode())])
    )
    child.end(end_time=4_000)
    parent_span, child_span = exported.get_finished_spans()
    assert child_span.context.trace_id == parent_span.context.trace_id
    assert child_span.parent is not None and child_span.parent.span_id == parent_span.context.span_id
    assert (child_span.start_time, child_span.end_time) == (3_000, 4_000)
    assert parent_span.attributes == {"instrument": "AAPL"}
    assert handed_on == f"00-{parent_span.context.trace_id:032x}-{parent_span.context.span_id:016x}-" + (
        f"{int(parent_span.context.trace_flags):02x}"
    )


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("other", b"x")],
        [("traceparent", b"")],
        [("traceparent", b"not-a-traceparent")],
        {"x": b"1"},
    ],
)
def test_no_context_or_a_malformed_one_means_not_sampled(headers: tracing.Headers) -> None:
    assert tracing.from_headers(headers) is None


def test_headers_as_a_mapping_are_read_too(exported: InMemorySpanExporter) -> None:
    span = tracer(exported).start("x", 1)
    assert tracing.from_headers({"traceparent": tracing.traceparent(span)}) is not None


def test_a_failed_span_is_ended_as_an_error(exported: InMemorySpanExporter) -> None:
    span = tracer(exported).start("cache_updater apply", 10)
    tracing.failed(span, "StoreUnavailable: Redis down", 20)
    (finished,) = exported.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "StoreUnavailable: Redis down"
    assert finished.end_time == 20
