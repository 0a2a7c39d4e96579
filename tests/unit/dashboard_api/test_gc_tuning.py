"""The collector's young threshold is set as configured, and every collection is timed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from services.dashboard_api import gc_tuning
from services.dashboard_api.metrics import DashboardApiMetrics


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_tune_sets_only_the_young_threshold(thresholds: None) -> None:
    gc.set_threshold(700, 10, 10)
    gc_tuning.tune(50_000)
    assert gc.get_threshold() == (50_000, 10, 10)
    gc_tuning.tune(0)  # 0 leaves it alone
    assert gc.get_threshold() == (50_000, 10, 10)


def test_pause_timer_observes_each_collection_by_generation() -> None:
    metrics = DashboardApiMetrics(CollectorRegistry())
    timer = gc_tuning.PauseTimer(metrics.gc_pauses)
    timer.install()
    timer.install()  # once only
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        timer.remove()
    gc.collect(2)  # not observed any more

    def count(generation: str) -> float:
        value = metrics.registry.get_sample_value(
            "dashboard_api_gc_pause_seconds_count", {"generation": generation}
        )
        return value or 0.0

    assert count("0") >= 1
    assert count("2") == 1
    total = metrics.registry.get_sample_value("dashboard_api_gc_pause_seconds_sum", {"generation": "2"})
    assert total is not None and total > 0
