"""One trial (a contender at a connection count), and `run`: every trial, repeated."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from bench.fanout.client_process import ClientSpec, client_process
from bench.fanout.clients import CLIENTS, ClientStats
from bench.fanout.publisher import PublisherReport, publisher_process, sleep_until
from bench.fanout.servers import CONTENDERS, HOST, busy_cores, delete_keys, local_redis_pid, start_server
from bench.fanout.summary import (
    environment,
    no_nan,
    progress_line,
    ratios_of,
    summarize,
    targets_of,
    trial_result,
)
from bench.fdlimit import raise_fd_limit
from bench.measure import ProcessSampler, usage_to_json

WARMUP_S = 2.0
DRAIN_S = 1.5


def instrument_names(count: int) -> list[str]:
    return [f"SYM{i:04d}" for i in range(count)]


def subscriptions(connections: int, names: list[str], per_client: int) -> list[list[str]]:
    """Connection i watches `per_client` consecutive instruments from i * per_client on (mod the
    count): every instrument gets the same number of watchers when the product divides evenly."""
    count = len(names)
    return [[names[(i * per_client + k) % count] for k in range(per_client)] for i in range(connections)]


def default_client_processes(connections: int) -> int:
    return max(1, min(connections, 4, max(2, math.ceil(connections / 500))))


@contextmanager
def _processes(
    targets: list[tuple[Callable[..., None], Any]], name: str
) -> Iterator[list[tuple[Connection, int]]]:
    """Start one spawned process per (function, spec), each with a pipe; stop them all after.
    Yields (pipe, pid) per process."""
    context = multiprocessing.get_context("spawn")
    started: list[tuple[Connection, int]] = []
    processes = []
    try:
        for index, (target, spec) in enumerate(targets):
            parent, child = context.Pipe()
            process = context.Process(target=target, args=(child, spec), name=f"{name}-{index}", daemon=True)
            process.start()
            child.close()
            processes.append(process)
            started.append((parent, process.pid or 0))
        yield started
    finally:
        for pipe, _ in started:
            pipe.close()  # a process still waiting for a command ends on EOF
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()


def _receive(pipe: Connection, timeout_s: float, what: str) -> Any:
    if not pipe.poll(timeout_s):
        raise RuntimeError(f"no answer from {what} within {timeout_s}s")
    return pipe.recv()


def trial(
    contender: str,
    connections: int,
    redis_url: str,
    seconds: float,
    offered_rate: int,
    instruments: int = 100,
    per_client: int = 10,
    client_processes: int | None = None,
) -> dict[str, Any]:
    """One contender at one connection count: see the module doc."""
    started = time.monotonic()
    names = instrument_names(instruments)
    subs = subscriptions(connections, names, per_client)
    watchers = {name: 0 for name in names}
    for sub in subs:
        for name in sub:
            watchers[name] += 1
    mean_watchers = sum(watchers.values()) / len(watchers)
    processes = min(connections, client_processes or default_client_processes(connections))
    server = start_server(contender, redis_url, names, offered_rate)
    timings = {"server_start_s": round(time.monotonic() - started, 2)}
    try:
        path = CLIENTS[contender].PATH
        specs = [
            ClientSpec(contender, HOST, server.port, path, subs[index::processes])
            for index in range(processes)
        ]
        targets: list[tuple[Callable[..., None], Any]] = [(publisher_process, server.publisher)]
        targets += [(client_process, spec) for spec in specs]
        with _processes(targets, f"bench-{contender}") as started_processes:
            publisher_pipe = started_processes[0][0]
            client_pipes = [pipe for pipe, _ in started_processes[1:]]
            _receive(publisher_pipe, 30, "the publisher")
            ready = [_receive(pipe, 120, "a client process") for pipe in client_pipes]
            timings["connect_s"] = round(max(r[4] for r in ready), 2)
            connected = sum(r[1] for r in ready)
            failed = sum(r[2] for r in ready)
            if connected == 0:
                raise RuntimeError(f"no client connected: {[e for r in ready for e in r[3]][:3]}")
            start_ns = time.time_ns() + 200_000_000
            window = (start_ns + int(WARMUP_S * 1e9), start_ns + int((WARMUP_S + seconds) * 1e9))
            end_ns = window[1] + 300_000_000
            for pipe in client_pipes:
                pipe.send(("window", *window))
            publisher_pipe.send(("go", start_ns, window[0], window[1], end_ns))
            pids = {"server": server.pid, "publisher": started_processes[0][1]}
            pids.update({f"client-{i}": pid for i, (_, pid) in enumerate(started_processes[1:])})
            if (redis_pid := local_redis_pid(redis_url)) is not None:
                pids["redis"] = redis_pid
            sleep_until(window[0])
            sampler = ProcessSampler(pids, interval_s=0.25).start()
            machine_before = busy_cores()
            sleep_until(window[1])
            usage = sampler.stop()
            machine_after = busy_cores()
            wall_s = sampler.wall_s
            done = _receive(publisher_pipe, 30 + seconds, "the publisher")
            publisher_report: PublisherReport = done[1]
            time.sleep(DRAIN_S)
            reports: list[ClientStats] = []
            for pipe in client_pipes:
                pipe.send(("report",))
            for pipe in client_pipes:
                reports.append(_receive(pipe, 60, "a client process")[1])
            for pipe in client_pipes:
                pipe.send(("stop",))
            for pipe in client_pipes:
                with contextlib.suppress(RuntimeError, EOFError):
                    _receive(pipe, 15, "a client process")
    finally:
        server.stop()
        delete_keys(redis_url, server.cleanup_pattern)
    timings["total_s"] = round(time.monotonic() - started, 2)
    return trial_result(
        contender,
        connections,
        processes,
        (connected, failed),
        seconds,
        offered_rate,
        (min(watchers.values()), mean_watchers, max(watchers.values())),
        publisher_report,
        reports,
        usage_to_json(usage, wall_s),
        (machine_after[0] - machine_before[0]) / max(1.0, machine_after[1] - machine_before[1]),
        timings,
    )


def run(
    redis_url: str,
    connections: list[int],
    repetitions: int,
    seconds: float,
    offered_rate: int,
    instruments: int = 100,
    per_client: int = 10,
    *,
    contenders: Sequence[str] = CONTENDERS,
    client_processes: int | None = None,
    deliveries_per_s: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every contender at every connection count, `repetitions` times: medians and ratios.

    `deliveries_per_s`, when given, replaces `offered_rate` at each connection count by the
    rate that offers that many deliveries per second (states/s x watchers per instrument), so
    that 100 and 5,000 connections are offered the same fan-out work.

    Within a repetition the contenders run back to back at each connection count, in an order
    that rotates from one repetition to the next; a ratio is taken within a repetition, and
    the median of those is reported (with each repetition's value)."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        raise ValueError(f"unknown contenders {sorted(unknown)}: choose from {', '.join(CONTENDERS)}")
    fd_limit = raise_fd_limit()
    notes: list[str] = []
    if fd_limit < max(connections, default=0) + 512:
        notes.append(f"RLIMIT_NOFILE is {fd_limit}: too low for {max(connections)} connections per server")
    centrifugo_version = None
    if "centrifugo" in contenders:
        from bench.peers import centrifugo

        started = time.monotonic()
        try:
            centrifugo.install()
            centrifugo_version = centrifugo.VERSION
            say(f"centrifugo {centrifugo_version} ready ({time.monotonic() - started:.1f}s)")
        except (centrifugo.CentrifugoError, OSError, subprocess.SubprocessError) as exc:
            contenders = [c for c in contenders if c != "centrifugo"]
            notes.append(f"centrifugo left out: {exc}")
            say(notes[-1])
    trials: list[dict[str, Any]] = []
    for repetition in range(repetitions):
        shift = repetition % len(contenders)
        order = [*contenders[shift:], *contenders[:shift]]
        for count in connections:
            rate = offered_rate
            if deliveries_per_s:
                rate = max(1, round(deliveries_per_s * instruments / (count * per_client)))
            for contender in order:
                try:
                    result = trial(
                        contender,
                        count,
                        redis_url,
                        seconds,
                        rate,
                        instruments,
                        per_client,
                        client_processes,
                    )
                except Exception as exc:  # one failed trial must not lose the others
                    result = {"contender": contender, "connections": count, "error": repr(exc)}
                result["repetition"] = repetition
                trials.append(result)
                say(progress_line(result))
    outcome: dict[str, Any] = no_nan(
        {
            "parameters": {
                "connections": connections,
                "repetitions": repetitions,
                "seconds": seconds,
                "warmup_s": WARMUP_S,
                "offered_rate": offered_rate,
                "deliveries_per_s": deliveries_per_s,
                "instruments": instruments,
                "per_client": per_client,
                "contenders": list(contenders),
            },
            "environment": environment(fd_limit, centrifugo_version),
            "notes": notes,
            "summary": summarize(trials, connections, contenders),
            "ratios": ratios_of(trials, connections, repetitions, contenders),
            "targets": targets_of(trials, connections, repetitions, contenders),
            "trials": trials,
        }
    )
    return outcome
