"""dashboard_api's Prometheus metrics, on a registry of the app's own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tapewire.startup import process_registry

# Milliseconds matter: the whole pipeline aims at single-digit ms from cache to client.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

MESSAGE_TYPES = (
    "welcome",
    "update",
    "snapshot",
    "unsubscribed",
    "error",
    "pong",
    "heartbeat",
    "conflated",
    "alert_accepted",
    "alert_list",
    "alert",
)
# End to end from the feed: wider buckets, since a backlog upstream shows up here.
E2E_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DashboardApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # The service's registry (tapewire.startup.process_registry), or one of its own in tests.
        registry = process_registry() if registry is None else registry
        self.registry = registry
        self.connections = Gauge(
            "dashboard_api_ws_connections", "Open WebSocket connections", registry=registry
        )
        self.open_connections = Gauge(
            "dashboard_api_open_connections",
            "Open TCP connections to the HTTP server, WebSockets included (connection_limits.py)",
            registry=registry,
        )
        self.refused_connections = Counter(
            "dashboard_api_refused_connections_total",
            "Connections refused at accept, by the cap they ran into (server or address)",
            ["cap"],
            registry=registry,
        )
        self.handshake_timeouts = Counter(
            "dashboard_api_handshake_timeouts_total",
            "Connections closed for not completing a request head in handshake_timeout_s",
            registry=registry,
        )
        self.sessions = Gauge(
            "dashboard_api_sessions", "Open live sessions, by transport", ["transport"], registry=registry
        )
        self.closes = Counter(
            "dashboard_api_session_closes_total",
            "Sessions closed by the server, by close code",
            ["code"],
            registry=registry,
        )
        self.slow_client_steps = Counter(
            "dashboard_api_slow_client_steps_total",
            "Moves down the slow-client ladder: conflate, resync, disconnect",
            ["step"],
            registry=registry,
        )
        self.conflated_updates = Counter(
            "dashboard_api_conflated_updates_total",
            "Updates skipped for slow clients (replaced by a later state of the same instrument)",
            registry=registry,
        )
        self.replayed_updates = Counter(
            "dashboard_api_replayed_updates_total",
            "Updates replayed from history to resuming clients",
            registry=registry,
        )
        self.resumes = Counter(
            "dashboard_api_resumes_total",
            "Instruments resumed by clients, by outcome (replayed or gap)",
            ["outcome"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "dashboard_api_auth_failures_total",
            "Requests and connections refused for a missing or invalid token, by transport",
            ["transport"],
            registry=registry,
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
        self.relay_shards_lost = Gauge(
            "dashboard_api_relay_shards_lost",
            "Redis Cluster masters the relay lost and waits to replace: their instruments are quiet",
            registry=registry,
        )
        self.relay_reconnects = Counter(
            "dashboard_api_relay_reconnects_total",
            "Times the relay lost Redis and started over",
            registry=registry,
        )
        self.ingest_to_sent = Histogram(
            "dashboard_api_ingest_to_sent_seconds",
            "From the ingester's stamp (ingest_ns) to the update being sent to clients (sent_ns)",
            buckets=E2E_BUCKETS,
            registry=registry,
        )
        self.gc_pauses = Histogram(
            "dashboard_api_gc_pause_seconds",
            "Garbage collections by generation and how long each stopped the event loop",
            ["generation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "dashboard_api_send_queue_wait_seconds",
            "From an update being sent on its way (sent_ns) to its frame being written to a client "
            "(one update in 16 per session is sampled)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.cached_to_sent = Histogram(
            "dashboard_api_cached_to_sent_seconds",
            "From cache_updater's stamp (cached_ns) to the update being rendered for clients (sent_ns)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
