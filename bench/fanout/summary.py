"""What the measurements come to: one trial's figures, then medians over repetitions, the
ratios dashboard_api / peer, the targets and the environment."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from bench.fanout.clients import ClientStats
from bench.fanout.publisher import PublisherReport
from bench.measure import median, summarize_ms

# A client process using this much of a core was busy enough to delay what it reads.
CLIENT_SATURATED_CORES = 0.85
# Delivering at least this share of what was offered counts as keeping up.
KEPT_UP = 0.98
# Processes outside the trial using this many cores made it noisy.
NOISY_CORES = 0.25
TARGET_PER_CORE = 40_000.0
TARGET_P99_MS = 50.0
# Connections held from this count on are judged on holding them: p99 within a looser bound.
HELD_CONNECTIONS = 10_000
TARGET_P99_MS_HELD = 100.0
TARGET_VS_SOCKETIO = 3.0
TARGET_VS_CENTRIFUGO = 1.2


def target_p99_ms(connections: int) -> float:
    return TARGET_P99_MS_HELD if connections >= HELD_CONNECTIONS else TARGET_P99_MS


def trial_result(
    contender: str,
    connections: int,
    processes: int,
    opened: tuple[int, int],
    seconds: float,
    offered_rate: int,
    watchers: tuple[int, float, int],
    publisher: PublisherReport,
    reports: list[ClientStats],
    usage: dict[str, dict[str, float]],
    machine_busy: float,
    timings: dict[str, float],
) -> dict[str, Any]:
    latencies: list[float] = []
    for report in reports:
        latencies.extend(report.latencies_ms)
    received = sum(report.in_window for report in reports)
    delivered = received / seconds
    published_per_s = publisher.in_window / seconds
    expected = published_per_s * watchers[1]
    server_cores = usage["server"]["cores"]
    client_cores = [v["cores"] for k, v in usage.items() if k.startswith("client-")]
    cpu_count = os.cpu_count() or 1
    closes: dict[str, int] = {}
    for report in reports:
        for code, count in report.server_closes.items():
            closes[str(code)] = closes.get(str(code), 0) + count
    clients_saturated = bool(client_cores) and max(client_cores) >= CLIENT_SATURATED_CORES
    machine_saturated = machine_busy >= 0.95
    # Whatever else ran on the machine meanwhile (another benchmark, a build): noise.
    other_cores = machine_busy * cpu_count - sum(v["cores"] for v in usage.values())
    return {
        "contender": contender,
        "connections": connections,
        "connected": opened[0],
        "failed_connections": opened[1],
        "client_processes": processes,
        "watchers_per_instrument": {"min": watchers[0], "mean": watchers[1], "max": watchers[2]},
        "offered_rate": offered_rate,
        "published_per_s": round(published_per_s, 1),
        "publisher_max_behind_ms": round(publisher.max_behind_ms, 1),
        "publisher_errors": publisher.logged_errors,
        "publisher_error_samples": publisher.errors,
        "expected_deliveries_per_s": round(expected, 1),
        "delivered_per_s": round(delivered, 1),
        "delivery_ratio": round(delivered / expected, 4) if expected else math.nan,
        # Delivered what was offered: otherwise the server (or the clients) ran out of CPU, the
        # delivered rate is its capacity and the latency only says how long it was behind.
        "kept_up": bool(expected) and delivered >= KEPT_UP * expected,
        "server_cores": server_cores,
        "delivered_per_server_core": round(delivered / server_cores, 1) if server_cores > 0 else math.nan,
        # Where a delivery's CPU goes: the kernel's share (the write system call, and on loopback
        # the receiving side's TCP work too) is the same for every server that writes each
        # update to each socket, so the user-space share is what tells the servers apart.
        **cpu_per_delivery_us(usage["server"], delivered),
        "latency_ms": {k: round(v, 3) for k, v in summarize_ms(latencies).items()},
        "update_message_bytes": round(sum(r.in_window_bytes for r in reports) / received, 1)
        if received
        else math.nan,
        "server_peak_rss_mb": usage["server"]["peak_rss_mb"],
        "client_cores": round(sum(client_cores), 3),
        "client_max_process_cores": round(max(client_cores), 3) if client_cores else math.nan,
        "publisher_cores": usage.get("publisher", {}).get("cores", math.nan),
        "redis_cores": usage.get("redis", {}).get("cores", math.nan),
        "machine_busy_cores": round(machine_busy * cpu_count, 3),
        "other_cores": round(max(0.0, other_cores), 3),
        "machine_cores": cpu_count,
        "clients_saturated": clients_saturated,
        "machine_saturated": machine_saturated,
        "conflated_notices": sum(r.conflated_notices for r in reports),
        "conflated_dropped": sum(r.conflated_dropped for r in reports),
        "server_closes": closes,
        "connections_lost": sum(r.lost for r in reports),
        "client_errors": [e for r in reports for e in r.errors][:10],
        "usage": usage,
        "timings_s": timings,
    }


def cpu_per_delivery_us(server: dict[str, float], delivered_per_s: float) -> dict[str, float]:
    """The server's CPU µs per delivered update, in user space and in the kernel."""
    if delivered_per_s <= 0:
        return {"server_user_us_per_delivery": math.nan, "server_kernel_us_per_delivery": math.nan}
    kernel = server.get("kernel_cores", math.nan)
    return {
        "server_user_us_per_delivery": round((server["cores"] - kernel) * 1e6 / delivered_per_s, 2),
        "server_kernel_us_per_delivery": round(kernel * 1e6 / delivered_per_s, 2),
    }


MEDIAN_FIELDS = (
    "delivered_per_s",
    "expected_deliveries_per_s",
    "delivery_ratio",
    "published_per_s",
    "server_cores",
    "delivered_per_server_core",
    "server_user_us_per_delivery",
    "server_kernel_us_per_delivery",
    "server_peak_rss_mb",
    "client_cores",
    "client_max_process_cores",
    "publisher_cores",
    "redis_cores",
    "machine_busy_cores",
    "other_cores",
    "conflated_dropped",
    "connections_lost",
    "update_message_bytes",
)
LATENCY_FIELDS = ("p50", "p99", "p99.9", "max")
RATIO_FIELDS = ("delivered_per_server_core", "delivered_per_s")


def no_nan(value: Any) -> Any:
    """NaN (no data) as None, so that the result is valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: no_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(item) for item in value]
    return value


def progress_line(result: dict[str, Any]) -> str:
    head = f"rep {result['repetition']} {result['contender']:>13} {result['connections']:>5} conns: "
    if "error" in result:
        return head + f"FAILED {result['error']}"
    latency = result["latency_ms"]
    flags = [name for name in ("clients_saturated", "machine_saturated") if result.get(name)]
    if not result.get("kept_up"):
        flags.insert(0, "behind")
    if result.get("other_cores", 0.0) >= NOISY_CORES:
        flags.append(f"other processes {result['other_cores']:.2f} cores")
    return head + (
        f"{result['delivered_per_s']:>9.0f}/s of {result['expected_deliveries_per_s']:.0f}, "
        f"server {result['server_cores']:.2f} cores -> {result['delivered_per_server_core']:.0f}/s per core, "
        f"p50 {latency['p50']:.1f} p99 {latency['p99']:.1f} max {latency['max']:.1f} ms, "
        f"rss {result['server_peak_rss_mb']:.0f} MiB, clients {result['client_cores']:.2f} cores"
        f"{' [' + ', '.join(flags) + ']' if flags else ''} ({result['timings_s']['total_s']:.0f}s)"
    )


def _ok(trials: list[dict[str, Any]], contender: str, count: int) -> list[dict[str, Any]]:
    return [
        t for t in trials if t["contender"] == contender and t["connections"] == count and "error" not in t
    ]


def summarize(
    trials: list[dict[str, Any]], connections: list[int], contenders: Sequence[str]
) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for count in connections:
        row: dict[str, Any] = {}
        for contender in contenders:
            runs = _ok(trials, contender, count)
            if not runs:
                row[contender] = {"trials": 0}
                continue
            medians: dict[str, Any] = {"trials": len(runs)}
            for name in MEDIAN_FIELDS:
                medians[name] = round(median([float(t[name]) for t in runs]), 3)
            medians["latency_ms"] = {
                name: round(median([float(t["latency_ms"][name]) for t in runs]), 3)
                for name in LATENCY_FIELDS
            }
            medians["kept_up_in"] = sum(1 for t in runs if t["kept_up"])
            medians["clients_saturated_in"] = sum(1 for t in runs if t["clients_saturated"])
            medians["machine_saturated_in"] = sum(1 for t in runs if t["machine_saturated"])
            row[contender] = medians
        summary[str(count)] = row
    return summary


def _per_repetition(
    trials: list[dict[str, Any]], contender: str, count: int, repetitions: int
) -> list[dict[str, Any] | None]:
    found: list[dict[str, Any] | None] = [None] * repetitions
    for t in _ok(trials, contender, count):
        found[t["repetition"]] = t
    return found


def ratios_of(
    trials: list[dict[str, Any]], connections: list[int], repetitions: int, contenders: Sequence[str]
) -> dict[str, dict[str, Any]]:
    ratios: dict[str, dict[str, Any]] = {}
    if "dashboard_api" not in contenders:
        return ratios
    for count in connections:
        ours = _per_repetition(trials, "dashboard_api", count, repetitions)
        row: dict[str, Any] = {}
        for peer in (c for c in contenders if c != "dashboard_api"):
            theirs = _per_repetition(trials, peer, count, repetitions)
            entry: dict[str, Any] = {}
            for name in RATIO_FIELDS:
                values = [
                    round(a[name] / b[name], 3) if a and b and b[name] else math.nan
                    for a, b in zip(ours, theirs, strict=True)
                ]
                entry[name] = {"median": round(median(values), 3), "per_repetition": values}
            row[f"dashboard_api/{peer}"] = entry
        ratios[str(count)] = row
    return ratios


def targets_of(
    trials: list[dict[str, Any]], connections: list[int], repetitions: int, contenders: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The issue's targets per connection count, from the medians and median ratios."""
    summary = summarize(trials, connections, contenders)
    ratios = ratios_of(trials, connections, repetitions, contenders)
    targets: dict[str, dict[str, Any]] = {}
    for count in connections:
        ours = summary[str(count)].get("dashboard_api", {})
        if not ours.get("trials"):
            continue
        p99_goal = target_p99_ms(count)
        row: dict[str, Any] = {
            "per_core": ours["delivered_per_server_core"],
            "per_core_ok": ours["delivered_per_server_core"] >= TARGET_PER_CORE,
            "p99_ms": ours["latency_ms"]["p99"],
            "p99_goal_ms": p99_goal,
            "p99_ok": ours["latency_ms"]["p99"] <= p99_goal,
        }
        for peer, goal in (("socketio", TARGET_VS_SOCKETIO), ("centrifugo", TARGET_VS_CENTRIFUGO)):
            ratio = ratios.get(str(count), {}).get(f"dashboard_api/{peer}")
            if ratio is not None:
                value = ratio["delivered_per_server_core"]["median"]
                row[f"vs_{peer}"] = value
                row[f"vs_{peer}_ok"] = value >= goal
        targets[str(count)] = row
    return targets


def environment(fd_limit: int, centrifugo_version: str | None) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    packages: dict[str, str] = {}
    for name in ("python-socketio", "python-engineio", "aiohttp", "uvicorn", "uvloop", "websockets", "redis"):
        with contextlib.suppress(PackageNotFoundError):
            packages[name] = version(name)
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "packages": packages,
        "centrifugo": centrifugo_version,
        "rlimit_nofile": fd_limit,
    }
