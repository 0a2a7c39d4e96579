"""cache_updater's settings: environment variables prefixed CACHE_UPDATER_ plus the shared pieces."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tapewire.consume_loop import LoopSettings
from tapewire.settings import KafkaSettings, LogSettings, RedisSettings, TopicSettings
from tapewire.tracing import TracingSettings

from .alerts import AlertRetention


class CacheUpdaterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CACHE_UPDATER_", frozen=True, extra="ignore")

    group_id: str = "tt-cache-updater"
    # Alert events are read committed by a consumer of their own (see run.py), in this group;
    # by default group_id + "-alerts".
    alerts_group_id: str = ""
    # One Redis pipeline per batch: the round trip, not Redis, is what costs.
    batch_size: int = Field(default=500, ge=1, le=100_000)
    poll_timeout_s: float = Field(default=0.1, gt=0, le=5)
    # How often to check that Redis still holds what was applied (see run.py: rebuild).
    cache_check_interval_s: float = Field(default=1.0, gt=0, le=60)
    # Terminal alerts (triggered, cancelled, rejected) kept per user for `alert.list`: at most
    # this many, and once none of the user's alerts is active, for this long after the last
    # change (see alerts.py).
    terminal_alerts_kept: int = Field(default=100, ge=1, le=100_000)
    terminal_alerts_ttl_s: int = Field(default=7 * 86_400, ge=60)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9103, ge=0, le=65535)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @property
    def alert_retention(self) -> AlertRetention:
        return AlertRetention(ttl_s=self.terminal_alerts_ttl_s, kept=self.terminal_alerts_kept)

    @property
    def loop(self) -> LoopSettings:
        # Replays are harmless (version-guarded), so no synchronous commit per batch: offsets
        # are stored, and librdkafka commits them in the background.
        return LoopSettings(
            batch_size=self.batch_size, poll_timeout_s=self.poll_timeout_s, store_offsets=True
        )

    @property
    def alerts_loop(self) -> LoopSettings:
        return LoopSettings(batch_size=self.batch_size, poll_timeout_s=self.poll_timeout_s)

    @property
    def alerts_group(self) -> str:
        return self.alerts_group_id or f"{self.group_id}-alerts"
