"""history_writer's settings: environment variables prefixed HISTORY_WRITER_ plus the shared pieces."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tapewire.consume_loop import LoopSettings
from tapewire.settings import KafkaSettings, LogSettings, PostgresSettings, TopicSettings


class HistoryWriterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HISTORY_WRITER_", frozen=True, extra="ignore")

    group_id: str = "tt-history-writer"
    # Larger batches amortise the PostgreSQL round trip: one transaction per batch, and only
    # the newest row of each instrument and bar in it is written.
    batch_size: int = Field(default=2_000, ge=1, le=100_000)
    poll_timeout_s: float = Field(default=0.1, gt=0, le=5)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9104, ge=0, le=65535)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @property
    def loop(self) -> LoopSettings:
        return LoopSettings(batch_size=self.batch_size, poll_timeout_s=self.poll_timeout_s)
