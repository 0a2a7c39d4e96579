"""`python -m bench.soak`: see the package's docstring."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from confluent_kafka import KafkaException

from bench.measure import cpu_seconds, summarize_ms
from bench.ready import wait_http_ok
from bench.stack import STAGES, RunningStack, running_stack
from services.ingester.sources.simulator import instrument_names
from tools.devstack import env_vars
from tools.devstack.jaeger import JaegerPorts
from tools.isolation import free_port
from tools.suite import Suite

from . import report
from .verdict import judge
from .viewer import Viewer

ROOT = Path(__file__).resolve().parents[2]


class Sampler:
    """One sample a minute: memory, descriptors and CPU of every process, lag of every group."""

    def __init__(self, stack: RunningStack) -> None:
        self._stack = stack
        self._processes = {name: psutil.Process(pid) for name, pid in stack.pids().items()}
        self._cpu = {name: cpu_seconds(p) for name, p in self._processes.items()}
        self._at = time.monotonic()

    def sample(self, minute: float, latencies_ms: list[float]) -> dict[str, Any]:
        now = time.monotonic()
        elapsed, self._at = now - self._at, now
        processes: dict[str, dict[str, float]] = {}
        for name, process in self._processes.items():
            try:
                cpu = cpu_seconds(process)
                processes[name] = {
                    "rss_mib": round(process.memory_info().rss / 2**20, 1),
                    "fds": process.num_fds(),
                    "cpu_pct": round(100 * (cpu - self._cpu[name]) / elapsed, 1),
                }
                self._cpu[name] = cpu
            except psutil.Error:
                continue  # gone: `exited` says so
        return {
            "minute": minute,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "processes": processes,
            "lag": self._lag(),
            "e2e_ms": {k: round(v, 2) for k, v in summarize_ms(latencies_ms).items()},
            "exited": self._stack.suite.exited(),
        }

    def _lag(self) -> dict[str, int | None]:
        """Each group's lag; None for all when the broker did not answer in time this minute."""
        try:
            return dict(self._stack.backlog())
        except KafkaException:
            return dict.fromkeys(("processor", "cache_updater", "history_writer"))


@contextmanager
def jaeger_for(out: Path) -> Iterator[JaegerPorts]:
    """A Jaeger of the run's own (tools/devstack/jaeger.py); yields its ports."""
    from tools.devstack.jaeger import ensure_jaeger

    ports = JaegerPorts(free_port(), free_port(), free_port(), free_port())
    suite = Suite(env={}, log_dir=out / "logs", services=())
    process = suite.start_jaeger(ensure_jaeger(), ports, out / "jaeger")
    try:
        wait_http_ok(f"http://127.0.0.1:{ports.health}/status", 30, lambda: process.poll() is None, "jaeger")
        yield ports
    finally:
        suite.stop()


def traces_received(ports: JaegerPorts) -> dict[str, int]:
    """How many traces Jaeger holds with a span of each service: proof that spans were exported."""
    counts = {}
    for service in ("ingester", "processor", "cache_updater", "dashboard_api"):
        reply = httpx.get(
            f"{ports.query_url}/api/traces",
            params={"service": service, "limit": 20_000, "lookback": "2h"},  # below its max_traces
            timeout=60,
        )
        counts[service] = len(reply.json().get("data") or []) if reply.status_code == 200 else -1
    return counts


def soak(
    minutes: float, rate: int, instruments: int, interval_s: float, out: Path, tracing: float | None = None
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    extra = {"INGESTER_RATE": str(rate), "INGESTER_INSTRUMENTS": str(instruments)}
    if tracing is None:
        return _soak(minutes, instruments, interval_s, out, extra)
    with jaeger_for(out) as ports:
        extra["TRACING_OTLP_ENDPOINT"] = ports.otlp_endpoint
        extra["TRACING_SAMPLE_RATIO"] = str(tracing)
        run = _soak(minutes, instruments, interval_s, out, extra)
        time.sleep(6)  # the services' last spans: exported at shutdown, batched by Jaeger
        return {**run, "traces": traces_received(ports)}


def _soak(
    minutes: float, instruments: int, interval_s: float, out: Path, extra: dict[str, str]
) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    with running_stack(env_vars(), out / "logs", extra, services=("ingester", *STAGES)) as stack:
        viewer = Viewer(stack.ws_url, instrument_names(instruments)).start()
        sampler = Sampler(stack)
        started = time.monotonic()
        try:
            with (out / "samples.jsonl").open("w") as sink:
                for index in range(1, int(minutes * 60 / interval_s) + 1):
                    time.sleep(max(0.0, started + index * interval_s - time.monotonic()))
                    sample = sampler.sample(round(index * interval_s / 60, 2), viewer.take())
                    samples.append(sample)
                    sink.write(json.dumps(sample) + "\n")
                    sink.flush()
                    _print(sample)
        finally:
            viewer.stop()
    return {"samples": samples, "viewer_errors": viewer.errors[-10:]}


def _print(sample: dict[str, Any]) -> None:
    rss = " ".join(f"{n}={p['rss_mib']:.0f}" for n, p in sample["processes"].items())
    e2e = sample["e2e_ms"]
    print(
        f"[soak] {sample['minute']:>6g} min: p50 {e2e['p50']:.1f} p99 {e2e['p99']:.1f} ms "
        f"({e2e['count']} updates) lag {sample['lag']} rss MiB {rss}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=1000, help="ticks per second from the simulator")
    parser.add_argument("--instruments", type=int, default=50)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument(
        "--tracing",
        type=float,
        default=None,
        metavar="RATIO",
        help="trace this share of ticks, exported to a Jaeger of the run's own (default: tracing off)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default results/soak/<time>")
    parser.add_argument(
        "--report", type=Path, default=None, help="judge a finished soak's folder again (its samples.jsonl)"
    )
    args = parser.parse_args(argv)
    if args.report is not None:
        return rejudge(args.report)
    started = dt.datetime.now(dt.UTC)
    out = args.out or ROOT / "results" / "soak" / started.strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench.soak", *(argv or sys.argv[1:])]),
        "started": started.isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "rate": args.rate,
        "instruments": args.instruments,
        "interval_s": args.interval,
        "tracing": args.tracing,
        "verdict": None,
    }
    # Written first, so that a run cut short can still be judged (`--report`) from its samples.
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.json").write_text(json.dumps(results, indent=2) + "\n")
    run = soak(args.minutes, args.rate, args.instruments, args.interval, out, args.tracing)
    extras = {key: run[key] for key in ("viewer_errors", "traces") if key in run}
    return finish({**results, **extras}, run["samples"], out)


def finish(results: dict[str, Any], samples: list[dict[str, Any]], out: Path) -> int:
    """Judge, write verdict.json, report.md and soak.png, print the report; the exit code."""
    results = {**results, "verdict": judge(samples, results["rate"])}
    (out / "verdict.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = report.write(results, samples, out)
    print(markdown.read_text())
    return 0 if results["verdict"]["flat"] else 1


def rejudge(out: Path) -> int:
    """The report of a finished soak, from its samples and run settings, by today's rule."""
    results = json.loads((out / "verdict.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line]
    return finish(results, samples, out)


if __name__ == "__main__":
    sys.exit(main())
