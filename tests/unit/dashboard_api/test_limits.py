from __future__ import annotations

from services.dashboard_api.live.limits import ErrorBudget, TokenBucket


def test_bucket_starts_full_and_allows_a_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=4.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [True, True, True, True, False]


def test_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=4.0, now=0.0)
    for _ in range(4):
        bucket.take(0.0)
    assert not bucket.take(0.25)  # half a token
    assert bucket.take(0.5)  # one token after 0.5 s
    assert not bucket.take(0.5)


def test_bucket_refill_is_capped_at_the_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=4.0, now=0.0)
    bucket.take(0.0)
    assert [bucket.take(100.0) for _ in range(5)] == [True, True, True, True, False]


def test_bucket_average_rate_over_time() -> None:
    bucket = TokenBucket(rate=2.0, burst=4.0, now=0.0)
    accepted = 0
    for step in range(21):  # 0, 0.5, ..., 10 s, ten attempts each time
        accepted += sum(bucket.take(step * 0.5) for _ in range(10))
    assert accepted == 4 + 20  # the burst, then 2 per second for 10 s


def test_error_budget_is_spent_after_more_than_the_limit() -> None:
    budget = ErrorBudget(limit=3)
    assert [budget.exceeded(t) for t in (0.0, 1.0, 2.0, 3.0)] == [False, False, False, True]
    assert budget.exceeded(4.0)  # and stays spent while they are recent


def test_error_budget_forgets_errors_older_than_its_window() -> None:
    budget = ErrorBudget(limit=3, window_s=60.0)
    assert not any(budget.exceeded(t) for t in (0.0, 10.0, 20.0))
    assert not budget.exceeded(61.0)  # the one at 0 is out of the window
    assert not budget.exceeded(70.5)  # the one at 10 too
    assert budget.exceeded(71.0)  # 20, 61, 70.5, 71: four within 60 s


def test_error_budget_window_includes_its_edge() -> None:
    budget = ErrorBudget(limit=1, window_s=60.0)
    assert not budget.exceeded(0.0)
    assert budget.exceeded(60.0)
    budget = ErrorBudget(limit=1, window_s=60.0)
    assert not budget.exceeded(0.0)
    assert not budget.exceeded(60.001)


def test_a_steady_trickle_below_the_limit_never_spends_it() -> None:
    budget = ErrorBudget(limit=60, window_s=60.0)
    assert not any(budget.exceeded(t * 1.5) for t in range(1000))  # 40 a minute
