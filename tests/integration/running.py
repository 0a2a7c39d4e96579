"""The processor and cache_updater run on a thread of the test, each until its block ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from prometheus_client import CollectorRegistry

from services.cache_updater.__main__ import changelog_reader, open_consumers
from services.cache_updater.metrics import CacheUpdaterMetrics
from services.cache_updater.run import run as run_cache_updater
from services.cache_updater.settings import CacheUpdaterSettings
from services.processor.__main__ import serve
from services.processor.enrich import apply
from services.processor.run import ApplyTick
from services.processor.settings import ProcessorSettings


@contextmanager
def running_processor(
    settings: ProcessorSettings, apply_tick: ApplyTick = apply
) -> Iterator[CollectorRegistry]:
    """The whole service (transactional loop and, when enabled, the history writer)."""
    stop = threading.Event()
    registry = CollectorRegistry()
    thread = threading.Thread(target=serve, args=(settings, stop, registry, apply_tick), daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "processor did not stop within 30 s"


@contextmanager
def running_cache_updater(settings: CacheUpdaterSettings) -> Iterator[CacheUpdaterMetrics]:
    stop = threading.Event()
    metrics = CacheUpdaterMetrics(CollectorRegistry())
    consumers = open_consumers(settings, "test-cache-updater")
    client = redis.Redis.from_url(settings.redis.url.get_secret_value())

    restore = changelog_reader(settings, settings.topics.processor_state)
    restore_alerts = changelog_reader(settings, settings.topics.processor_alerts)
    thread = threading.Thread(
        target=run_cache_updater,
        args=(settings, consumers, client, restore, metrics, stop, restore_alerts),
        daemon=True,
    )
    thread.start()
    try:
        yield metrics
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
