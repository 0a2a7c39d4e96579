"""`python -m services.processor`: wire the settings and adapters, then run."""

from __future__ import annotations

import logging
import socket

from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from tapewire.kafka import consumer_config, ensure_topics, producer_config
from tapewire.logs import configure_logging
from tapewire.ops import OpsServer
from tapewire.shutdown import install_stop_event

from .metrics import ProcessorMetrics
from .run import run
from .settings import ProcessorSettings
from .store import StateStore

log = logging.getLogger("services.processor")


def main() -> None:
    settings = ProcessorSettings()
    configure_logging("processor", settings.log.log_level)
    stop = install_stop_event()
    topics = settings.topics
    ensure_topics(
        settings.kafka,
        {
            topics.raw: topics.partitions,
            topics.processed: topics.partitions,
            topics.raw_dlq: topics.partitions,
        },
        topics.replication_factor,
    )
    client_id = f"processor-{socket.gethostname()}"
    consumer = Consumer(consumer_config(settings.kafka, settings.group_id, client_id))
    producer = Producer(producer_config(settings.kafka, client_id))
    registry = CollectorRegistry()
    metrics = ProcessorMetrics(registry)
    ops = None
    if settings.metrics_port:
        ops = OpsServer(
            settings.metrics_host, settings.metrics_port, lambda: not stop.is_set(), registry
        ).start()
    log.info("processor starting", extra={"group": settings.group_id, "topic": topics.raw})
    try:
        run(settings, consumer, producer, StateStore(settings.postgres), metrics, stop)
    finally:
        if ops:
            ops.close()
    log.info("processor stopped")


if __name__ == "__main__":
    main()
