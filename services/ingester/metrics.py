"""The ingester's Prometheus metrics, registered on the registry they are given (tests pass a fresh one)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Ingest -> broker ack is normally a few ms (linger.ms=2, acks=all on a local cluster); the tail
# buckets show a struggling broker before delivery.timeout.ms turns it into failures.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class IngesterMetrics:
    """`source` labels what the built-in source does; gRPC pushes are labelled "grpc" (`GRPC_SOURCE`)."""

    def __init__(
        self, source: str, registry: CollectorRegistry = REGISTRY, invalid_reasons: Iterable[str] = ()
    ) -> None:
        self.source = source
        self._accepted = Counter(
            "ingester_ticks_accepted",
            "Ticks the source produced (or a client pushed) and the queue accepted.",
            ["source"],
            registry=registry,
        )
        self.accepted = self._accepted.labels(source)
        self._invalid = Counter(
            "ingester_invalid_records",
            "Input records skipped as invalid, by reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "ingester_queue_depth", "Ticks waiting between the source and Kafka.", registry=registry
        )
        self.queue_dropped = Counter(
            "ingester_queue_dropped", "Ticks discarded by the drop_oldest policy.", registry=registry
        )
        self.published = Counter("ingester_published", "Ticks the broker acknowledged.", registry=registry)
        self._delivery_failures = Counter(
            "ingester_delivery_failures",
            "Accepted ticks that were not published, by reason (mostly: the broker did not "
            "acknowledge them after librdkafka's retries).",
            ["reason"],
            registry=registry,
        )
        self.ack_latency = Histogram(
            "ingester_ack_latency_seconds",
            "From acceptance into the queue to the broker's acknowledgement.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.grpc_streams = Gauge(
            "ingester_grpc_push_streams", "gRPC Push streams open right now.", registry=registry
        )
        self.declare_source(source, invalid_reasons)

    def declare_source(self, source: str, invalid_reasons: Iterable[str] = ()) -> None:
        """Create the source's series at 0, so that dashboards see 0, not "no data"."""
        self._accepted.labels(source)
        for reason in invalid_reasons:
            self._invalid.labels(source, reason)

    def accepted_from(self, source: str) -> Counter:
        return self._accepted.labels(source)

    def invalid(self, reason: str, source: str | None = None) -> None:
        self._invalid.labels(source or self.source, reason).inc()

    def declare_delivery_failures(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self._delivery_failures.labels(reason)

    def delivery_failed(self, reason: str) -> None:
        self._delivery_failures.labels(reason).inc()

    def track_queue_depth(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(depth)
