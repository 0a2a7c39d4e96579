"""The soak's verdict: what counts as flat, and what does not."""

from __future__ import annotations

import json
import math
from typing import Any

from bench.soak.verdict import judge, warm_up_samples


def sample(
    minute: int, rss: float = 100.0, fds: int = 30, lag: int = 10, p99: float = 40.0, count: int = 1000
) -> dict[str, Any]:
    return {
        "minute": minute,
        "processes": {"processor": {"rss_mib": rss, "fds": fds, "cpu_pct": 10.0}},
        "lag": {"processor": lag},
        "e2e_ms": {"count": count, "p50": 10.0, "p99": p99, "p99.9": p99, "max": p99},
        "exited": {},
    }


def series(verdict: dict[str, Any], name: str) -> dict[str, Any]:
    return next(row for row in verdict["series"] if row["series"] == name)


def test_steady_series_are_flat_and_the_warm_up_is_left_out() -> None:
    # A warm-up that doubles memory is not a leak: only what follows it is judged.
    samples = [sample(1, rss=50), sample(2, rss=80)] + [sample(m) for m in range(3, 21)]
    verdict = judge(samples, rate=1000)
    assert warm_up_samples(20) == 2
    assert verdict["flat"] is True
    assert series(verdict, "processor rss MiB") == {
        "series": "processor rss MiB", "first": 100.0, "last": 100.0, "change_pct": 0.0,
        "flat": True, "judged": True,
    }  # fmt: skip


def test_memory_growing_by_more_than_five_percent_is_not_flat() -> None:
    samples = [sample(m, rss=100 + m) for m in range(1, 21)]  # +1 MiB a minute
    verdict = judge(samples, rate=1000)
    assert verdict["flat"] is False
    assert series(verdict, "processor rss MiB")["flat"] is False
    assert series(verdict, "processor rss MiB")["change_pct"] == 14.4  # medians: 104 -> 119 MiB


def test_one_more_descriptor_is_noise_a_steady_climb_is_a_leak() -> None:
    assert judge([sample(m, fds=30 + (m > 10)) for m in range(1, 21)], 1000)["flat"] is True
    assert judge([sample(m, fds=30 + m) for m in range(1, 21)], 1000)["flat"] is False


def test_lag_above_three_seconds_of_input_is_not_flat() -> None:
    samples = [sample(m) for m in range(1, 21)]
    samples[14] = sample(15, lag=2500)  # commits trail: 2.5 s of input is still flat
    assert judge(samples, rate=1000)["flat"] is True
    samples[15] = sample(16, lag=3500)
    verdict = judge(samples, rate=1000)
    assert series(verdict, "processor lag: median, max (bound 3,000)")["flat"] is False
    assert verdict["flat"] is False


def test_p99_noise_within_the_slack_passes_a_trend_does_not() -> None:
    noisy = [sample(m, p99=40 + (m % 2)) for m in range(1, 21)]
    assert judge(noisy, 1000)["flat"] is True
    creeping = [sample(m, p99=40 + 2 * m) for m in range(1, 21)]
    assert series(judge(creeping, 1000), "e2e p99 ms")["flat"] is False
    falling = [sample(m, p99=80 - 2 * m) for m in range(1, 21)]
    assert series(judge(falling, 1000), "e2e p99 ms")["flat"] is True  # better is not a degradation


def test_an_exit_or_a_silent_minute_fails_the_soak() -> None:
    samples = [sample(m) for m in range(1, 21)]
    samples[10]["exited"] = {"processor": -9}
    assert judge(samples, 1000)["flat"] is False
    quiet = [sample(m, count=0 if m == 12 else 1000) for m in range(1, 21)]
    verdict = judge(quiet, 1000)
    assert verdict["flat"] is False and verdict["silent_minutes"] == 1


def test_too_short_a_run_has_no_verdict() -> None:
    assert judge([sample(m) for m in range(1, 5)], 1000)["flat"] is None


def test_the_servers_are_shown_but_not_part_of_the_verdict() -> None:
    samples = [sample(m) for m in range(1, 21)]
    for m, s in enumerate(samples, 1):
        s["processes"]["kafka"] = {"rss_mib": 500.0 + 10 * m, "fds": 200, "cpu_pct": 30.0}
    verdict = judge(samples, 1000)
    assert series(verdict, "kafka rss MiB")["flat"] is False
    assert series(verdict, "kafka rss MiB")["judged"] is False
    assert verdict["flat"] is True


def test_a_minute_without_a_lag_figure_is_left_out_and_nan_is_null() -> None:
    samples = [sample(m) for m in range(1, 21)]
    samples[10]["lag"] = {"processor": None}
    samples[12]["e2e_ms"]["p99"] = math.nan
    verdict = judge(samples, 1000)
    assert series(verdict, "processor lag: median, max (bound 3,000)")["flat"] is True
    json.dumps(verdict, allow_nan=False)  # strict JSON
