"""`python -m services.cache_updater`: wire the settings and adapters, then run."""

from __future__ import annotations

import logging
import socket

import redis
from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from tapewire.kafka import consumer_config, ensure_all_topics, read_latest_per_key
from tapewire.logs import configure_logging
from tapewire.ops import serve_ops
from tapewire.shutdown import install_stop_event

from .metrics import CacheUpdaterMetrics
from .run import run
from .settings import CacheUpdaterSettings

log = logging.getLogger("services.cache_updater")


def main() -> None:
    settings = CacheUpdaterSettings()
    configure_logging("cache_updater", settings.log.log_level)
    stop = install_stop_event()
    topics = settings.topics
    ensure_all_topics(settings.kafka, topics)
    client_id = f"cache-updater-{socket.gethostname()}"
    consumer = Consumer(consumer_config(settings.kafka, settings.group_id, client_id))
    client = redis.Redis.from_url(
        settings.redis.url.get_secret_value(),
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    registry = CollectorRegistry()
    metrics = CacheUpdaterMetrics(registry)

    def restore(partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        return read_latest_per_key(settings.kafka, topics.processor_state, partitions)

    ops = serve_ops(settings.metrics_host, settings.metrics_port, lambda: not stop.is_set(), registry)
    log.info(
        "cache_updater starting",
        extra={"group": settings.group_id, "topic": topics.processed, "alerts_topic": topics.alert_events},
    )
    try:
        run(settings, consumer, client, restore, metrics, stop)
    finally:
        if ops:
            ops.close()
    log.info("cache_updater stopped")


if __name__ == "__main__":
    main()
