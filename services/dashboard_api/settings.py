"""dashboard_api's settings: environment variables prefixed DASHBOARD_API_ plus the shared pieces."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tapewire.auth import AuthSettings, exposure
from tapewire.grpc_server import GrpcTlsFiles
from tapewire.settings import KafkaSettings, LogSettings, PostgresSettings, RedisSettings, TopicSettings
from tapewire.tracing import TracingSettings


class DashboardApiSettings(GrpcTlsFiles, BaseSettings):
    """Where to listen, the limits every client is held to, and the stores behind the API."""

    model_config = SettingsConfigDict(env_prefix="DASHBOARD_API_", frozen=True, extra="ignore")

    # Loopback unless told otherwise: compose and Kubernetes set 0.0.0.0, which with auth off
    # also needs AUTH_ALLOW_ANONYMOUS=true (tapewire.auth.exposure).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65_535)

    # Per session (WebSocket connection or gRPC stream). The queue holds updates waiting for
    # the client; a client that fills it, or whose socket has taken nothing for
    # stalled_socket_s, goes down the slow-client ladder (docs/websocket.md): conflate, then
    # resync after conflation_timeout_s, then close (4008) after resync_timeout_s. The queue
    # absorbs bursts (a catch-up after a restart) from clients that read; the socket's signal
    # catches the client that stopped reading long before its queue would be full.
    max_subscriptions_per_connection: int = Field(default=1000, ge=1, le=1_000_000)
    send_queue_size: int = Field(default=2048, ge=1, le=1_000_000)
    stalled_socket_s: float = Field(default=5.0, gt=0, le=3600)
    # Updates per frame at most, for clients that connect with `batch=true` (docs/websocket.md).
    max_batch: int = Field(default=64, ge=1, le=4096)
    conflation_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    resync_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    max_client_message_bytes: int = Field(default=65_536, ge=256, le=16 * 1024 * 1024)
    # Client messages per second per connection (bursts of twice that), and how many errors a
    # connection may earn per minute before it is closed (1008).
    max_messages_per_second: float = Field(default=50.0, gt=0, le=100_000)
    max_errors_per_minute: int = Field(default=60, ge=1, le=100_000)
    # The server sends a heartbeat after this long without sending anything; a client that
    # sends nothing for idle_timeout_s is closed (4009); 0 turns that off.
    heartbeat_s: float = Field(default=15.0, gt=0, le=3600)
    idle_timeout_s: float = Field(default=120.0, ge=0, le=86_400)
    # Resume: at most this many updates replayed for one subscribe (beyond: a fresh snapshot).
    max_replay_updates: int = Field(default=10_000, ge=0, le=1_000_000)
    # How long a subscribe waits for Redis to confirm its channels before answering `unavailable`.
    subscribe_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # A deploy's drain (POST /admin/drain) spreads its closes (1012) over this long by default.
    drain_period_s: float = Field(default=10.0, ge=0, le=3600)

    # Per request (REST query or WebSocket subscribe/unsubscribe).
    max_instruments_per_request: int = Field(default=1000, ge=1, le=100_000)
    max_bars_limit: int = Field(default=5000, ge=1, le=1_000_000)

    # The data is public and read-only, and no endpoint uses cookies, so any origin may read
    # it; list origins (JSON list or comma-separated) to restrict browsers, or [] to disable CORS.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])

    # permessage-deflate compresses every message once per connection, which undoes the
    # render-once fan-out; leave it off unless bandwidth costs more than CPU.
    ws_per_message_deflate: bool = False
    # Kernel send buffer of each client's socket (0: the kernel's autotuning, up to megabytes per
    # connection). Small enough that a client that stops reading is noticed within seconds.
    socket_send_buffer_bytes: int = Field(default=262_144, ge=0, le=64 * 1024 * 1024)
    # Bytes a connection may have waiting in dashboard_api's own write buffer, behind the
    # kernel's, before its sender stops taking updates from the queue (asyncio's high-water
    # mark; it resumes below a quarter of it). Only a client whose kernel buffer is full gets
    # here, so a small value costs a healthy client nothing, and a client that stops reading
    # holds this much (and the frame that crossed it) in the process: 4 KiB instead of 16 took
    # ~20 MiB off 1,000 silent clients' peak (bench, silent part).
    ws_write_buffer_bytes: int = Field(default=4_096, ge=1024, le=16 * 1024 * 1024)
    # How long a close frame may wait for a client's socket to drain; then the connection is dropped.
    close_timeout_s: float = Field(default=5.0, gt=0, le=300)
    # On SIGTERM: time for WebSockets to close (1001) and requests to finish.
    shutdown_grace_s: float = Field(default=10.0, gt=0, le=600)
    # Young-generation threshold of Python's garbage collector (0: CPython's default, 700).
    # Higher keeps full collections, which pause every connection, rare: see gc_tuning.py.
    gc_young_threshold: int = Field(default=50_000, ge=0, le=10_000_000)

    # gRPC (tapewire.v1.Dashboard, health, reflection) for internal services.
    grpc_enabled: bool = True
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65_535)
    # TLS for gRPC: GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE, from GrpcTlsFiles.
    grpc_max_concurrent_rpcs: int = Field(default=1000, ge=1, le=1_000_000)

    # Price alerts: commands queue here, then a few workers publish them to Kafka.
    alerts_enabled: bool = True
    alert_queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    alert_workers: int = Field(default=4, ge=1, le=64)
    max_alerts_per_user: int = Field(default=100, ge=1, le=100_000)

    # Connections before they reach the app (connection_limits.py). A connection whose request
    # line and headers (a WebSocket handshake included) are not complete within
    # handshake_timeout_s is closed. Beyond max_connections open at once, or
    # max_connections_per_ip from one client address, a new connection is answered 503
    # {"code": "too_many_connections"} without its request being read, and closed. Behind a proxy
    # or load balancer every client shares its address: raise the per-address cap to match.
    # Keep max_connections under the open-files limit (raised to its hard limit at start-up, and
    # logged) with room for Redis, PostgreSQL and Kafka.
    handshake_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_connections: int = Field(default=10_000, ge=1, le=1_000_000)
    max_connections_per_ip: int = Field(default=1000, ge=1, le=1_000_000)

    # Redis commands (snapshots, history, alerts) share a pool of this many connections; a
    # command waits up to redis_pool_timeout_s for a free one before the store counts as
    # unavailable. A pool that refused at once turned a crowd of clients into 1013 closes and
    # 503s while Redis was healthy. The relay's pub/sub connection is its own, outside the pool.
    redis_max_connections: int = Field(default=64, ge=1, le=10_000)
    redis_pool_timeout_s: float = Field(default=5.0, gt=0, le=60)

    # PostgreSQL serves only /api/bars: a small pool is plenty.
    db_pool_max_size: int = Field(default=4, ge=1, le=100)
    db_timeout_s: float = Field(default=2.0, gt=0, le=60)

    redis: RedisSettings = Field(default_factory=RedisSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @model_validator(mode="after")
    def _not_open_to_anyone(self) -> DashboardApiSettings:
        listeners = {"DASHBOARD_API_HOST": self.host}
        if self.grpc_enabled:
            listeners["DASHBOARD_API_GRPC_HOST"] = self.grpc_host
        if problem := exposure(self.auth, listeners):
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _per_ip_within_total(self) -> DashboardApiSettings:
        if self.max_connections_per_ip > self.max_connections:
            raise ValueError(
                f"max_connections_per_ip ({self.max_connections_per_ip}) is above max_connections "
                f"({self.max_connections}): lower it, or raise DASHBOARD_API_MAX_CONNECTIONS"
            )
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value
