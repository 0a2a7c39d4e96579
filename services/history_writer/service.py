"""history_writer as a service: wire the settings and adapters, then run (`serve`)."""

from __future__ import annotations

import logging
import os
import socket
import threading

from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from tapewire.consume_loop import LoopMetrics
from tapewire.kafka import consumer_config, ensure_all_topics
from tapewire.ops import serve_ops

from .run import run_history
from .settings import HistoryWriterSettings
from .store import HistoryStore

log = logging.getLogger("services.history_writer")


def serve(settings: HistoryWriterSettings, stop: threading.Event, registry: CollectorRegistry) -> None:
    """Run history_writer until `stop` is set: the whole service, minus signals and logging."""
    topics = settings.topics
    ensure_all_topics(settings.kafka, topics)
    client_id = f"history-writer-{socket.gethostname()}-{os.getpid()}"
    # read_committed (the default of consumer_config): history holds only what the processor
    # committed, never a state of a transaction that was later aborted.
    consumer = Consumer(consumer_config(settings.kafka, settings.group_id, client_id))
    metrics = LoopMetrics("history_writer", registry)
    ops = serve_ops(settings.metrics_host, settings.metrics_port, lambda: not stop.is_set(), registry)
    log.info("history_writer starting", extra={"group": settings.group_id, "topic": topics.processed})
    try:
        run_history(consumer, topics, HistoryStore(settings.postgres), settings.loop, metrics, stop)
    finally:
        if ops:
            ops.close()
    log.info("history_writer stopped")
