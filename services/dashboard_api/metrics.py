"""dashboard_api's Prometheus metrics, on a registry of the app's own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

# Milliseconds matter: the whole pipeline aims at single-digit ms from cache to client.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

MESSAGE_TYPES = ("update", "snapshot", "unsubscribed", "error", "pong")


class DashboardApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            # The process, platform and GC metrics the default registry would have had.
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)
        self.registry = registry
        self.connections = Gauge(
            "dashboard_api_ws_connections", "Open WebSocket connections", registry=registry
        )
        self.messages_sent = Counter(
            "dashboard_api_ws_messages_sent_total",
            "Messages written to WebSocket clients, by type",
            ["type"],
            registry=registry,
        )
        self.sent_by_type = {kind: self.messages_sent.labels(kind) for kind in MESSAGE_TYPES}
        self.updates_received = Counter(
            "dashboard_api_updates_received_total", "Updates received from Redis pub/sub", registry=registry
        )
        self.updates_relayed = Counter(
            "dashboard_api_updates_relayed_total",
            "Updates rendered and handed to at least one connection",
            registry=registry,
        )
        self.invalid_updates = Counter(
            "dashboard_api_invalid_updates_total",
            "Pub/sub messages that were not a valid Update for their channel",
            registry=registry,
        )
        self.slow_consumer_disconnects = Counter(
            "dashboard_api_slow_consumer_disconnects_total",
            "Connections closed (4008) because their send queue was full",
            registry=registry,
        )
        self.client_errors = Counter(
            "dashboard_api_client_errors_total",
            "Error replies sent to clients, by code",
            ["code"],
            registry=registry,
        )
        self.relay_ready = Gauge(
            "dashboard_api_relay_ready", "1 while the pub/sub subscription is confirmed", registry=registry
        )
        self.relay_reconnects = Counter(
            "dashboard_api_relay_reconnects_total",
            "Times the relay lost Redis and started over",
            registry=registry,
        )
        self.cached_to_sent = Histogram(
            "dashboard_api_cached_to_sent_seconds",
            "From cache_updater's stamp (cached_ns) to the update being rendered for clients (sent_ns)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
