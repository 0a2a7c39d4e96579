"""The ingester's settings: every value from the environment (prefix `INGESTER_`), checked at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.ingester.queue import QueuePolicy
from tapewire.auth import AuthSettings, exposure
from tapewire.grpc_server import GrpcServerOptions, GrpcTlsFiles
from tapewire.settings import KafkaSettings, LogSettings, TopicSettings
from tapewire.tracing import TracingSettings

# "none": no built-in source; the ingester takes only what internal services push over gRPC.
SourceName = Literal["simulator", "replay", "none"]


class IngesterSettings(GrpcTlsFiles, BaseSettings):
    """Where ticks come from, how fast, and what happens when Kafka cannot keep up."""

    model_config = SettingsConfigDict(env_prefix="INGESTER_", frozen=True, extra="ignore")

    source: SourceName = "simulator"

    # simulator
    instruments: int = Field(default=50, ge=1, le=100_000)
    rate: float = Field(default=200.0, gt=0)
    trade_ratio: float = Field(default=0.3, ge=0, le=1)
    seed: int | None = None
    venue: str = Field(default="SIM", max_length=32)
    max_ticks: int = Field(default=0, ge=0)

    # replay
    replay_path: str | None = None
    replay_speed: float = Field(default=1.0, ge=0)

    # between the source and Kafka
    queue_size: int = Field(default=10_000, ge=1)
    queue_policy: QueuePolicy = "block"
    # The largest record value the ingester publishes; a tick whose record would be larger is
    # refused when it arrives ("too_large"), never accepted and then lost in librdkafka. The
    # default is the processor's own default bound (PROCESSOR_MAX_RECORD_BYTES), which would
    # dead-letter anything larger; a tick in the contract's grammar is under 250 bytes. The ceiling
    # stays well under librdkafka's message.max.bytes (1,000,000 with its framing).
    max_record_bytes: int = Field(default=4_096, ge=64, le=900_000)

    metrics_port: int = Field(default=9101, ge=0, le=65_535)
    # All interfaces, so that Prometheus can scrape a container; set 127.0.0.1 on a shared host.
    metrics_host: str = "0.0.0.0"
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    # How long start-up waits for the broker to become reachable before giving up.
    startup_timeout_s: float = Field(default=60.0, gt=0)

    # gRPC `tapewire.v1.Ingest`: internal services push their own ticks into the same queue.
    grpc_enabled: bool = True
    # Loopback unless told otherwise, as dashboard_api's listeners (tapewire.auth.exposure).
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50052, ge=0, le=65_535)  # 0: any free port
    # TLS for gRPC: GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE, from GrpcTlsFiles.
    # Concurrent RPCs (push streams, health checks) for the whole server; more are refused
    # with RESOURCE_EXHAUSTED. Each stream waiting on a full queue holds one worker thread.
    grpc_max_streams: int = Field(default=64, ge=1, le=4_096)
    # One Tick is well under 1 KiB; the bound stops a client from making us buffer a huge frame.
    grpc_max_message_bytes: int = Field(default=64 * 1024, ge=1_024, le=4 * 1024 * 1024)
    # At shutdown, how long running push streams may go on before they are cancelled.
    grpc_shutdown_grace_s: float = Field(default=5.0, ge=0)
    # When a client closes its side, how long Push waits for the broker's verdict on that
    # stream's accepted ticks before answering (the rest are reported as unconfirmed). Kafka
    # acknowledges in milliseconds; during an outage librdkafka keeps retrying for 2 minutes.
    push_ack_timeout_s: float = Field(default=30.0, gt=0, le=600)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)

    @model_validator(mode="after")
    def _replay_needs_a_path(self) -> IngesterSettings:
        if self.source == "replay" and not self.replay_path:
            raise ValueError(
                'INGESTER_SOURCE=replay needs INGESTER_REPLAY_PATH (a file of JSON lines, or "-" for stdin)'
            )
        return self

    @model_validator(mode="after")
    def _not_open_to_anyone(self) -> IngesterSettings:
        if self.grpc_enabled and (problem := exposure(self.auth, {"INGESTER_GRPC_HOST": self.grpc_host})):
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _something_feeds_the_queue(self) -> IngesterSettings:
        if self.source == "none" and not self.grpc_enabled:
            raise ValueError(
                "INGESTER_SOURCE=none takes ticks only over gRPC: set INGESTER_GRPC_ENABLED=true"
            )
        return self

    def grpc_options(self) -> GrpcServerOptions:
        return GrpcServerOptions(
            tls=self.grpc_tls(),
            host=self.grpc_host,
            port=self.grpc_port,
            max_receive_message_bytes=self.grpc_max_message_bytes,
            max_concurrent_rpcs=self.grpc_max_streams,
            max_concurrent_streams=self.grpc_max_streams,
        )
