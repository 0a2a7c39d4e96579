"""Pipeline capacity: the highest feed rate the live path (raw topic → processor → processed
topic → cache_updater → Redis → dashboard_api) sustains while its clients watch as a desk
screen does, throttled to `max_rate` updates/s per instrument (conflated, the newest state
winning), and how old the state those clients hold is.

The same runs as the end-to-end part (`e2e.latency_run`: one load generator, the clients, the
OS's CPU figures, the consumer lag at the end), stepped up by `e2e.climb`. A step is sustained
when what the load generator achieved (it may fall short of the offer on a shared machine, so
the achieved rate is the figure) leaves at most `MAX_BACKLOG_S` of it waiting for the processor
and cache_updater at the end, the suite drains after, and the clients' state is fresh:

- age at receipt: receive time − ingest stamp of the newest tick folded into the state received,
  the age of the newest state the client holds at that moment; p99 ≤ `SUSTAINABLE_P99_MS`;
- receipt gap: the time between two receipts of one instrument on one connection, p99 at most
  `MAX_GAP_FACTOR` throttle intervals: a server that fell behind its own throttle would deliver
  fresh states ever more rarely, and the client would hold each one longer.

Between receipts the client holds its state while newer ones exist upstream (every instrument
ticks every few ms at these rates): "age when replaced" (next receipt − the held state's ingest
stamp, the peak of the sawtooth) is reported too. It is the age at receipt plus the throttle
interval by design, so it is not held to the 100 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .e2e import MAX_BACKLOG_S, SUSTAINABLE_P99_MS, E2ESettings, climb, latency_run
from .stack import RunningStack

LIVE_STAGES = ("processor", "cache_updater")
# How many throttle intervals the receipt gap's p99 may span before the clients are said to be
# served late (the throttle itself makes it one interval plus scheduling jitter).
MAX_GAP_FACTOR = 2.0
# Below this share of the offer the load generator is the limit, not the suite: climbing further
# would only offer what it cannot produce.
LOAD_SHORT = 0.95


@dataclass(frozen=True)
class CapacitySettings:
    rates: tuple[int, ...] = (10_000, 25_000, 50_000, 75_000, 100_000)
    seconds: float = 8.0
    # Updates/s per instrument each client subscribes at: a desk screen's refresh.
    max_rate: float = 10.0


def verdict(run: dict[str, Any]) -> dict[str, Any]:
    """Whether a run's pipeline sustained what the load generator achieved, and if not why."""
    achieved = float(run["achieved_rate"])
    backlog = run["backlog_at_end"]
    by_stage = {stage: round(backlog[stage] / achieved, 3) if achieved > 0 else math.inf for stage in backlog}
    live_s = sum(by_stage[stage] for stage in LIVE_STAGES)
    age_p99 = run["latency_ms"]["p99"]
    gap_p99 = run["receipt_gap_ms"]["p99"]
    max_gap_ms = MAX_GAP_FACTOR * 1000.0 / run["max_rate"] if run["max_rate"] > 0 else math.inf
    reasons = []
    if not live_s <= MAX_BACKLOG_S:
        reasons.append(f"backlog {live_s:.2f} s of feed")
    if not run["drained"]:
        reasons.append("not drained within a minute")
    if not age_p99 <= SUSTAINABLE_P99_MS:  # NaN (nothing delivered) fails too
        reasons.append(f"age p99 {age_p99:.0f} ms")
    if not gap_p99 <= max_gap_ms:
        reasons.append(f"receipt gap p99 {gap_p99:.0f} ms")
    return {
        "backlog_s": round(live_s, 3),
        "backlog_s_by_stage": by_stage,
        "sustained": not reasons,
        "reasons": reasons,
        "load_short": achieved < LOAD_SHORT * run["offered_rate"],
    }


def judged(run: dict[str, Any]) -> dict[str, Any]:
    """The run with this part's verdict in place of the end-to-end one (which counts the backlog
    against the offer and fails a load generator that fell short)."""
    kept = {key: value for key, value in run.items() if key != "sustainable"}
    return {**kept, **verdict(run)}


def summarize(steps: list[dict[str, Any]], settings: CapacitySettings) -> dict[str, Any]:
    """The highest achieved rate among the sustained steps, and why the climb stopped."""
    sustained = [step for step in steps if step["sustained"]]
    best = max(sustained, key=lambda step: step["achieved_rate"], default=None)
    return {
        "max_rate": settings.max_rate,
        "max_sustained_rate": round(best["achieved_rate"]) if best else 0,
        "max_sustained_offered": best["offered_rate"] if best else 0,
        "stopped": _stopped(steps, settings),
        "criterion": (
            f"processor + cache_updater backlog ≤ {MAX_BACKLOG_S:.0f} s of the achieved feed at the end, "
            f"drained after; age at receipt p99 ≤ {SUSTAINABLE_P99_MS:.0f} ms; receipt gap p99 ≤ "
            f"{MAX_GAP_FACTOR * 1000.0 / settings.max_rate:.0f} ms"
        ),
        "steps": steps,
    }


def _stopped(steps: list[dict[str, Any]], settings: CapacitySettings) -> str:
    if not steps:
        return "nothing measured"
    last = steps[-1]
    if not last["sustained"]:
        return f"not sustained at {last['offered_rate']:,} ticks/s offered: {', '.join(last['reasons'])}"
    if last["load_short"]:
        return (
            f"the load generator reached only {last['achieved_rate']:,.0f} of {last['offered_rate']:,} "
            "ticks/s offered: the suite was not the limit"
        )
    return f"every rate up to {settings.rates[-1]:,} ticks/s sustained"


def capacity_search(stack: RunningStack, e2e: E2ESettings, settings: CapacitySettings) -> dict[str, Any]:
    """Offer ever higher rates to the suite with throttled clients until one is not sustained
    (or the load generator cannot offer more)."""
    conflated = replace(e2e, max_rate=settings.max_rate)

    def measure(rate: int) -> dict[str, Any]:
        step = judged(latency_run(stack, rate, settings.seconds, conflated))
        _print_step(step)
        return step

    steps = climb(settings.rates, measure, lambda step: step["sustained"] and not step["load_short"])
    return {
        "clients": e2e.clients,
        "per_client": e2e.per_client,
        "instruments": e2e.instruments,
        **summarize(steps, settings),
    }


def _print_step(step: dict[str, Any]) -> None:
    age, gap = step["latency_ms"], step["receipt_gap_ms"]
    print(
        f"  capacity {step['offered_rate']}/s: achieved {step['achieved_rate']:.0f}/s, age p50 "
        f"{age['p50']:.1f} p99 {age['p99']:.1f} ms, gap p99 {gap['p99']:.0f} ms, backlog "
        f"{step['backlog_s']:.2f} s, sustained={step['sustained']} {'; '.join(step['reasons'])}",
        flush=True,
    )
