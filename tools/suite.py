"""Run tapewire's services and its web dashboard as separate processes, and keep them running:
`make run` and the end-to-end and browser tests.

    python -m tools.suite            # what `make run` runs after setting up

Starts the local servers unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL / DATABASE_URL point
elsewhere, creates the topics, migrates PostgreSQL, starts every service in SERVICES, then the
Next.js dashboard (`next start`, built by `make run`), each logging to its own file, prints the
dashboard's address and supervises them, as compose's `restart: unless-stopped` would: a
process that exits, for whatever reason and with whatever code, is started again with exactly
the command and environment it was first given, after a delay that doubles with each quick
failure (1 s up to 30 s; back to 1 s once it has stayed up for 60 s). Each restart is reported
on stderr and counted; the other processes keep serving. Only Ctrl-C (or SIGTERM) stops the
suite: gracefully, then forcefully after a deadline.

`RestartPolicy` decides the delays and counts the restarts (pure: the caller passes the time);
`Supervisor` watches a `Suite`'s processes and restarts them; `supervise` is its loop.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tools.devstack.jaeger import JaegerPorts

ROOT = Path(__file__).resolve().parent.parent
# Start order: consumers first so nothing the ingester publishes waits for a group to form.
SERVICES = ("processor", "history_writer", "cache_updater", "dashboard_api", "ingester")
# The Next.js front end: not a Python service, started with its own command.
DASHBOARD = "dashboard"
DASHBOARD_DIR = ROOT / "dashboard"
DASHBOARD_BUILT = DASHBOARD_DIR / ".next" / "BUILD_ID"
# Optional (`--prometheus`): a Prometheus scraping the suite with the project's rules.
PROMETHEUS = "prometheus"
# Optional (`--jaeger`): Jaeger receiving the services' traces (tapewire/tracing.py).
JAEGER = "jaeger"
# `next start` closes its server on SIGTERM and then exits with 128 + 15 on purpose.
NEXT_STOPPED_BY_SIGTERM = 143


@dataclass(frozen=True)
class Launch:
    """How an instance was started. A restart runs exactly this again: the environment is the
    one merged at the first start, so a later change to the suite's own cannot leak in."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]


@dataclass
class Suite:
    """The services as child processes sharing one environment."""

    env: Mapping[str, str]
    log_dir: Path
    services: tuple[str, ...] = SERVICES
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    launches: dict[str, Launch] = field(default_factory=dict)
    # Set by stop(): from then on nothing is restarted. The lock makes a restart on another
    # thread (the supervisor's) either finish before stop() looks at the processes, or not happen.
    stopping: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def start(self) -> Suite:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.services:
            self.start_service(name)
        return self

    def start_service(
        self, name: str, extra_env: Mapping[str, str] | None = None, instance: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `services.<name>` as the process called `instance` (default: the name itself).

        Starting an instance that already exists replaces its entry (after a kill, say); its
        log file is appended to.
        """
        instance = instance or name
        return self._spawn(instance, [sys.executable, "-m", f"services.{name}"], ROOT, extra_env)

    def start_dashboard(
        self, port: int, api_url: str, extra_env: Mapping[str, str] | None = None, instance: str = DASHBOARD
    ) -> subprocess.Popen[bytes]:
        """`next start` of the built dashboard on `port`, rendering from dashboard_api at `api_url`."""
        if not DASHBOARD_BUILT.exists():
            raise FileNotFoundError(
                f"{DASHBOARD_BUILT} is missing: build the dashboard first (make dashboard)"
            )
        env = {"TAPEWIRE_API_URL": api_url, "NEXT_TELEMETRY_DISABLED": "1", **(extra_env or {})}
        next_bin = DASHBOARD_DIR / "node_modules" / ".bin" / "next"
        return self._spawn(instance, [str(next_bin), "start", "-p", str(port)], DASHBOARD_DIR, env)

    def start_prometheus(
        self, binary: str, port: int, data_dir: Path, interval_s: float = 15.0, instance: str = PROMETHEUS
    ) -> subprocess.Popen[bytes]:
        """A Prometheus on `port` scraping this suite's services every `interval_s`, with the
        rules of deploy/prometheus/rules (tools/monitoring.py); supervised like the rest."""
        from tools import monitoring

        config = monitoring.scrape_config(self.services, {**os.environ, **self.env}, interval_s)
        path = monitoring.write_config(data_dir / "prometheus.yml", config)
        return self._spawn(instance, monitoring.command(binary, path, data_dir / "data", port), ROOT, None)

    def start_jaeger(self, binary: Path, ports: JaegerPorts, data_dir: Path) -> subprocess.Popen[bytes]:
        """Jaeger on `ports` (tools/devstack/jaeger.py), spans in memory; supervised like the rest.
        Start it before the services, whose TRACING_OTLP_ENDPOINT names its OTLP port."""
        from tools.devstack import jaeger

        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / "jaeger.yaml"
        path.write_text(jaeger.config(ports))
        return self._spawn(JAEGER, jaeger.jaeger_command(binary, path), ROOT, None)

    def restart(self, instance: str) -> subprocess.Popen[bytes] | None:
        """Start `instance` again with the very command, directory and environment of its last
        start (its log file is appended to); None, and nothing started, once the suite stops."""
        with self._lock:
            return None if self.stopping else self._launch(instance, self.launches[instance])

    def _spawn(
        self, instance: str, argv: list[str], cwd: Path, extra_env: Mapping[str, str] | None
    ) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env, **(extra_env or {})}
        return self._launch(instance, Launch(tuple(argv), cwd, env))

    def _launch(self, instance: str, launch: Launch) -> subprocess.Popen[bytes]:
        # The child keeps its own copy of the log's descriptor; the suite's is closed at once, so
        # that restarting an instance all day long does not pile up open files.
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{instance}.log").open("ab") as log:
            process = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env=dict(launch.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal reaches only the suite, which then
                # stops the services in order rather than all at once.
                start_new_session=True,
            )
        self.processes[instance] = process
        self.launches[instance] = launch
        return process

    def exited(self) -> dict[str, int]:
        """Services that have ended, with their exit codes."""
        return {name: code for name, p in self.processes.items() if (code := p.poll()) is not None}

    def stop(self, timeout_s: float = 30.0) -> dict[str, int]:
        """SIGTERM each service, the feed first so the later stages can drain what it sent;
        SIGKILL whatever is still running when the deadline passes."""
        with self._lock:
            self.stopping = True
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int] = {}
        for name in sorted(self.processes, key=_stop_order):
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                codes[name] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
            if name.split("-", 1)[0] == DASHBOARD and codes[name] == NEXT_STOPPED_BY_SIGTERM:
                codes[name] = 0
        return codes

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _stop_order(instance: str) -> int:
    """The front end and the feed first, then each stage in pipeline order, Prometheus and
    Jaeger last (they see the others stop, and take their last spans); `processor-2` sorts with
    `processor`."""
    order = (DASHBOARD, *SERVICES[::-1], PROMETHEUS, JAEGER)
    service = instance.split("-", 1)[0]
    return order.index(service) if service in order else len(order)


@dataclass(frozen=True)
class RestartDelays:
    """The delays between restarts of one instance: `initial_s`, times `factor` after each quick
    failure, at most `max_s`. An instance that stayed up for `reset_after_s` has recovered: its
    next failure waits `initial_s` again."""

    initial_s: float = 1.0
    max_s: float = 30.0
    factor: float = 2.0
    reset_after_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.initial_s <= self.max_s:
            raise ValueError(f"need 0 <= initial_s <= max_s, got {self.initial_s} and {self.max_s}")
        if self.factor < 1 or self.reset_after_s < 0:
            raise ValueError(
                f"need factor >= 1 and reset_after_s >= 0, got {self.factor} and {self.reset_after_s}"
            )


class RestartPolicy:
    """When to restart each instance, and how many times it was: pure, with no clock and no
    processes of its own. The caller says when an instance started and when it exited."""

    def __init__(self, delays: RestartDelays | None = None) -> None:
        self.delays = delays or RestartDelays()
        self._started_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}  # quick failures in a row, while below the cap
        self._restarts: Counter[str] = Counter()

    def started(self, instance: str, now: float) -> None:
        """`instance` started at `now`: a first start, or one that was not a restart of ours."""
        self._started_at[instance] = now

    def restarted(self, instance: str, now: float) -> None:
        """`instance` was restarted at `now` after a delay this policy gave: counted."""
        self.started(instance, now)
        self._restarts[instance] += 1

    def exited(self, instance: str, now: float) -> float:
        """`instance` exited at `now`: the seconds to wait before starting it again."""
        delays = self.delays
        up_s = now - self._started_at.get(instance, now)
        failures = 0 if up_s >= delays.reset_after_s else self._failures.get(instance, 0)
        delay = min(delays.max_s, delays.initial_s * delays.factor**failures)
        # Once at the cap the count stops growing, so factor**failures never overflows.
        self._failures[instance] = failures + 1 if delay < delays.max_s else failures
        return delay

    def restarts(self, instance: str) -> int:
        return self._restarts[instance]

    def counts(self) -> dict[str, int]:
        """Restarts so far of every instance restarted at least once."""
        return dict(self._restarts)


def describe_exit(code: int) -> str:
    """`exit code 1`, or `killed by SIGKILL` for Popen's negative codes."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Supervisor:
    """Restarts the processes of `suite` that exit, when `policy` says, until the suite stops.

    An instance is watched from the first time the supervisor sees it, so one started later
    (by a test, say) is supervised too; a process put in place by someone else counts as a
    start, not as one of the supervisor's restarts.
    """

    def __init__(
        self,
        suite: Suite,
        policy: RestartPolicy,
        clock: Callable[[], float] = time.monotonic,
        report: Callable[[str], None] = _to_stderr,
    ) -> None:
        self._suite = suite
        self._policy = policy
        self._clock = clock
        self._report = report
        self._seen: dict[str, subprocess.Popen[bytes]] = {}
        self._due: dict[str, float] = {}  # instance -> when to restart it

    def tick(self) -> None:
        """Notice new processes and exits, then restart whatever is due."""
        now = self._clock()
        for instance, process in list(self._suite.processes.items()):
            self._observe(instance, process, now)
        for instance in sorted(i for i, due in self._due.items() if due <= now):
            self._restart(instance, now)

    def _observe(self, instance: str, process: subprocess.Popen[bytes], now: float) -> None:
        if self._seen.get(instance) is not process:
            self._seen[instance] = process
            self._due.pop(instance, None)
            self._policy.started(instance, now)
        elif instance not in self._due and (code := process.poll()) is not None:
            delay = self._policy.exited(instance, now)
            self._due[instance] = now + delay
            restart = self._policy.restarts(instance) + 1
            self._report(
                f"suite: {instance} (pid {process.pid}) ended, {describe_exit(code)}; "
                f"restart #{restart} in {delay:.1f} s"
            )

    def _restart(self, instance: str, now: float) -> None:
        del self._due[instance]
        try:
            process = self._suite.restart(instance)
        except OSError as exc:
            # A start that failed at once: the next try waits longer, as after a quick exit.
            self._policy.started(instance, now)
            delay = self._policy.exited(instance, now)
            self._due[instance] = now + delay
            self._report(f"suite: cannot restart {instance}: {exc}; trying again in {delay:.1f} s")
            return
        if process is None:  # the suite is stopping
            return
        self._seen[instance] = process
        self._policy.restarted(instance, now)
        self._report(f"suite: {instance} restarted (pid {process.pid})")


class StopFlag(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...


class SignalStop:
    """A stop that SIGINT and SIGTERM set: a plain attribute, no lock. A handler runs between two
    bytecodes of the main thread, which may be inside a threading.Event's own lock, and
    Event.set there never returned: two Ctrl-C (or a Ctrl-C and a SIGTERM) in a row hung the
    suite with every service still running."""

    def __init__(self) -> None:
        self.requested = False

    def request(self, _signum: int, _frame: object) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested

    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)  # a signal ends the handler, then the rest of the sleep: <= timeout
        return self.requested


def supervise(
    suite: Suite,
    stop: StopFlag,
    policy: RestartPolicy | None = None,
    interval_s: float = 0.5,
    report: Callable[[str], None] = _to_stderr,
) -> None:
    """Keep `suite`'s processes running until `stop` is set; `policy` says when to restart."""
    supervisor = Supervisor(suite, policy or RestartPolicy(), report=report)
    while not stop.is_set():
        supervisor.tick()
        stop.wait(interval_s)


def prepare(env: Mapping[str, str]) -> None:
    """Create topics and migrate PostgreSQL with the settings the services will read."""
    merged = {**os.environ, **env}
    for module in ("tapewire.topics", "tapewire.db.migrate"):
        subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=merged, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".local" / "logs")
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="also run a Prometheus (Debian's package, installed if missing) scraping the suite "
        "with deploy/prometheus/rules, on PROMETHEUS_PORT (default 19090)",
    )
    parser.add_argument(
        "--jaeger",
        action="store_true",
        help="also run Jaeger (built from the Go module proxy if missing) and send it the services' "
        "traces, of one tick in a hundred unless TRACING_SAMPLE_RATIO says otherwise; its API on JAEGER_PORT "
        "(default 16686)",
    )
    args = parser.parse_args()

    from tools.devstack import ensure_up

    env = ensure_up()
    prepare(env)
    jaeger_ports = None
    if args.jaeger:
        from tools.devstack.jaeger import JaegerPorts

        query = int(os.environ.get("JAEGER_PORT", "16686"))
        jaeger_ports = JaegerPorts(otlp_grpc=14317, query_http=query, query_grpc=query - 1, health=14133)
        # A demo: trace a tick in a hundred unless told otherwise (production's default is 1 in 1,000).
        env = {
            "TRACING_OTLP_ENDPOINT": jaeger_ports.otlp_endpoint,
            "TRACING_SAMPLE_RATIO": os.environ.get("TRACING_SAMPLE_RATIO", "0.01"),
            **env,
        }
    suite = Suite(env=env, log_dir=args.log_dir)
    if jaeger_ports is not None:
        from tools.devstack.jaeger import ensure_jaeger

        suite.start_jaeger(ensure_jaeger(), jaeger_ports, ROOT / ".local" / "jaeger")
    suite.start()
    port = os.environ.get("DASHBOARD_API_PORT", "8000")
    dashboard_port = int(os.environ.get("DASHBOARD_PORT", "3000"))
    suite.start_dashboard(dashboard_port, f"http://127.0.0.1:{port}")
    print(f"\n  dashboard      http://127.0.0.1:{dashboard_port}/")
    if args.prometheus:
        from tools.devstack import ensure_prometheus
        from tools.monitoring import DEFAULT_PORT

        prometheus_port = int(os.environ.get("PROMETHEUS_PORT", DEFAULT_PORT))
        suite.start_prometheus(ensure_prometheus(), prometheus_port, ROOT / ".local" / "prometheus")
        print(f"  prometheus     http://127.0.0.1:{prometheus_port}/alerts")
    if jaeger_ports is not None:
        print(f"  jaeger         {jaeger_ports.query_url}/api/traces?service=dashboard_api&limit=5")
    print(f"\ntapewire is running: processes {', '.join(f'{n}={p.pid}' for n, p in suite.processes.items())}")
    print(f"logs:       {args.log_dir}/<service>.log")
    print(f"  dashboard_api  http://127.0.0.1:{port}/api/snapshot   ws://127.0.0.1:{port}/ws")
    print("\nA process that ends is restarted (reported here). Ctrl-C stops everything.", flush=True)

    stop = SignalStop()
    signal.signal(signal.SIGINT, stop.request)
    signal.signal(signal.SIGTERM, stop.request)
    policy = RestartPolicy()
    supervise(suite, stop, policy)
    codes = suite.stop()
    print(f"stopped: {codes}" + (f"; restarts: {policy.counts()}" if policy.counts() else ""))
    sys.exit(1 if any(codes.values()) else 0)


if __name__ == "__main__":
    main()
