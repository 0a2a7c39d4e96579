"""The benchmark report's arithmetic: percentiles, medians over repetitions, targets, tables."""

from __future__ import annotations

import math

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
    table = report.rate_medians([run(5000, 4.0, 30.0, 0)])
    results = {"throughput": {"max_sustainable_rate": 60_000}}
    rows = {name: (measured, ok) for name, _goal, measured, ok in report.targets(results, table)}
    assert rows["e2e p50 at 5k ticks/s, 100 clients"] == ("4.0 ms", True)
    assert rows["e2e p99 at 5k ticks/s, 100 clients"] == ("30.0 ms", False)
    assert rows["sustained end to end, p99 ≤ 100 ms"] == ("60,000 ticks/s", True)


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
