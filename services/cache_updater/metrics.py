"""cache_updater's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from tapewire.consume_loop import LoopMetrics

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CacheUpdaterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loop = LoopMetrics("cache_updater", registry)
        self.alerts_loop = LoopMetrics("cache_updater_alerts", registry)
        self.states = Counter(
            "cache_updater_states_total", "Processed states by outcome", ["outcome"], registry=registry
        )
        self.alert_events = Counter(
            "cache_updater_alert_events_total",
            "Alert events by outcome (those restored after a Redis loss included): applied, stale"
            " (the alert's status is already as far), undecodable, invalid",
            ["outcome"],
            registry=registry,
        )
        self.rebuilds = Counter(
            "cache_updater_rebuilds_total",
            "Times the cache was rebuilt from the changelog",
            registry=registry,
        )
        self.processed_to_cached = Histogram(
            "cache_updater_processed_to_cached_seconds",
            "From the processor's stamp to the state being in Redis",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
