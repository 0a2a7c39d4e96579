"""`make bench` (about 16 minutes) and `make bench-quick` (about 4): run every measurement on
this machine and write results/bench/<timestamp>/{results.json,report.md,latency.png}.

    python -m bench [--quick] [--out DIR] [--skip e2e,throughput,capacity,silent,processor,fanout,profile]

Needs the local Apache Kafka, Redis and PostgreSQL (`make infra`; the Tansu fallback broker
is refused, its speed drifts as data accumulates), and for the fan-out peers Go (Centrifugo is
built with `go install`). Every part is independent: one that fails is recorded as an error in
the report and the others still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from tools.devstack import env_vars

from . import report
from .capacity import CapacitySettings, capacity_search
from .e2e import E2ESettings, fixed_rates, latency_run, silent_clients, step_search, warm_up
from .fanout.summary import TARGET_VS_CENTRIFUGO, TARGET_VS_SOCKETIO
from .profile import profile, render_markdown
from .stack import RunningStack, running_stack

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("e2e", "throughput", "capacity", "silent", "profile", "processor", "fanout")


@dataclass(frozen=True)
class Plan:
    e2e: E2ESettings
    capacity: CapacitySettings
    processor_messages: int
    processor_repetitions: int
    fanout_connections: tuple[int, ...]
    fanout_repetitions: int
    fanout_seconds: float
    # The same deliveries/s offered at every connection count, so the counts are comparable.
    fanout_deliveries: int
    profile_seconds: float


FULL = Plan(
    e2e=E2ESettings(),
    capacity=CapacitySettings(),
    processor_messages=50_000,
    processor_repetitions=3,
    fanout_connections=(100, 1_000, 5_000, 10_000),
    fanout_repetitions=3,
    fanout_seconds=5.0,
    fanout_deliveries=40_000,
    profile_seconds=8.0,
)
QUICK = Plan(
    e2e=replace(
        E2ESettings(),
        rates=(1_000, 5_000),
        step_rates=(250, 1_000, 5_000),
        seconds=5.0,
        step_seconds=4.0,
        warmup_s=1.0,
        repetitions=1,
        silent_clients=300,
        silent_seconds=10.0,
    ),
    capacity=CapacitySettings(rates=(10_000, 25_000, 50_000), seconds=5.0),
    processor_messages=20_000,
    processor_repetitions=1,
    # The full run's connection counts but 10,000 (held connections are slow to open and close).
    fanout_connections=(100, 1_000, 5_000),
    fanout_repetitions=1,
    fanout_seconds=4.0,
    fanout_deliveries=40_000,
    profile_seconds=4.0,
)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"Python {platform.python_version()}",
    }


def limiting_stage(results: dict[str, Any]) -> str:
    """The pipeline stage busiest at the highest rate measured: the one to profile."""
    runs = results.get("throughput", {}).get("steps") or results.get("e2e", {}).get("runs") or []
    if not runs:
        return "processor"
    top = max(runs, key=lambda run: run["offered_rate"])
    stages = ("processor", "cache_updater", "dashboard_api")
    return max(stages, key=lambda name: top["processes"].get(name, {}).get("cores", 0.0))


def profile_stage(stack: RunningStack, stage: str, plan: Plan) -> dict[str, Any]:
    """py-spy on `stage` while the suite carries the highest rate it sustained (or 5k/s)."""
    import threading

    rate = 5_000
    settings = replace(plan.e2e, warmup_s=1.0)
    rows: list[dict[str, Any]] = []

    def sample() -> None:
        time.sleep(3.0)
        rows.extend(profile(stack.pids()[stage], plan.profile_seconds))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    latency_run(stack, rate, plan.profile_seconds + 4.0, settings)
    thread.join(30)
    return {"stage": stage, "offered_rate": rate, "rows": rows, "markdown": render_markdown(rows)}


def _processor_section(result: dict[str, Any]) -> dict[str, Any]:
    contenders = result["contenders"]
    lines = [
        f"{result['messages']:,} ticks over {result['instruments']} instruments preloaded; CPU from the "
        "first output record to the last, from the OS. Same enrichment code in each (tapewire's pure rules).",
        "",
        "| processor | guarantee | msgs/s per core | wall msgs/s | cores | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in contenders.items():
        m = entry["median"]
        lines.append(
            f"| {name} | {entry['guarantee']} | {m['msgs_per_core_s']:,.0f} | {m['msgs_per_s']:,.0f} "
            f"| {m['cores']:.2f} | {m['peak_rss_mb']:.0f} |"
        )
    lines.append("")
    for pair, ratio in result["ratios"].items():
        lines.append(f"- {pair}: {ratio['msgs_per_core_s']:.2f}× per core ({ratio['msgs_per_s']:.2f}× wall)")
    ours = contenders["tapewire"]["median"]["msgs_per_core_s"]
    ratio = result["ratios"].get("tapewire/quix", {}).get("msgs_per_core_s", float("nan"))
    return {
        "result": result,
        "markdown": "\n".join(lines),
        "targets": [
            [
                "processor msgs/s per core, exactly-once",
                f"≥ {report.TARGETS['processor_per_core']:,}",
                f"{ours:,.0f}",
                ours >= report.TARGETS["processor_per_core"],
            ],
            [
                "processor vs Quix Streams, per core",
                "≥ 1.5×",
                f"{ratio:.2f}×",
                ratio >= report.TARGETS["processor_vs_quix"],
            ],
        ],
    }


def _fanout_section(result: dict[str, Any]) -> dict[str, Any]:
    lines = [
        "The same updates (about 1 KB of JSON each) published through each server's own path, "
        f"{result['parameters'].get('per_client', 10)} instruments per connection; delivered updates/s "
        "per core of the server process's CPU time (clients, publisher and Redis reported apart), "
        "and that CPU per update delivered, in user space and in the kernel (the write system "
        "call, and on loopback the receiving socket's TCP work: a floor every server here pays).",
        "",
        "| connections | server | delivered/s | of offered | server cores | per core "
        "| µs per update: user / kernel | p50 ms | p99 ms | kept up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for count, row in result["summary"].items():
        for name, entry in row.items():
            if not entry.get("trials"):
                lines.append(f"| {int(count):,} | {name} | failed | | | | | | | |")
                continue
            latency = entry["latency_ms"]
            lines.append(
                f"| {int(count):,} | {name} | {entry['delivered_per_s']:,.0f} "
                f"| {entry['delivery_ratio']:.2f} | {entry['server_cores']:.2f} "
                f"| {entry['delivered_per_server_core']:,.0f} "
                f"| {entry.get('server_user_us_per_delivery', math.nan):.1f} / "
                f"{entry.get('server_kernel_us_per_delivery', math.nan):.1f} "
                f"| {latency['p50']:.1f} | {latency['p99']:.1f} "
                f"| {entry['kept_up_in']}/{entry['trials']} |"
            )
    lines.append("")
    for count, pairs in result["ratios"].items():
        for pair, ratio in pairs.items():
            per_core = ratio["delivered_per_server_core"]["median"]
            lines.append(f"- {int(count):,} connections, {pair}: {per_core:.2f}× per core")
    targets: list[list[Any]] = []
    for count, row in result["targets"].items():
        label = f"{int(count):,} conns"
        targets.append(
            [f"dashboard_api per core, {label}", "≥ 40,000/s", f"{row['per_core']:,.0f}", row["per_core_ok"]]
        )
        p99 = [f"dashboard_api p99, {label}", f"≤ {row['p99_goal_ms']:g} ms", f"{row['p99_ms']:.1f} ms"]
        targets.append([*p99, row["p99_ok"]])
        for peer, goal in (("socketio", TARGET_VS_SOCKETIO), ("centrifugo", TARGET_VS_CENTRIFUGO)):
            if f"vs_{peer}" in row:
                targets.append(
                    [
                        f"dashboard_api vs {peer} per core, {label}",
                        f"≥ {goal:g}×",
                        f"{row[f'vs_{peer}']:.2f}×",
                        row[f"vs_{peer}_ok"],
                    ]
                )
    return {"result": result, "markdown": "\n".join(lines), "targets": targets}


def _processor(stack_env: dict[str, str], plan: Plan) -> dict[str, Any]:
    from .processor_capacity import run

    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    return _processor_section(run(bootstrap, plan.processor_messages, plan.processor_repetitions))


def _fanout(stack_env: dict[str, str], plan: Plan) -> dict[str, Any]:
    from .fanout import run

    result = run(
        stack_env["REDIS_URL"],
        list(plan.fanout_connections),
        plan.fanout_repetitions,
        plan.fanout_seconds,
        0,
        deliveries_per_s=plan.fanout_deliveries,
        progress=lambda line: print(f"  {line}", flush=True),
    )
    return _fanout_section(result)


def _run_part(results: dict[str, Any], name: str, work: Callable[[], Any]) -> None:
    started = time.monotonic()
    print(f"[bench] {name} …", flush=True)
    try:
        results[name] = work()
    except Exception as error:  # one failing part must not lose the others
        results.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"
        traceback.print_exc()
    print(f"[bench] {name} done in {time.monotonic() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about 4 minutes instead of about 13")
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default results/bench/<time>)"
    )
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {','.join(PARTS)}")
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        choices=range(1, 7),
        metavar="N",
        help="processor and cache_updater instances (default 1; at most the 6 partitions)",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    started = dt.datetime.now(dt.UTC)
    out = args.out or ROOT / "results" / "bench" / started.strftime("%Y%m%dT%H%M%SZ")
    stack_env = env_vars()
    if "tansu" in stack_env.get("KAFKA_BOOTSTRAP_SERVERS", "").lower():
        sys.exit("bench: refusing the Tansu fallback broker; run Apache Kafka (make infra)")
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": started.isoformat(timespec="seconds"),
        "command": "make bench-quick" if args.quick else "make bench",
        "argv": shlex.join(sys.argv),
        "machine": machine(),
        "settings": {"repetitions": plan.e2e.repetitions, "instances": args.instances, **asdict(plan)},
    }
    wall = time.monotonic()
    with running_stack(stack_env, out / "logs", instances=args.instances) as stack:
        _run_part(results, "warmup", lambda: warm_up(stack, plan.e2e))
        if "warmup" in results.get("errors", {}):
            # A suite that cannot carry the warm-up would only produce figures that mean nothing.
            skip |= {"e2e", "throughput", "capacity", "silent", "profile"}
        results["e2e"] = {
            "clients": plan.e2e.clients,
            "per_client": plan.e2e.per_client,
            "instruments": plan.e2e.instruments,
        }
        if "e2e" not in skip:
            _run_part(results, "e2e_runs", lambda: fixed_rates(stack, plan.e2e))
            runs = results.pop("e2e_runs", [])
            results["e2e"]["runs"] = runs
            results["e2e"]["legacy"] = [run["legacy"] for run in runs if "legacy" in run]
        if "throughput" not in skip:
            _run_part(results, "throughput", lambda: step_search(stack, plan.e2e))
        if "capacity" not in skip:
            _run_part(results, "capacity", lambda: capacity_search(stack, plan.e2e, plan.capacity))
        if "silent" not in skip:
            _run_part(results, "silent", lambda: silent_clients(stack, plan.e2e))
        if "profile" not in skip:
            stage = limiting_stage(results)
            _run_part(results, "profile", lambda: profile_stage(stack, stage, plan))
    if "processor" not in skip:
        _run_part(results, "processor", lambda: _processor(stack_env, plan))
    if "fanout" not in skip:
        _run_part(results, "fanout", lambda: _fanout(stack_env, plan))
    results["wall_s"] = round(time.monotonic() - wall, 1)
    paths = report.write(results, out)
    print(f"\n[bench] {results['wall_s']:.0f} s; report: {paths['markdown']}\n", flush=True)
    print(paths["markdown"].read_text())


if __name__ == "__main__":
    main()
