"""The processor as a service: wire the settings and adapters, then run (`serve`).

The process runs one loop: the transactional enrichment of ticks and alert commands. History
(PostgreSQL) is written by a service of its own, services.history_writer, so that nothing in
this process competes with the live path for its interpreter lock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping

from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from tapewire import tracing
from tapewire.errors import ConfigurationError
from tapewire.kafka import (
    consumer_config,
    ensure_all_topics,
    partition_counts,
    read_latest_per_key,
    transactional_producer_config,
)
from tapewire.ops import serve_ops
from tapewire.reference.master import MasterFeed
from tapewire.settings import TopicSettings

from .calendars import Calendars
from .enrich import apply
from .metrics import ProcessorMetrics
from .run import CO_PARTITIONING_ASSIGNOR, ApplyTick, Restore, run
from .settings import ProcessorSettings

log = logging.getLogger("services.processor")


def serve(
    settings: ProcessorSettings,
    stop: threading.Event,
    registry: CollectorRegistry,
    apply_tick: ApplyTick = apply,
    restore: Restore | None = None,
) -> None:
    """Run the processor until `stop` is set: the whole service, minus signals and logging.
    `apply_tick` is the business rule and `restore` reads the changelogs (tests pass ones that
    fail on purpose)."""
    topics = settings.topics
    ensure_all_topics(settings.kafka, topics)
    outputs = [topics.processed, topics.processor_state, topics.processor_alerts]
    check_partitioning(topics, partition_counts(settings.kafka, [topics.raw, topics.commands, *outputs]))
    calendars = read_calendars(settings)
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

    def restore_from_kafka(changelog: str, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        return read_latest_per_key(settings.kafka, changelog, partitions)

    log.info(
        "processor starting",
        extra={"group": settings.group_id, "topic": topics.raw, "commands_topic": topics.commands},
    )
    tracer = tracing.start("processor", settings.tracing)
    try:
        run(
            settings,
            consumer,
            producers,
            restore or restore_from_kafka,
            metrics,
            stop,
            apply_tick,
            tracer,
            calendars,
        )
    finally:
        stop.set()
        calendars.close()
        tracer.close()
        if ops:
            ops.close()
    log.info("processor stopped")


def read_calendars(settings: ProcessorSettings) -> Calendars:
    """The instruments' calendars: the whole master, read before anything else is opened (and
    before the first tick, so that every session rolls by its own calendar)."""
    feed = MasterFeed(settings.kafka, settings.topics.instruments)
    try:
        log.info("instrument master read", extra={"instruments": feed.catch_up()})
    except BaseException:
        feed.close()
        raise
    return Calendars(feed)


def check_partitioning(topics: TopicSettings, counts: Mapping[str, int]) -> None:
    """Output for raw partition p goes to partition p: the outputs need at least as many partitions.
    Commands must have exactly as many: only then does an instrument's key hash to the same
    partition number in both topics. `counts` holds the partitions of every topic named."""
    outputs = [topics.processed, topics.processor_state, topics.processor_alerts]
    raw = counts[topics.raw]
    short = {name: counts[name] for name in outputs if counts[name] < raw}
    if short:
        raise ConfigurationError(f"{topics.raw} has {raw} partitions but {short} have fewer; they must match")
    if counts[topics.commands] != raw:
        raise ConfigurationError(
            f"{topics.commands} has {counts[topics.commands]} partitions and {topics.raw} {raw}: they must be"
            " equal, so that an instrument's commands and ticks land on the same partition number"
        )
