"""Traces of sampled ticks across the hops: ingester → processor → cache_updater → dashboard_api.

Head sampling, decided once: the ingester picks a share of ticks (`TRACING_SAMPLE_RATIO`, one in
a thousand by default) and starts a trace for each; every later stage traces a record only when
it carries a trace context, and adds its own span to that trace. The context travels as a W3C
`traceparent` in the Kafka record headers (raw, then processed), then in the `traceparent`
field of the Redis update. An unsampled tick therefore costs nothing beyond one check at each
stage: no span, no header, no extra bytes (there is never a span per tick on the hot path).

With no `TRACING_OTLP_ENDPOINT` tracing is off and `Tracer` does nothing at all. With one, spans
are batched and exported over OTLP/gRPC on a thread of the SDK's (Jaeger, Tempo and the
OpenTelemetry Collector all receive it); an unreachable collector drops spans, never ticks.

Each span covers the time the record spent in its stage, start and end taken from the stage's
own clock readings: the ingester's from acceptance to the broker's acknowledgement, the
processor's from the start of the batch to the moment its new state is produced (cache_updater
reads it uncommitted from then on), cache_updater's from the start of the batch to Redis's
reply, dashboard_api's from the update's arrival to the last session it was queued for. A
stage whose work fails and is retried ends its open spans as errors; the retry traces the same
ticks again. Tracing never costs a tick: a span that cannot be started is a no-op span.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"  # the header (Kafka) and field (Redis update) that carry the context
_PROPAGATOR = TraceContextTextMapPropagator()
# A Kafka record's headers as confluent-kafka gives or takes them.
Headers = Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None


class TracingSettings(BaseSettings):
    """OpenTelemetry traces (shared by the services that take part)."""

    model_config = SettingsConfigDict(env_prefix="TRACING_", frozen=True, extra="ignore")

    # Where to export spans, OTLP over gRPC (e.g. http://otel-collector:4317); empty: tracing off.
    otlp_endpoint: str = ""
    # The share of ticks the ingester traces (head sampling); the other stages follow its choice.
    sample_ratio: float = Field(default=0.001, ge=0.0, le=1.0)
    # Plaintext to the collector (usually a sidecar or a node agent); false: TLS with the system's CAs.
    otlp_insecure: bool = True


class Tracer:
    """One service's tracer; `enabled` is False (and everything a no-op) without an endpoint."""

    def __init__(
        self,
        tracer: trace.Tracer | None = None,
        sample_ratio: float = 0.0,
        close: Callable[[], None] | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._tracer = tracer
        self.enabled = tracer is not None
        self._ratio = sample_ratio
        self._close = close
        self._draw = draw

    def sampled(self) -> bool:
        """The head decision for one tick (the ingester's): trace it or not."""
        return self.enabled and self._draw() < self._ratio

    def start(
        self,
        name: str,
        start_ns: int,
        parent: Context | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Span:
        """A span begun at `start_ns` (wall clock), as a child of `parent` or a new trace."""
        assert self._tracer is not None, "start() on a disabled tracer"
        try:
            return self._tracer.start_span(
                name, context=parent, start_time=start_ns, attributes=dict(attributes or {})
            )
        except Exception:  # the SDK's trouble must never reach the record being traced
            log.warning("could not start a span", exc_info=True)
            return trace.INVALID_SPAN

    def close(self) -> None:
        """Export what is buffered and stop the exporter (at the service's exit)."""
        if self._close is not None:
            self._close()
            self._close = None


DISABLED = Tracer()


def start(service: str, settings: TracingSettings) -> Tracer:
    """The service's tracer: exporting over OTLP when an endpoint is set, else `DISABLED`."""
    if not settings.otlp_endpoint:
        return DISABLED
    # Imported here: a service with tracing off never loads the exporter and its gRPC stack.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=settings.otlp_insecure)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracer(provider.get_tracer("tapewire"), settings.sample_ratio, provider.shutdown)


def traceparent(span: Span) -> str:
    """`span`'s context as a W3C traceparent: what the next stage continues the trace from."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def headers(span: Span) -> list[tuple[str, str | bytes | None]]:
    """The Kafka record headers that hand `span`'s trace on to the next stage."""
    return [(TRACEPARENT, traceparent(span))]


def parent_of(value: bytes | str | None) -> Context | None:
    """The context a traceparent names, or None when it is absent or malformed."""
    if not value:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    context = _PROPAGATOR.extract({TRACEPARENT: text})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def from_headers(headers: Headers) -> Context | None:
    """The trace context in a Kafka record's headers, if any."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == TRACEPARENT:
            return parent_of(value)
    return None


def failed(span: Span, reason: str, end_ns: int) -> None:
    """End `span` as an error (its record failed, or its batch is retried with spans of its own)."""
    span.set_status(Status(StatusCode.ERROR, reason))
    span.end(end_time=end_ns)


def all_ended(spans: Iterable[Span | None], end_ns: int) -> None:
    """End each of `spans` (None: a record that was not sampled) at `end_ns`."""
    for span in spans:
        if span is not None:
            span.end(end_time=end_ns)


def all_failed(spans: Iterable[Span | None], reason: str, end_ns: int) -> None:
    """`failed` for each of `spans` not ended yet."""
    for span in spans:
        if span is not None and span.is_recording():
            failed(span, reason, end_ns)
