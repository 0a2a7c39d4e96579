"""The benchmark's report: results.json (everything), report.md (the tables) and latency.png.

Pure except for writing the files: every figure comes from the results dict, medians over the
repetitions; comparisons are ratios of medians measured in the same run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .measure import median

# The live path's targets (1,000 and 5,000 ticks/s with 100 clients, sustained rate, capacity,
# processor) and the fan-out's; each is reported met or missed with the figure.
TARGETS = {
    "e2e_p50_ms_at_1k": 5.0,
    "e2e_p99_ms_at_1k": 25.0,
    "e2e_p99_ms_at_5k": 50.0,
    "delivered_ratio_at_5k": 0.99,
    "backlog_s_at_5k": 1.0,
    "sustained_rate": 5_000,
    "capacity_rate": 50_000,
    "held_age_p99_ms": 100.0,
    "processor_per_core": 50_000,
    "processor_vs_quix": 1.5,
    "silent_rss_growth_mib": 100.0,
    "silent_healthy_p99_ms": 50.0,
}

# Every step of the slow-client ladder, in the order a client that never reads takes them.
LADDER = ("conflating", "resyncing", "disconnect")


# The pipeline's processes, in the order a tick meets them, for the per-tick CPU figures.
STAGE_ORDER = ("processor", "history_writer", "cache_updater", "dashboard_api", "kafka", "redis")


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def rate_medians(runs: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per offered rate: medians over repetitions of the latency percentiles and throughput."""
    by_rate: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        by_rate.setdefault(run["offered_rate"], []).append(run)
    table = {}
    for rate, group in sorted(by_rate.items()):
        row = {q: median([r["latency_ms"][q] for r in group]) for q in ("p50", "p99", "p99.9", "max")}
        row["delivered_per_s"] = median([r["delivered_per_s"] for r in group])
        row["delivered_ratio"] = median([r["delivered_ratio"] for r in group])
        row["backlog_s"] = median([r["backlog_s"] for r in group])
        row["repetitions"] = len(group)
        for hop in group[0]["hops_ms"]:
            row[f"{hop}.p50"] = median([r["hops_ms"][hop]["p50"] for r in group])
            row[f"{hop}.p99"] = median([r["hops_ms"][hop]["p99"] for r in group])
        for name in group[0]["processes"]:
            row[f"cpu.{name}"] = median(
                [r["processes"][name]["cores"] for r in group if name in r["processes"]]
            )
            row[f"rss.{name}"] = max(
                r["processes"][name]["peak_rss_mb"] for r in group if name in r["processes"]
            )
        table[rate] = row
    return table


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def markdown(results: dict[str, Any]) -> str:
    table = rate_medians(results.get("e2e", {}).get("runs", []))
    sections = (
        _header(results),
        _e2e_section(results.get("e2e", {}), table),
        _legacy_section(results.get("e2e", {}), table),
        _throughput_section(results.get("throughput")),
        _capacity_section(results.get("capacity")),
        _cpu_section(cpu_per_tick_rows(results)),
        _peer_section(results.get("processor"), "Processor capacity (messages/s per core of CPU time)"),
        _peer_section(results.get("fanout"), "Fan-out capacity (delivered updates/s per server core)"),
        _silent_section(results.get("silent")),
        _profile_section(results.get("profile")),
        _targets_section(results, table),
    )
    return "\n".join(line for section in sections for line in section)


def _header(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    return [
        f"# tapewire benchmark ({results['mode']})",
        "",
        f"Run {results['started']} on {machine['cpus']} CPUs, {machine['memory_gib']} GiB, "
        f"{machine['platform']}; Apache Kafka, Redis and PostgreSQL local, everything on the same "
        f"machine. Command: `{results['command']}`. Figures are medians over "
        f"{results['settings']['repetitions']} repetitions; comparisons are ratios measured in the same run."
        + _instances(results["settings"].get("instances", 1)),
        "",
    ]


def _instances(count: int) -> str:
    if count <= 1:
        return ""
    return f" {count} instances each of processor and cache_updater (their CPU is summed per stage)."


def _e2e_section(e2e: dict[str, Any], table: dict[int, dict[str, float]]) -> list[str]:
    if not table:
        return []
    lines = [
        "## End-to-end latency (ingest → WebSocket client)",
        "",
        f"{e2e['clients']} clients × {e2e['per_client']} instruments of {e2e['instruments']}; "
        "the load generator stamps each tick as the ingester would.",
        "",
        "| offered ticks/s | p50 ms | p99 ms | p99.9 ms | max ms | delivered updates/s "
        "| delivered/expected | backlog at end (s of feed) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rate, row in table.items():
        lines.append(
            f"| {rate:,} | {_fmt(row['p50'])} | {_fmt(row['p99'])} | {_fmt(row['p99.9'])} "
            f"| {_fmt(row['max'])} | {_fmt(row['delivered_per_s'])} | {_fmt(row['delivered_ratio'], 2)} "
            f"| {_fmt(row['backlog_s'], 2)} |"
        )
    first = next(iter(table.values()))
    hops = [key[:-4] for key in first if key.endswith(".p50")]
    lines += ["", "### By hop (p50 / p99 ms)", "", "| offered ticks/s | " + " | ".join(hops) + " |"]
    lines.append("|---|" + "---|" * len(hops))
    for rate, row in table.items():
        cells = " | ".join(f"{_fmt(row[h + '.p50'])} / {_fmt(row[h + '.p99'])}" for h in hops)
        lines.append(f"| {rate:,} | {cells} |")
    processes = sorted({key[4:] for row in table.values() for key in row if key.startswith("cpu.")})
    lines += ["", "### Resources (cores busy, median / peak RSS MiB)", ""]
    lines += ["| offered ticks/s | " + " | ".join(processes) + " |", "|---|" + "---|" * len(processes)]
    for rate, row in table.items():
        cells = " | ".join(
            f"{_fmt(row.get('cpu.' + p), 2)} / {_fmt(row.get('rss.' + p), 0)}" for p in processes
        )
        lines.append(f"| {rate:,} | {cells} |")
    return [*lines, ""]


def _legacy_section(e2e: dict[str, Any], table: dict[int, dict[str, float]]) -> list[str]:
    legacy = e2e.get("legacy") or []
    if not legacy:
        return []
    lines = [
        "## Legacy baseline: a relay polling PostgreSQL every second",
        "",
        "| offered ticks/s | design | p50 ms | p99 ms | max ms | versions delivered / expected |",
        "|---|---|---|---|---|---|",
    ]
    for entry in legacy:
        ours = table.get(entry["offered_rate"], {})
        lines.append(
            f"| {entry['offered_rate']:,} | tapewire (WebSocket) | {_fmt(ours.get('p50'))} "
            f"| {_fmt(ours.get('p99'))} | {_fmt(ours.get('max'))} | {_fmt(ours.get('delivered_ratio'), 2)} |"
        )
        latency = entry["latency_ms"]
        lines.append(
            f"| {entry['offered_rate']:,} | PostgreSQL polling | {_fmt(latency['p50'])} "
            f"| {_fmt(latency['p99'])} | {_fmt(latency['max'])} | {_fmt(entry.get('delivered_ratio'), 2)} |"
        )
    return [*lines, ""]


def _throughput_section(steps: dict[str, Any] | None) -> list[str]:
    if not steps:
        return []
    lines = [
        "## Maximum sustainable throughput",
        "",
        f"**{steps['max_sustainable_rate']:,} ticks/s** ({steps['criterion']}).",
        "",
        "| offered ticks/s | achieved | p50 ms | p99 ms | backlog (s) | sustainable |",
        "|---|---|---|---|---|---|",
    ]
    for run in steps["steps"]:
        verdict = "yes" if run["sustainable"] else "no"
        lines.append(
            f"| {run['offered_rate']:,} | {_fmt(run['achieved_rate'])} | {_fmt(run['latency_ms']['p50'])} "
            f"| {_fmt(run['latency_ms']['p99'])} | {_fmt(run['backlog_s'], 2)} | {verdict} |"
        )
    return [*lines, ""]


def us_per_tick(run: dict[str, Any]) -> dict[str, float]:
    """CPU µs per tick of each pipeline process in a run: its cores busy × 10^6 over the ticks/s
    the load generator achieved (NaN without that rate), and their sum as `total`."""
    achieved = run.get("achieved_rate") or 0.0
    cores = grouped_cores(run)
    row = {
        stage: cores[stage] * 1e6 / achieved if achieved > 0 else math.nan
        for stage in STAGE_ORDER
        if stage in cores
    }
    row["total"] = sum(row.values())
    return row


def cpu_per_tick_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """µs per tick per stage for each end-to-end rate (median over repetitions) and each
    capacity step, labelled."""
    by_rate: dict[int, list[dict[str, float]]] = {}
    for run in results.get("e2e", {}).get("runs", []):
        by_rate.setdefault(run["offered_rate"], []).append(us_per_tick(run))
    rows = [
        (f"e2e {rate:,}", {key: median([r[key] for r in group if key in r]) for key in group[0]})
        for rate, group in sorted(by_rate.items())
    ]
    capacity = results.get("capacity") or {}
    for step in capacity.get("steps", []):
        rows.append((f"capacity {step['offered_rate']:,}", us_per_tick(step)))
    return rows


def _cpu_section(rows: list[tuple[str, dict[str, float]]]) -> list[str]:
    if not rows:
        return []
    stages = [stage for stage in (*STAGE_ORDER, "total") if any(stage in row for _, row in rows)]
    lines = [
        "## CPU µs per tick per stage",
        "",
        "Each process's CPU time from the OS over the run (cores busy) × 10^6 / the ticks/s the load "
        "generator achieved. dashboard_api's share also grows with the clients and what they receive, "
        "kafka carries both topics; 10^6 × the machine's cores / total bounds the ticks/s it can carry.",
        "",
        "| run, offered ticks/s | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
    ]
    for label, row in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt(row.get(stage)) for stage in stages) + " |")
    return [*lines, ""]


def grouped_cores(run: dict[str, Any]) -> dict[str, float]:
    """Cores busy per process in a run, the client processes summed as `clients` and the
    instances of a stage (`processor`, `processor-2`, ...) as the stage."""
    cores: dict[str, float] = {}
    for name, usage in run["processes"].items():
        key = process_group(name)
        cores[key] = cores.get(key, 0.0) + usage["cores"]
    return cores


def process_group(name: str) -> str:
    """`clients` for a client process, the stage for an instance of one, else the name."""
    base = name.rsplit("-", 1)[0]
    if base == "clients":
        return "clients"
    return base if base in STAGE_ORDER else name


def _capacity_section(capacity: dict[str, Any] | None) -> list[str]:
    if not capacity or not capacity.get("steps"):
        return []
    steps = capacity["steps"]
    lines = [
        f"## Pipeline capacity (clients at max_rate {capacity['max_rate']:g}/s per instrument)",
        "",
        f"{capacity['clients']} clients × {capacity['per_client']} instruments of "
        f"{capacity['instruments']}, each subscription throttled to {capacity['max_rate']:g} updates/s "
        "per instrument (conflated, the newest state winning), as a desk screen subscribes. "
        f"**{capacity['max_sustained_rate']:,} ticks/s** sustained (achieved by the load generator; "
        f"{capacity['max_sustained_offered']:,} offered); the climb stopped: {capacity['stopped']}. "
        f"Sustained: {capacity['criterion']}.",
        "",
        "- *age at receipt*: receive time − ingest stamp of the newest tick in the state received: "
        "the age of the newest state the client holds when it gets it (the target).",
        "- *age when replaced*: the next receipt of the same instrument − that state's ingest stamp: "
        "how old the held state had grown while newer ones existed upstream; by design the age at "
        "receipt plus the throttle's interval.",
        "- *receipt gap*: time between two receipts of one instrument on one connection (the throttle "
        f"makes it ≈ {1000 / capacity['max_rate']:.0f} ms).",
        "",
        "| offered ticks/s | achieved | backlog s: processor / cache_updater / history_writer "
        "| age at receipt p50 / p99 ms | age when replaced p50 / p99 ms | receipt gap p50 / p99 / max ms "
        "| delivered updates/s | per dashboard_api core | sustained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        lines.append(_capacity_row(step))
    lines += _capacity_cores(steps)
    return [*lines, ""]


def _capacity_row(step: dict[str, Any]) -> str:
    backlog = step["backlog_s_by_stage"]
    age, replaced, gap = step["latency_ms"], step["replaced_age_ms"], step["receipt_gap_ms"]
    verdict = "yes" if step["sustained"] else "no: " + ", ".join(step["reasons"])
    if step["load_short"]:
        verdict += " (load generator short of the offer)"
    backlogs = " / ".join(
        _fmt(backlog.get(stage), 2) for stage in ("processor", "cache_updater", "history_writer")
    )
    return (
        f"| {step['offered_rate']:,} | {_fmt(step['achieved_rate'])} | {backlogs} "
        f"| {_fmt(age['p50'])} / {_fmt(age['p99'])} | {_fmt(replaced['p50'])} / {_fmt(replaced['p99'])} "
        f"| {_fmt(gap['p50'])} / {_fmt(gap['p99'])} / {_fmt(gap['max'])} | {_fmt(step['delivered_per_s'])} "
        f"| {_fmt(delivered_per_api_core(step), 0)} | {verdict} |"
    )


def delivered_per_api_core(step: dict[str, Any]) -> float:
    """Updates delivered per second per core of dashboard_api: the fan-out's cost to clients
    that subscribe as a desk screen does (throttled, conflated), next to the fan-out part's
    clients that take every update."""
    cores = grouped_cores(step).get("dashboard_api", 0.0)
    return step["delivered_per_s"] / cores if cores > 0 else math.nan


def _capacity_cores(steps: list[dict[str, Any]]) -> list[str]:
    cores = [grouped_cores(step) for step in steps]
    names = [name for name in (*STAGE_ORDER, "loadgen", "clients") if any(name in row for row in cores)]
    lines = ["", "Cores busy per process:", "", "| offered ticks/s | " + " | ".join(names) + " |"]
    lines.append("|---|" + "---|" * len(names))
    for step, row in zip(steps, cores, strict=True):
        lines.append(f"| {step['offered_rate']:,} | " + " | ".join(_fmt(row.get(n), 2) for n in names) + " |")
    return lines


def _peer_section(section: dict[str, Any] | None, title: str) -> list[str]:
    if not section or not section.get("markdown"):
        return []
    return [f"## {title}", "", section["markdown"], ""]


def _silent_section(silent: dict[str, Any] | None) -> list[str]:
    if not silent:
        return []
    lines = [
        "## dashboard_api memory with clients that never read",
        "",
        f"{silent['clients']:,} clients ({silent['connected']:,} connected) subscribe and never read, at "
        f"{silent['offered_rate']:,} ticks/s for {silent['seconds']:.0f} s: dashboard_api RSS "
        f"{silent['baseline_rss_mb']:.0f} MiB before, peak {silent['peak_rss_mb']:.0f} MiB. Slow-client "
        f"ladder steps taken: {json.dumps(silent['slow_client_steps'])}.",
    ]
    if healthy := silent.get("healthy"):
        instance, e2e = healthy["cached_to_received_ms"], healthy["e2e_ms"]
        lines.append(
            f"From {healthy['from_s']:g} s, when every silent client was conflating, "
            f"{healthy['connected']} clients that read, on the same instance, received "
            f"{healthy['updates']:,} updates: from Redis's publish to the client p50 "
            f"{_fmt(instance['p50'])} ms, p99 {_fmt(instance['p99'])} ms; end to end p50 "
            f"{_fmt(e2e['p50'])} ms, p99 {_fmt(e2e['p99'])} ms."
        )
    return [*lines, ""]


def _silent_targets(silent: dict[str, Any] | None) -> list[tuple[str, str, str, bool | None]]:
    """Memory bounded and every ladder step taken while clients never read; readers unharmed."""
    if not silent:
        return []
    growth = silent["peak_rss_mb"] - silent["baseline_rss_mb"]
    goal = TARGETS["silent_rss_growth_mib"]
    steps = silent["slow_client_steps"]
    taken = ", ".join(f"{step} {steps.get(step, 0):,.0f}" for step in LADDER)
    rows: list[tuple[str, str, str, bool | None]] = [
        (
            f"dashboard_api RSS growth, {silent['clients']:,} clients that never read",
            f"≤ {goal:g} MiB",
            f"{growth:.0f} MiB",
            growth <= goal,
        ),
        (
            "every slow-client ladder step taken (counted in metrics)",
            "each > 0",
            taken,
            all(steps.get(step, 0) > 0 for step in LADDER),
        ),
    ]
    if healthy := silent.get("healthy"):
        p99 = healthy["cached_to_received_ms"]["p99"]
        goal = TARGETS["silent_healthy_p99_ms"]
        rows.append(
            (
                "a reading client beside them: p99 Redis publish → client",
                f"≤ {goal:g} ms",
                f"{_fmt(p99)} ms",
                p99 <= goal,
            )
        )
    return rows


def _profile_section(profile: dict[str, Any] | None) -> list[str]:
    if not profile or not profile.get("markdown"):
        return []
    return [f"## Profile of the limiting stage: {profile['stage']}", "", profile["markdown"], ""]


def _targets_section(results: dict[str, Any], table: dict[int, dict[str, float]]) -> list[str]:
    lines = ["## Targets", "", "| target | goal | measured | |", "|---|---|---|---|"]
    for name, goal, measured, ok in targets(results, table):
        lines.append(f"| {name} | {goal} | {measured} | {_verdict(ok)} |")
    return [*lines, ""]


def targets(
    results: dict[str, Any], table: dict[int, dict[str, float]]
) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []
    if at1k := table.get(1_000):
        for q, key in (("p50", "e2e_p50_ms_at_1k"), ("p99", "e2e_p99_ms_at_1k")):
            goal = TARGETS[key]
            rows.append(
                (
                    f"e2e {q} at 1k ticks/s, 100 clients",
                    f"≤ {goal:g} ms",
                    f"{_fmt(at1k[q])} ms",
                    at1k[q] <= goal,
                )
            )
    if at5k := table.get(5_000):
        ratio, backlog = at5k["delivered_ratio"], at5k["backlog_s"]
        rows.append(
            (
                "5k ticks/s keeps up (delivered/expected, backlog)",
                f"≥ {TARGETS['delivered_ratio_at_5k']:g}, ≤ {TARGETS['backlog_s_at_5k']:g} s",
                f"{ratio:.2f}, {backlog:.2f} s",
                ratio >= TARGETS["delivered_ratio_at_5k"] and backlog <= TARGETS["backlog_s_at_5k"],
            )
        )
        rows.append(
            (
                "e2e p99 at 5k ticks/s, 100 clients",
                f"≤ {TARGETS['e2e_p99_ms_at_5k']:g} ms",
                f"{_fmt(at5k['p99'])} ms",
                at5k["p99"] <= TARGETS["e2e_p99_ms_at_5k"],
            )
        )
    steps = results.get("throughput")
    if steps:
        best = steps["max_sustainable_rate"]
        goal = TARGETS["sustained_rate"]
        rows.append(
            (
                "sustained end to end, p99 ≤ 100 ms, every version to 100 clients",
                f"≥ {goal:,} ticks/s",
                f"{best:,} ticks/s",
                best >= goal,
            )
        )
    rows += _capacity_targets(results.get("capacity"))
    rows += _silent_targets(results.get("silent"))
    for key in ("processor", "fanout"):
        for row in (results.get(key) or {}).get("targets", []):
            rows.append(tuple(row))  # type: ignore[arg-type]
    return rows


def _capacity_targets(capacity: dict[str, Any] | None) -> list[tuple[str, str, str, bool | None]]:
    """The capacity reached, and the client-held state's age at the target rate (or, if the climb
    stopped below it, at the step where it stopped)."""
    if not capacity or not capacity.get("steps"):
        return []
    best = capacity["max_sustained_rate"]
    goal = TARGETS["capacity_rate"]
    steps = capacity["steps"]
    step = next((s for s in steps if s["offered_rate"] == goal), steps[-1])
    age_p99 = step["latency_ms"]["p99"]
    throttle = f"max_rate {capacity['max_rate']:g}/s"
    # Not even the first step sustained: say below what, not "0".
    reached = f"{best:,} ticks/s" if best else f"< {steps[0]['offered_rate']:,} ticks/s"
    return [
        (
            f"pipeline capacity, clients at {throttle}",
            f"≥ {goal:,} ticks/s",
            reached,
            best >= goal,
        ),
        (
            f"client-held state age p99 (at receipt, {throttle})",
            f"≤ {TARGETS['held_age_p99_ms']:.0f} ms",
            f"{_fmt(age_p99)} ms at {step['offered_rate']:,} ticks/s offered",
            bool(age_p99 <= TARGETS["held_age_p99_ms"]),
        ),
    ]


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = rate_medians(results.get("e2e", {}).get("runs", []))
    figure, axis = plt.subplots(figsize=(8, 5))
    if table:
        rates = list(table)
        for q, style in (("p50", "o-"), ("p99", "s-"), ("p99.9", "^-")):
            axis.plot(rates, [table[r][q] for r in rates], style, label=f"tapewire {q}")
    for entry in results.get("e2e", {}).get("legacy", []) or []:
        for q, marker in (("p50", "o"), ("p99", "s")):
            axis.plot(
                [entry["offered_rate"]],
                [entry["latency_ms"][q]],
                marker,
                color="grey",
                label=f"PostgreSQL polling {q}",
            )
    # Log scales need positive values; a run with nothing delivered has none (NaN).
    if any(value > 0 for line in axis.get_lines() for value in line.get_ydata()):
        axis.set_xscale("log")
        axis.set_yscale("log")
    axis.set_xlabel("offered ticks/s (100 instruments)")
    axis.set_ylabel("end-to-end latency, ms")
    axis.set_title("Latency percentiles vs offered rate")
    axis.grid(True, which="both", alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axis.legend(unique.values(), unique.keys(), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict[str, Any], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / "results.json",
        "markdown": folder / "report.md",
        "plot": folder / "latency.png",
    }
    paths["json"].write_text(json.dumps(results, indent=1, default=str))
    paths["markdown"].write_text(markdown(results))
    plot(results, paths["plot"])
    return paths
