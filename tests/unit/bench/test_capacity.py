"""The capacity part's judgement: a step is sustained on what the load generator achieved, with
bounded live backlog, fresh state at receipt and receipts at the throttle's pace."""

from __future__ import annotations

import math
from typing import Any

from bench.capacity import CapacitySettings, judged, summarize, verdict
from bench.e2e import E2ESettings, climb, per_subscription_rate


def summary(p50: float, p99: float) -> dict[str, float]:
    return {"count": 100, "p50": p50, "p99": p99, "p99.9": p99, "max": p99 + 1}


def run(
    offered: int,
    achieved: float,
    backlog: dict[str, int] | None = None,
    age_p99: float = 40.0,
    gap_p99: float = 110.0,
    drained: bool = True,
) -> dict[str, Any]:
    return {
        "offered_rate": offered,
        "achieved_rate": achieved,
        "max_rate": 10.0,
        "latency_ms": summary(10.0, age_p99),
        "receipt_gap_ms": summary(100.0, gap_p99),
        "replaced_age_ms": summary(110.0, age_p99 + 100),
        "backlog_at_end": backlog or {"processor": 0, "cache_updater": 4, "history_writer": 0},
        "backlog_s": 0.0,
        "drained": drained,
        "sustainable": False,
    }


def test_backlog_counts_against_the_achieved_feed_not_the_offer() -> None:
    # 30,000 achieved of 50,000 offered; 24,000 waiting is 0.8 s of it (0.48 s of the offer).
    found = verdict(
        run(50_000, 30_000.0, {"processor": 12_000, "cache_updater": 12_000, "history_writer": 0})
    )
    assert found["backlog_s"] == 0.8
    assert found["sustained"] is True
    assert found["load_short"] is True


def test_history_writer_lag_is_reported_but_not_judged() -> None:
    found = verdict(run(10_000, 10_000.0, {"processor": 0, "cache_updater": 0, "history_writer": 90_000}))
    assert found["backlog_s_by_stage"]["history_writer"] == 9.0
    assert found["sustained"] is True


def test_every_failed_condition_is_named() -> None:
    found = verdict(
        run(
            50_000,
            50_000.0,
            {"processor": 40_000, "cache_updater": 20_000, "history_writer": 0},
            age_p99=250.0,
            gap_p99=900.0,
            drained=False,
        )
    )
    assert found["sustained"] is False
    assert found["reasons"] == [
        "backlog 1.20 s of feed",
        "not drained within a minute",
        "age p99 250 ms",
        "receipt gap p99 900 ms",
    ]


def test_nothing_delivered_is_not_sustained() -> None:
    found = verdict(run(10_000, 10_000.0, age_p99=math.nan, gap_p99=math.nan))
    assert found["sustained"] is False


def test_the_capacity_verdict_replaces_the_end_to_end_one() -> None:
    step = judged(run(10_000, 10_000.0))
    assert "sustainable" not in step
    assert step["sustained"] is True
    assert step["backlog_s"] == 0.0


def test_the_answer_is_the_highest_achieved_rate_sustained() -> None:
    steps = [
        judged(run(10_000, 9_990.0)),
        judged(run(25_000, 24_800.0)),
        judged(run(50_000, 49_000.0, age_p99=180.0)),
    ]
    found = summarize(steps, CapacitySettings(rates=(10_000, 25_000, 50_000)))
    assert (found["max_sustained_rate"], found["max_sustained_offered"]) == (24_800, 25_000)
    assert found["stopped"] == "not sustained at 50,000 ticks/s offered: age p99 180 ms"


def test_a_load_generator_short_of_the_offer_is_said_to_be_the_limit() -> None:
    found = summarize([judged(run(50_000, 31_000.0))], CapacitySettings())
    assert found["max_sustained_rate"] == 31_000
    assert found["stopped"].startswith("the load generator reached only 31,000 of 50,000")


def test_nothing_sustained_answers_zero() -> None:
    found = summarize([judged(run(10_000, 10_000.0, drained=False))], CapacitySettings())
    assert found["max_sustained_rate"] == 0


def test_the_climb_stops_after_the_first_refused_rate() -> None:
    measured: list[int] = []

    def measure(rate: int) -> dict[str, Any]:
        measured.append(rate)
        return {"rate": rate}

    steps = climb((1, 2, 3, 4), measure, lambda step: step["rate"] < 2)
    assert measured == [1, 2]
    assert [step["rate"] for step in steps] == [1, 2]


def test_a_subscription_receives_its_share_capped_by_max_rate() -> None:
    assert per_subscription_rate(5_000, E2ESettings(instruments=100)) == 50.0
    assert per_subscription_rate(50_000, E2ESettings(instruments=100, max_rate=10.0)) == 10.0
    assert per_subscription_rate(500, E2ESettings(instruments=100, max_rate=10.0)) == 5.0
