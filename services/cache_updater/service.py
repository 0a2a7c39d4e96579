"""cache_updater as a service: wire the settings and adapters, then run (`serve`)."""

from __future__ import annotations

import logging
import socket
import threading

from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from tapewire import tracing
from tapewire.kafka import consumer_config, ensure_all_topics, read_latest_per_key
from tapewire.ops import serve_ops
from tapewire.redis_client import connect

from .metrics import CacheUpdaterMetrics
from .redis_memory import RedisMemoryCollector
from .run import Consumers, Restore, run
from .settings import CacheUpdaterSettings

log = logging.getLogger("services.cache_updater")


def serve(settings: CacheUpdaterSettings, stop: threading.Event, registry: CollectorRegistry) -> None:
    """Run cache_updater until `stop` is set: the whole service, minus signals and logging."""
    topics = settings.topics
    ensure_all_topics(settings.kafka, topics)
    consumers = open_consumers(settings, f"cache-updater-{socket.gethostname()}")
    client = connect(
        settings.redis,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    metrics = CacheUpdaterMetrics(registry)
    registry.register(RedisMemoryCollector(client, cluster=settings.redis.cluster))
    ops = serve_ops(settings.metrics_host, settings.metrics_port, lambda: not stop.is_set(), registry)
    log.info(
        "cache_updater starting",
        extra={"group": settings.group_id, "topic": topics.processed, "alerts_topic": topics.alert_events},
    )
    tracer = tracing.start("cache_updater", settings.tracing)
    try:
        run(
            settings,
            consumers,
            client,
            changelog_reader(settings, topics.processor_state),
            metrics,
            stop,
            restore_alerts=changelog_reader(settings, topics.processor_alerts),
            tracer=tracer,
        )
    finally:
        tracer.close()
        if ops:
            ops.close()
    log.info("cache_updater stopped")


def open_consumers(settings: CacheUpdaterSettings, client_id: str) -> Consumers:
    """The live states' consumer and the alert events' (run.py says why they differ)."""
    states = consumer_config(
        settings.kafka,
        settings.group_id,
        client_id,
        **{
            "isolation.level": "read_uncommitted",
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,  # stored by the loop once Redis has the batch
            "auto.commit.interval.ms": 1000,
        },
    )
    alerts = consumer_config(settings.kafka, settings.alerts_group, f"{client_id}-alerts")
    return Consumers(Consumer(states), Consumer(alerts))


def changelog_reader(settings: CacheUpdaterSettings, changelog: str) -> Restore:
    """The latest record per key of `changelog`'s given partitions, read to their end."""

    def restore(partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        return read_latest_per_key(settings.kafka, changelog, partitions)

    return restore
