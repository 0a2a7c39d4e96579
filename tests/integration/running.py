"""The processor, history_writer and cache_updater run on a thread of the test, each until its
block ends, through the service's own `serve()`: the tests run the wiring that ships, not a
copy of it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry

from services.cache_updater.service import serve as serve_cache_updater
from services.cache_updater.settings import CacheUpdaterSettings
from services.history_writer.service import serve as serve_history_writer
from services.history_writer.settings import HistoryWriterSettings
from services.processor.enrich import apply
from services.processor.run import ApplyTick, Restore
from services.processor.service import serve as serve_processor
from services.processor.settings import ProcessorSettings


@contextmanager
def running(
    name: str, serve: Callable[[threading.Event, CollectorRegistry], None]
) -> Iterator[CollectorRegistry]:
    """`serve(stop, registry)` on a thread until the block ends; its metrics are in the registry."""
    stop = threading.Event()
    registry = CollectorRegistry()
    thread = threading.Thread(target=serve, args=(stop, registry), name=name, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), f"{name} did not stop within 30 s"


def running_processor(
    settings: ProcessorSettings, apply_tick: ApplyTick = apply, restore: Restore | None = None
) -> Iterator[CollectorRegistry]:
    """The whole service: the transactional loop, the restore from the changelog."""
    return running(
        "processor", lambda stop, registry: serve_processor(settings, stop, registry, apply_tick, restore)
    )


def running_history_writer(settings: HistoryWriterSettings) -> Iterator[CollectorRegistry]:
    return running("history_writer", lambda stop, registry: serve_history_writer(settings, stop, registry))


def running_cache_updater(settings: CacheUpdaterSettings) -> Iterator[CollectorRegistry]:
    """The whole service: both loops, the rebuild of states and alerts."""
    return running("cache_updater", lambda stop, registry: serve_cache_updater(settings, stop, registry))


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A metric's current value (0 when it was never set)."""
    return registry.get_sample_value(name, labels) or 0.0
