"""Run tapewire's services and its web dashboard as separate processes: `make run` and the
end-to-end and browser tests.

    python -m tools.suite            # what `make run` runs after setting up

Starts the local servers unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL / DATABASE_URL point
elsewhere, creates the topics, migrates PostgreSQL, starts processor, history_writer,
cache_updater, dashboard_api and ingester, then the Next.js dashboard (`next start`, built by `make run`),
each logging to its own file, prints the dashboard's address and waits. Ctrl-C (or SIGTERM)
stops everything gracefully, then forcefully after a deadline.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
# Start order: consumers first so nothing the ingester publishes waits for a group to form.
SERVICES = ("processor", "history_writer", "cache_updater", "dashboard_api", "ingester")
# The Next.js front end: not a Python service, started with its own command.
DASHBOARD = "dashboard"
DASHBOARD_DIR = ROOT / "dashboard"
DASHBOARD_BUILT = DASHBOARD_DIR / ".next" / "BUILD_ID"
# `next start` closes its server on SIGTERM and then exits with 128 + 15 on purpose.
NEXT_STOPPED_BY_SIGTERM = 143


@dataclass
class Suite:
    """The services as child processes sharing one environment."""

    env: Mapping[str, str]
    log_dir: Path
    services: tuple[str, ...] = SERVICES
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

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

    def _spawn(
        self, instance: str, argv: list[str], cwd: Path, extra_env: Mapping[str, str] | None
    ) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{instance}.log").open("ab")
        self._logs.append(log)
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches only the suite, which then stops
            # the services in order rather than all at once.
            start_new_session=True,
        )
        self.processes[instance] = process
        return process

    def exited(self) -> dict[str, int]:
        """Services that have ended, with their exit codes."""
        return {name: code for name, p in self.processes.items() if (code := p.poll()) is not None}

    def stop(self, timeout_s: float = 30.0) -> dict[str, int]:
        """SIGTERM each service, the feed first so the later stages can drain what it sent;
        SIGKILL whatever is still running when the deadline passes."""
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
        for log in self._logs:
            log.close()
        return codes

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _stop_order(instance: str) -> int:
    """The front end and the feed first, then each stage in pipeline order; `processor-2` sorts
    with `processor`."""
    order = (DASHBOARD, *SERVICES[::-1])
    service = instance.split("-", 1)[0]
    return order.index(service) if service in order else len(order)


def prepare(env: Mapping[str, str]) -> None:
    """Create topics and migrate PostgreSQL with the settings the services will read."""
    merged = {**os.environ, **env}
    for module in ("tools.create_topics", "tapewire.db.migrate"):
        subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=merged, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".local" / "logs")
    args = parser.parse_args()

    from tools.devstack import ensure_up

    env = ensure_up()
    prepare(env)
    suite = Suite(env=env, log_dir=args.log_dir).start()
    port = os.environ.get("DASHBOARD_API_PORT", "8000")
    dashboard_port = int(os.environ.get("DASHBOARD_PORT", "3000"))
    suite.start_dashboard(dashboard_port, f"http://127.0.0.1:{port}")
    print(f"\n  dashboard      http://127.0.0.1:{dashboard_port}/")
    print(f"\ntapewire is running: processes {', '.join(f'{n}={p.pid}' for n, p in suite.processes.items())}")
    print(f"logs:       {args.log_dir}/<service>.log")
    print(f"  dashboard_api  http://127.0.0.1:{port}/api/snapshot   ws://127.0.0.1:{port}/ws")
    print("\nCtrl-C stops everything.", flush=True)

    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stopping:
        if ended := suite.exited():
            print(f"services ended unexpectedly: {ended}; see their logs", file=sys.stderr)
            break
        time.sleep(0.5)
    codes = suite.stop()
    print(f"stopped: {codes}")
    sys.exit(0 if stopping and not any(codes.values()) else 1)


if __name__ == "__main__":
    main()
