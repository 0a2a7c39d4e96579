"""The benchmark report's arithmetic: percentiles, medians over repetitions, targets, tables."""

from __future__ import annotations

import math

import pytest

from bench import report
from bench.measure import median, percentile, summarize_ms

HOPS = ("ingest_to_processed", "processed_to_cached", "cached_to_sent", "sent_to_received")


def run(rate: int, p50: float, p99: float, repetition: int) -> dict[str, object]:
    latency = {"count": 10, "p50": p50, "p99": p99, "p99.9": p99, "max": p99 + 1}
    return {
        "offered_rate": rate,
        "repetition": repetition,
        "latency_ms": latency,
        "hops_ms": {hop: latency for hop in HOPS},
        "delivered_per_s": 1000.0,
        "delivered_ratio": 1.0,
        "backlog_s": 0.0,
        "processes": {"processor": {"cores": 0.5, "peak_rss_mb": 80.0}},
    }


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert math.isnan(percentile([], 0.5))
    assert summarize_ms([3.0, 1.0, 2.0]) == {"count": 3, "p50": 2.0, "p99": 3.0, "p99.9": 3.0, "max": 3.0}


def test_medians_over_repetitions_ignore_missing_values() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0]) == 2.5
    assert median([math.nan, 5.0]) == 5.0


def test_rate_table_takes_the_median_repetition() -> None:
    runs = [run(5000, p50, p50 * 3, i) for i, p50 in enumerate((4.0, 9.0, 6.0))]
    table = report.rate_medians(runs)
    assert table[5000]["p50"] == 6.0
    assert table[5000]["p99"] == 18.0
    assert table[5000]["repetitions"] == 3


def test_targets_say_met_or_missed_with_the_figure() -> None:
    table = report.rate_medians([run(1000, 4.0, 30.0, 0), run(5000, 20.0, 45.0, 1)])
    results = {"throughput": {"max_sustainable_rate": 2_000}}
    rows = {name: (measured, ok) for name, _goal, measured, ok in report.targets(results, table)}
    assert rows["e2e p50 at 1k ticks/s, 100 clients"] == ("4.0 ms", True)
    assert rows["e2e p99 at 1k ticks/s, 100 clients"] == ("30.0 ms", False)
    assert rows["e2e p99 at 5k ticks/s, 100 clients"] == ("45.0 ms", True)
    assert rows["5k ticks/s keeps up (delivered/expected, backlog)"] == ("1.00, 0.00 s", True)
    sustained = rows["sustained end to end, p99 ≤ 100 ms, every version to 100 clients"]
    assert sustained == ("2,000 ticks/s", False)


def test_markdown_has_every_section_it_has_data_for() -> None:
    results = {
        "mode": "quick",
        "started": "2026-11-22T10:00:00+00:00",
        "command": "make bench-quick",
        "machine": {"cpus": 2, "memory_gib": 24, "platform": "Linux"},
        "settings": {"repetitions": 1},
        "e2e": {"clients": 100, "per_client": 10, "instruments": 100, "runs": [run(1000, 2.0, 8.0, 0)]},
    }
    text = report.markdown(results)
    assert "## End-to-end latency" in text
    assert "| 1,000 | 2.0 | 8.0 |" in text
    assert "## Targets" in text
    assert "Maximum sustainable" not in text


def processes(**cores: float) -> dict[str, dict[str, float]]:
    return {name: {"cores": value, "peak_rss_mb": 50.0} for name, value in cores.items()}


def test_cpu_per_tick_is_cores_over_the_achieved_rate() -> None:
    found = report.us_per_tick(
        {"achieved_rate": 20_000.0, "processes": processes(processor=0.5, redis=0.1, loadgen=0.4)}
    )
    assert found == {"processor": 25.0, "redis": 5.0, "total": 30.0}
    assert math.isnan(report.us_per_tick({"processes": processes(processor=0.5)})["processor"])


def capacity_step(offered: int, achieved: float, age_p99: float, sustained: bool) -> dict[str, object]:
    latency = {"count": 10, "p50": 8.0, "p99": age_p99, "p99.9": age_p99, "max": age_p99}
    return {
        "offered_rate": offered,
        "achieved_rate": achieved,
        "latency_ms": latency,
        "replaced_age_ms": {**latency, "p50": 108.0, "p99": age_p99 + 100},
        "receipt_gap_ms": {**latency, "p50": 100.0, "p99": 104.0, "max": 130.0},
        "backlog_s_by_stage": {"processor": 0.0, "cache_updater": 0.01, "history_writer": 0.5},
        "delivered_per_s": 9_800.0,
        "sustained": sustained,
        "reasons": [] if sustained else ["age p99 150 ms"],
        "load_short": False,
        "processes": processes(processor=0.8, kafka=0.3, **{"clients-0": 0.1, "clients-1": 0.1}),
    }


def capacity(*steps: dict[str, object]) -> dict[str, object]:
    return {
        "clients": 100,
        "per_client": 10,
        "instruments": 100,
        "max_rate": 10.0,
        "max_sustained_rate": 24_900,
        "max_sustained_offered": 25_000,
        "stopped": "not sustained at 50,000 ticks/s offered: age p99 150 ms",
        "criterion": "…",
        "steps": list(steps),
    }


def test_cpu_rows_take_e2e_medians_and_each_capacity_step() -> None:
    runs = [
        {**run(1000, 2.0, 8.0, i), "achieved_rate": 1_000.0, "processes": processes(processor=c)}
        for i, c in enumerate((0.1, 0.3, 0.2))
    ]
    results = {"e2e": {"runs": runs}, "capacity": capacity(capacity_step(10_000, 10_000.0, 40.0, True))}
    rows = dict(report.cpu_per_tick_rows(results))
    assert rows["e2e 1,000"]["processor"] == 200.0
    assert rows["capacity 10,000"] == {"processor": 80.0, "kafka": 30.0, "total": 110.0}


def test_capacity_targets_judge_the_step_at_the_target_rate() -> None:
    found = capacity(
        capacity_step(25_000, 24_900.0, 40.0, True), capacity_step(50_000, 49_500.0, 150.0, False)
    )
    rows = {name: (measured, ok) for name, _goal, measured, ok in report.targets({"capacity": found}, {})}
    assert rows["pipeline capacity, clients at max_rate 10/s"] == ("24,900 ticks/s", False)
    assert rows["client-held state age p99 (at receipt, max_rate 10/s)"] == (
        "150.0 ms at 50,000 ticks/s offered",
        False,
    )


def test_capacity_targets_fall_back_to_where_the_climb_stopped() -> None:
    found = capacity(capacity_step(10_000, 10_000.0, 40.0, True))
    rows = {name: (measured, ok) for name, _goal, measured, ok in report.targets({"capacity": found}, {})}
    assert rows["client-held state age p99 (at receipt, max_rate 10/s)"] == (
        "40.0 ms at 10,000 ticks/s offered",
        True,
    )


def test_markdown_has_the_capacity_and_cpu_tables() -> None:
    results = {
        "mode": "quick",
        "started": "2026-11-22T10:00:00+00:00",
        "command": "make bench-quick",
        "machine": {"cpus": 2, "memory_gib": 24, "platform": "Linux"},
        "settings": {"repetitions": 1},
        "capacity": capacity(capacity_step(25_000, 24_900.0, 40.0, True)),
    }
    text = report.markdown(results)
    assert "## Pipeline capacity (clients at max_rate 10/s per instrument)" in text
    assert (
        "| 25,000 | 24,900 | 0.00 / 0.01 / 0.50 | 8.0 / 40.0 | 108.0 / 140.0 | 100.0 / 104.0 / 130.0" in text
    )
    assert "| 25,000 | 0.80 | 0.30 | 0.20 |" in text  # processor, kafka, clients summed
    assert "## CPU µs per tick per stage" in text
    assert "| capacity 25,000 | 32.1 | 12.0 | 44.2 |" in text


def test_a_stage_run_as_several_instances_counts_all_of_them() -> None:
    run = {
        "achieved_rate": 10_000,
        "processes": {
            "processor": {"cores": 0.2},
            "processor-2": {"cores": 0.3},
            "cache_updater": {"cores": 0.1},
            "clients-0": {"cores": 0.9},
        },
    }
    row = report.us_per_tick(run)
    assert row["processor"] == pytest.approx(50.0)
    assert row["cache_updater"] == pytest.approx(10.0)
    assert row["total"] == pytest.approx(60.0)


def test_throttled_deliveries_are_reported_per_dashboard_api_core() -> None:
    step = {"delivered_per_s": 8_000.0, "processes": {"dashboard_api": {"cores": 0.25}}}
    assert report.delivered_per_api_core(step) == pytest.approx(32_000.0)
    assert math.isnan(report.delivered_per_api_core({"delivered_per_s": 1.0, "processes": {}}))
