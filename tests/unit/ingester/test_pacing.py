"""Pacing as a pure function of elapsed time: no sleeping."""

from __future__ import annotations

import pytest

from services.ingester.sources.pacing import RatePacer, replay_delay_s, ticks_due


@pytest.mark.parametrize(
    ("elapsed_s", "rate", "expected"),
    [
        (0.0, 200, 0),
        (-1.0, 200, 0),
        (0.004, 200, 0),
        (0.005, 200, 1),
        (1.0, 200, 200),
        (3.0, 200, 600),
        (2.5, 0.5, 1),
        (0.01, 100_000, 1_000),
    ],
)
def test_ticks_due(elapsed_s: float, rate: float, expected: int) -> None:
    assert ticks_due(elapsed_s, rate) == expected


def test_bursts_add_up_to_the_rate_whatever_the_wake_up_jitter() -> None:
    pacer = RatePacer(rate=200, burst_interval_s=0.005)
    now, total, bursts = 50.0, 0, []
    jitter = [0.0, 0.0013, 0.0041, 0.0002, 0.0029]
    for step in range(600):  # about 4 s of wake-ups, each late by a little
        burst = pacer.take(now)
        total += burst
        bursts.append(burst)
        # After every wake-up, exactly what is due has gone out: the rate holds over any span.
        assert total == ticks_due(now - 50.0, 200)
        now += pacer.wait_s(now) + jitter[step % len(jitter)]
    assert total == pacer.emitted > 750
    assert max(bursts) <= 2  # small bursts, not a catch-up flood


def test_the_first_call_anchors_the_schedule() -> None:
    pacer = RatePacer(rate=10)
    assert pacer.take(1000.0) == 0
    assert pacer.wait_s(1000.0) == pytest.approx(0.1)
    assert pacer.take(1000.1) == 1
    assert pacer.take(1000.35) == 2


def test_wait_is_until_the_next_tick_but_at_least_one_burst_interval() -> None:
    slow, fast = RatePacer(rate=2, burst_interval_s=0.005), RatePacer(rate=100_000, burst_interval_s=0.005)
    slow.take(0.0)
    fast.take(0.0)
    assert slow.wait_s(0.1) == pytest.approx(0.4)
    assert fast.wait_s(0.0) == 0.005
    assert fast.take(0.005) == 500


def test_after_a_long_stall_it_catches_up_at_most_max_lag_then_resumes_the_rate() -> None:
    pacer = RatePacer(rate=100, max_lag_s=1.0)
    pacer.take(0.0)
    assert pacer.take(30.0) == 100  # 30 s of backpressure: one second's worth, not 3000
    assert pacer.take(30.5) == 50
    assert pacer.take(31.0) == 50


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        RatePacer(rate=0)


@pytest.mark.parametrize(
    ("first", "tick", "speed", "elapsed", "expected"),
    [
        (0, 10**9, 1.0, 0.0, 1.0),
        (0, 10**9, 1.0, 0.25, 0.75),
        (0, 10**9, 2.0, 0.0, 0.5),
        (0, 10**9, 0.5, 0.0, 2.0),
        (0, 10**9, 1.0, 2.0, 0.0),  # behind schedule: no waiting
        (10**9, 0, 1.0, 0.0, 0.0),  # earlier than the first line
        (0, 3600 * 10**9, 0.0, 0.0, 0.0),  # speed 0: as fast as possible
    ],
)
def test_replay_delay(first: int, tick: int, speed: float, elapsed: float, expected: float) -> None:
    assert replay_delay_s(first, tick, speed, elapsed) == pytest.approx(expected)
