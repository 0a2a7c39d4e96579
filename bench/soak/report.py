"""The soak's report: report.md (the verdict and a table per sample) and soak.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def markdown(results: dict[str, Any], samples: list[dict[str, Any]]) -> str:
    verdict = results["verdict"]
    word = {True: "**flat**", False: "**not flat**", None: "**no verdict**"}[verdict["flat"]]
    lines = [
        f"# Soak, {results['started']}",
        "",
        f"`{results['command']}`: {results['minutes']:g} minutes at {results['rate']} ticks/s over "
        f"{results['instruments']} instruments (the ingester's simulator), one sample every "
        f"{results['interval_s']:g} s"
        + (f", tracing {results['tracing']:g} of ticks" if results.get("tracing") is not None else "")
        + f". Verdict: {word}"
        + (f" ({verdict['reason']})." if "reason" in verdict else "")
        + (
            f"; the first {verdict['warm_up_samples']} samples are the warm-up."
            if "warm_up_samples" in verdict
            else ""
        ),
        "",
        "| series | after warm-up | at the end | change | flat |",
        "|---|---:|---:|---:|:---:|",
    ]
    for row in verdict["series"]:
        change = "" if row["change_pct"] is None else f"{row['change_pct']:+.1f} %"
        first, last = ("n/a" if v is None else f"{v:g}" for v in (row["first"], row["last"]))
        flat = ("yes" if row["flat"] else "NO") + ("" if row.get("judged", True) else " (server, not judged)")
        lines.append(f"| {row['series']} | {first} | {last} | {change} | {flat} |")
    lines += ["", _cpu_table(samples, verdict.get("warm_up_samples", 0))]
    if verdict.get("exited"):
        lines += ["", f"Services that exited: {verdict['exited']}"]
    if verdict.get("silent_minutes"):
        lines += ["", f"Minutes in which the client received nothing: {verdict['silent_minutes']}"]
    if results.get("traces"):
        counts = ", ".join(f"{service} {count}" for service, count in results["traces"].items())
        lines += ["", f"Traces Jaeger held at the end, by service: {counts}."]
    if results.get("viewer_errors"):
        lines += ["", "Client errors: " + "; ".join(results["viewer_errors"])]
    lines += ["", "![soak](soak.png)", "", "| minute | e2e p50 ms | e2e p99 ms | updates | lag | RSS MiB |"]
    lines.append("|---:|---:|---:|---:|---|---|")
    for s in samples:
        rss = ", ".join(f"{n} {p['rss_mib']:.0f}" for n, p in s["processes"].items())
        lag = ", ".join(f"{g} {v}" for g, v in s["lag"].items())
        e2e = s["e2e_ms"]
        lines.append(
            f"| {s['minute']} | {e2e['p50']:.1f} | {e2e['p99']:.1f} | {e2e['count']} | {lag} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def _cpu_table(samples: list[dict[str, Any]], warm_up: int) -> str:
    """Mean CPU (% of one core) and RSS of each process over the samples after the warm-up."""
    kept = samples[warm_up:] or samples
    names = list(kept[0]["processes"]) if kept else []
    rows = ["| process | CPU, % of a core | RSS MiB |", "|---|---:|---:|"]
    for name in names:
        values = [s["processes"][name] for s in kept if name in s["processes"]]
        cpu = sum(v["cpu_pct"] for v in values) / len(values)
        rss = sum(v["rss_mib"] for v in values) / len(values)
        rows.append(f"| {name} | {cpu:.1f} | {rss:.0f} |")
    return "\n".join(rows)


def plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["minute"] for s in samples]
    names = list(samples[0]["processes"]) if samples else []
    figure, axes = plt.subplots(2, 2, figsize=(13, 8), sharex=True)
    for name in names:
        axes[0][0].plot(minutes, [s["processes"].get(name, {}).get("rss_mib") for s in samples], label=name)
        axes[0][1].plot(minutes, [s["processes"].get(name, {}).get("fds") for s in samples], label=name)
    for group in samples[0]["lag"] if samples else []:
        axes[1][0].plot(minutes, [s["lag"][group] for s in samples], label=group)
    for key in ("p50", "p99"):
        axes[1][1].plot(minutes, [s["e2e_ms"][key] for s in samples], label=key)
    titles = ("resident memory, MiB", "open file descriptors", "consumer lag, records", "end to end, ms")
    for axis, title in zip((a for row in axes for a in row), titles, strict=True):
        axis.set_title(title)
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("minute")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write(results: dict[str, Any], samples: list[dict[str, Any]], folder: Path) -> Path:
    path = folder / "report.md"
    path.write_text(markdown(results, samples))
    plot(samples, folder / "soak.png")
    return path
