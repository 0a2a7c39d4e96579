"""The processor's settings: environment variables prefixed PROCESSOR_ plus the shared pieces."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tapewire.consume_loop import LoopSettings
from tapewire.settings import KafkaSettings, LogSettings, TopicSettings
from tapewire.tracing import TracingSettings


class ProcessorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROCESSOR_", frozen=True, extra="ignore")

    group_id: str = "tt-processor"
    # Larger batches amortise the per-batch work; the first record of a batch is never held
    # back waiting for the rest (see tapewire.kafka.poll_batch).
    batch_size: int = Field(default=500, ge=1, le=100_000)
    poll_timeout_s: float = Field(default=0.1, gt=0, le=5)
    # A raw record bigger than this is dead-lettered unread: a tick is ~100 bytes. An alert
    # command bigger than this is skipped as malformed (one is ~150 bytes).
    max_record_bytes: int = Field(default=4096, ge=256)
    # Active price alerts one instrument may hold: every trade of an instrument with alerts is
    # evaluated against its book, and the book is one changelog record that is rewritten on
    # every change, so its size is what this bounds. A create beyond it is REJECTED.
    max_alerts_per_instrument: int = Field(default=10_000, ge=1, le=1_000_000)
    # ... and bytes, encoded: the book must stay under the ~1 MB that librdkafka
    # (message.max.bytes) and the broker (max.message.bytes) accept for one record by default.
    max_alert_book_bytes: int = Field(default=900_000, ge=10_000, le=900_000)
    # Commits on a cadence, not per poll: a transaction stays open across batches and commits
    # when it is this old (or holds commit_max_records records). New states are published as
    # each batch is handled; the cadence bounds only how long read_committed readers (the
    # history writer, alert events) wait and how much an abort redoes.
    commit_interval_ms: int = Field(default=100, ge=1, le=60_000)
    commit_max_records: int = Field(default=20_000, ge=1, le=1_000_000)
    # Transactions take turns over this many producers, so that a new one never waits for the
    # previous commit's markers (see run.Processor._take_turns); 1 turns that off.
    transactional_producers: int = Field(default=2, ge=1, le=4)
    flush_timeout_s: float = Field(default=30.0, gt=0)
    # How long a crashed instance's open transaction can hold back the partitions it had
    # before the broker aborts it: shorter means faster failover, but every batch must commit
    # well within it.
    transaction_timeout_ms: int = Field(default=15_000, ge=1_000, le=900_000)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9102, ge=0, le=65535)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @property
    def loop(self) -> LoopSettings:
        # Offsets are committed inside the transactions, which also rewind on failure.
        return LoopSettings(
            batch_size=self.batch_size,
            poll_timeout_s=self.poll_timeout_s,
            commit_after_handle=False,
            rewind_on_failure=False,
        )
