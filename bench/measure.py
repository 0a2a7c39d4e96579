"""What every benchmark measures with: processes' CPU and memory from the OS, and latency
percentiles. Pure helpers except ProcessSampler, which reads /proc through psutil."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psutil


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank q-quantile (0..1) of already sorted values; NaN when there are none."""
    if not sorted_values:
        return math.nan
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize_ms(latencies_ms: Iterable[float]) -> dict[str, float]:
    """count, p50, p99, p99.9 and max of latencies in milliseconds."""
    values = sorted(latencies_ms)
    return {
        "count": len(values),
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "p99.9": percentile(values, 0.999),
        "max": values[-1] if values else math.nan,
    }


def median(values: Sequence[float]) -> float:
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass
class ProcessUsage:
    """CPU seconds (user + system, children included; and of them the system's, spent in the
    kernel on the process's behalf) and peak RSS of one process over a window."""

    name: str
    pid: int
    cpu_s: float = 0.0
    kernel_s: float = 0.0
    peak_rss_mb: float = 0.0
    _start_cpu: tuple[float, float] | None = field(default=None, repr=False)


class ProcessSampler:
    """Samples named processes every `interval_s` in a background thread: CPU time used since
    start() (from the OS, not wall time) and the peak resident memory seen."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.25) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._usage = {name: ProcessUsage(name, pid) for name, pid in pids.items()}
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)
        self._started = 0.0
        self.wall_s = 0.0

    def start(self) -> ProcessSampler:
        for name, process in self._processes.items():
            self._usage[name]._start_cpu = cpu_and_kernel_seconds(process)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> dict[str, ProcessUsage]:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall_s = time.monotonic() - self._started
        return self._usage

    def peak_rss_mb(self, name: str) -> float:
        """The highest resident memory of `name` seen so far (while running, too)."""
        return self._usage[name].peak_rss_mb

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        for name, process in self._processes.items():
            usage = self._usage[name]
            try:
                cpu, kernel = cpu_and_kernel_seconds(process)
                rss = process.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
            start_cpu, start_kernel = usage._start_cpu or (0.0, 0.0)
            usage.cpu_s = cpu - start_cpu
            usage.kernel_s = kernel - start_kernel
            usage.peak_rss_mb = max(usage.peak_rss_mb, rss)


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time used so far: user + system, children included."""
    return cpu_and_kernel_seconds(process)[0]


def cpu_and_kernel_seconds(process: psutil.Process) -> tuple[float, float]:
    """CPU time used so far (user + system, children included), and the system part of it."""
    times = process.cpu_times()
    kernel = float(times.system + times.children_system)
    return float(times.user + times.children_user) + kernel, kernel


def usage_to_json(usage: dict[str, ProcessUsage], wall_s: float) -> dict[str, dict[str, float]]:
    """Per process: CPU seconds, average cores busy over the window (all of it, and in the
    kernel), peak RSS in MiB."""
    return {
        name: {
            "cpu_s": round(u.cpu_s, 3),
            "cores": round(u.cpu_s / wall_s, 3) if wall_s > 0 else math.nan,
            "kernel_cores": round(u.kernel_s / wall_s, 3) if wall_s > 0 else math.nan,
            "peak_rss_mb": round(u.peak_rss_mb, 1),
        }
        for name, u in usage.items()
    }
