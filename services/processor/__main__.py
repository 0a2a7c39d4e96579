"""`python -m services.processor`: wire the settings and adapters, then run.

The process runs one loop: the transactional enrichment of ticks and alert commands. History
(PostgreSQL) is written by a service of its own, services.history_writer, so that nothing in
this process competes with the live path for its interpreter lock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from tapewire.errors import ConfigurationError
from tapewire.kafka import (
    consumer_config,
    ensure_all_topics,
    read_latest_per_key,
    transactional_producer_config,
)
from tapewire.logs import configure_logging
from tapewire.ops import serve_ops
from tapewire.settings import KafkaSettings, TopicSettings
from tapewire.shutdown import install_stop_event

from .enrich import apply
from .metrics import ProcessorMetrics
from .run import CO_PARTITIONING_ASSIGNOR, ApplyTick, run
from .settings import ProcessorSettings

log = logging.getLogger("services.processor")


def main() -> None:
    settings = ProcessorSettings()
    configure_logging("processor", settings.log.log_level)
    serve(settings, install_stop_event(), CollectorRegistry())
    log.info("processor stopped")


def serve(
    settings: ProcessorSettings,
    stop: threading.Event,
    registry: CollectorRegistry,
    apply_tick: ApplyTick = apply,
) -> None:
    """Run the processor until `stop` is set: the whole service, minus signals and logging.
    `apply_tick` is the business rule (tests pass one that fails on purpose)."""
    topics = settings.topics
    ensure_all_topics(settings.kafka, topics)
    check_partitioning(settings.kafka, topics)
    metrics = ProcessorMetrics(registry)
    ops = serve_ops(settings.metrics_host, settings.metrics_port, lambda: not stop.is_set(), registry)
    client_id = f"processor-{socket.gethostname()}-{os.getpid()}"
    consumer = Consumer(
        consumer_config(
            settings.kafka,
            settings.group_id,
            client_id,
            **{"partition.assignment.strategy": CO_PARTITIONING_ASSIGNOR},
        )
    )
    # Unique per process: zombie fencing comes from the consumer group generation (KIP-447),
    # so the ids need not survive restarts.
    instance = f"{client_id}-{uuid.uuid4().hex[:8]}"
    producers = [
        Producer(
            transactional_producer_config(
                settings.kafka, client_id, f"{instance}-{turn}", settings.transaction_timeout_ms
            )
        )
        for turn in range(settings.transactional_producers)
    ]

    def restore(changelog: str, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        return read_latest_per_key(settings.kafka, changelog, partitions)

    log.info(
        "processor starting",
        extra={"group": settings.group_id, "topic": topics.raw, "commands_topic": topics.commands},
    )
    try:
        run(settings, consumer, producers, restore, metrics, stop, apply_tick)
    finally:
        stop.set()
        if ops:
            ops.close()


def check_partitioning(kafka: KafkaSettings, topics: TopicSettings) -> None:
    """Output for raw partition p goes to partition p: the outputs need at least as many partitions.
    Commands must have exactly as many: only then does an instrument's key hash to the same
    partition number in both topics."""
    outputs = [topics.processed, topics.processor_state, topics.processor_alerts]
    counts = partition_counts(kafka, [topics.raw, topics.commands, *outputs])
    raw = counts[topics.raw]
    short = {name: counts[name] for name in outputs if counts[name] < raw}
    if short:
        raise ConfigurationError(f"{topics.raw} has {raw} partitions but {short} have fewer; they must match")
    if counts[topics.commands] != raw:
        raise ConfigurationError(
            f"{topics.commands} has {counts[topics.commands]} partitions and {topics.raw} {raw}: they must be"
            " equal, so that an instrument's commands and ticks land on the same partition number"
        )


def partition_counts(kafka: KafkaSettings, names: list[str], timeout_s: float = 30.0) -> dict[str, int]:
    """Partitions per topic, waiting for topics just created to show in the metadata (a broker
    that has only just started can answer before it knows them)."""
    consumer = Consumer({**kafka.as_librdkafka_dict(), "group.id": "tapewire-metadata"})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            metadata = consumer.list_topics(timeout=10)
            missing = [
                name
                for name in names
                if not metadata.topics.get(name) or not metadata.topics[name].partitions
            ]
            if not missing:
                return {name: len(metadata.topics[name].partitions) for name in names}
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"topics {missing} are not in the broker's metadata after {timeout_s:.0f}s"
                )
            time.sleep(0.5)
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
