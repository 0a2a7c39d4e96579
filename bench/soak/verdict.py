"""Is a soak flat? Pure functions over the samples (one dict a minute, see __main__.py).

The rule, per series, after the warm-up:
- resident memory of each process: the median of the last three samples within ±5 % of the
  median of the first three;
- open file descriptors of each process: the same, or within one descriptor (a count of 30
  moving by one is not a leak);
- consumer lag of each group: never above three seconds of input (3 × `rate` records). Lag
  near zero has no meaningful percentage, and it is measured on committed offsets, which
  trail what a stage has applied by up to its commit cadence (cache_updater commits every
  second in the background, the processor with each transaction);
- end-to-end p99: the median of the last third no more than 5 % (or 2 ms) above that of the
  first third. Medians of thirds, because minute-to-minute noise on a shared machine is larger
  than 5 % and a trend is not; one-sided, because latency that falls is not a degradation;
- no service exited, and the client kept receiving every minute.

The broker's and Redis's series are judged and shown too, but the overall verdict is
tapewire's: its five processes, the lag and the latency (a JVM's heap, or Redis's history
streams filling up to their cap, move for reasons of their own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure import median

TOLERANCE = 0.05
LAG_SECONDS = 3.0
FD_SLACK = 1
P99_SLACK_MS = 2.0
ENDS = 3  # samples compared at each end, for memory and descriptors
SERVERS = ("kafka", "redis")  # shown, not part of the overall verdict


@dataclass(frozen=True)
class Judged:
    series: str
    first: float
    last: float
    flat: bool
    relative: bool = True  # False: `last` is held to a bound, not compared with `first`

    @property
    def change(self) -> float:
        return (self.last - self.first) / self.first if self.first else math.nan

    @property
    def judged(self) -> bool:
        return self.series.split(" ", 1)[0] not in SERVERS

    def as_json(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "first": _number(self.first, 2),
            "last": _number(self.last, 2),
            "change_pct": _number(100 * self.change, 1) if self.relative else None,
            "flat": self.flat,
            "judged": self.judged,
        }


def _number(value: float, digits: int) -> float | None:
    """Rounded, or None for NaN (strict JSON has no NaN)."""
    return None if math.isnan(value) else round(value, digits)


def warm_up_samples(total: int) -> int:
    """Samples left out at the start: a tenth of the run, at least two (caches, JIT-free
    Python's first allocations, librdkafka's buffers reaching their working size)."""
    return max(2, total // 10)


def _within(first: float, last: float, relative: float, absolute: float = 0.0) -> bool:
    return abs(last - first) <= max(relative * abs(first), absolute)


def _ends(values: Sequence[float], count: int) -> tuple[float, float]:
    return median(values[:count]), median(values[-count:])


def judge(samples: Sequence[dict[str, Any]], rate: float) -> dict[str, Any]:
    """The verdict over `samples` (oldest first): per series and overall."""
    kept = list(samples[warm_up_samples(len(samples)) :])
    if len(kept) < 2 * ENDS:
        return {"flat": None, "reason": f"too few samples after the warm-up ({len(kept)})", "series": []}
    judged: list[Judged] = []
    for name in kept[0]["processes"]:
        rss = [s["processes"][name]["rss_mib"] for s in kept if name in s["processes"]]
        fds = [s["processes"][name]["fds"] for s in kept if name in s["processes"]]
        first, last = _ends(rss, ENDS)
        judged.append(Judged(f"{name} rss MiB", first, last, _within(first, last, TOLERANCE)))
        first, last = _ends(fds, ENDS)
        judged.append(Judged(f"{name} fds", first, last, _within(first, last, TOLERANCE, FD_SLACK)))
    for group in kept[0]["lag"]:
        lags = [float(lag) for s in kept if (lag := s["lag"].get(group)) is not None]
        if lags:  # a minute when the broker did not answer the probe has no lag figure
            bound = LAG_SECONDS * rate
            name = f"{group} lag: median, max (bound {bound:,.0f})"
            judged.append(Judged(name, median(lags), max(lags), max(lags) <= bound, relative=False))
    third = max(1, len(kept) // 3)
    p99 = [s["e2e_ms"]["p99"] for s in kept]
    first, last = median(p99[:third]), median(p99[-third:])
    judged.append(Judged("e2e p99 ms", first, last, last - first <= max(TOLERANCE * first, P99_SLACK_MS)))
    exited = {name: code for s in samples for name, code in s.get("exited", {}).items()}
    silent_minutes = sum(1 for s in kept if s["e2e_ms"]["count"] == 0)
    flat = all(j.flat for j in judged if j.judged) and not exited and silent_minutes == 0
    return {
        "flat": flat,
        "warm_up_samples": len(samples) - len(kept),
        "exited": exited,
        "silent_minutes": silent_minutes,
        "series": [j.as_json() for j in judged],
    }
