"""The processor's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tapewire.consume_loop import LoopMetrics

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ProcessorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loop = LoopMetrics("processor", registry)
        self.ticks = Counter(
            "processor_ticks_total", "Raw records by outcome", ["outcome"], registry=registry
        )
        self.dead_lettered = Counter(
            "processor_dead_lettered_total", "Raw records sent to the DLQ", ["reason"], registry=registry
        )
        self.ingest_to_processed = Histogram(
            "processor_ingest_to_processed_seconds",
            "From the ingester's stamp to the processed state",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.states_restored = Counter(
            "processor_states_restored_total",
            "Instrument states restored from the changelog",
            registry=registry,
        )
        self.alert_commands = Counter(
            "processor_alert_commands_total",
            "Alert commands by outcome: applied, rejected, ignored (alert id already in the book),"
            " not_found (cancel), duplicate (already applied), malformed",
            ["outcome"],
            registry=registry,
        )
        self.alerts_triggered = Counter(
            "processor_alerts_triggered_total", "Alerts triggered by a trade", registry=registry
        )
        self.active_alerts = Gauge(
            "processor_active_alerts",
            "Alerts waiting in the books of the owned partitions",
            registry=registry,
        )
        self.alert_books_restored = Counter(
            "processor_alert_books_restored_total",
            "Alert books restored from the alerts changelog",
            registry=registry,
        )
        self.transactions = Counter(
            "processor_transactions_total", "Kafka transactions by outcome", ["outcome"], registry=registry
        )
