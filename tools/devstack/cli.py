"""The command line: ``python3 -m tools.devstack up|env|status|down|chromium|prometheus|jaeger|haproxy``.

Progress messages go to stderr; only the export lines go to stdout.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from tools.devstack.chromium import ensure_chromium
from tools.devstack.errors import DevstackError
from tools.devstack.haproxy import ensure_haproxy
from tools.devstack.jaeger import ensure_jaeger
from tools.devstack.paths import PORT_ENV, URL_ENV, env_vars, external_value, local_value, port
from tools.devstack.process import log, started_port
from tools.devstack.prometheus import ensure_prometheus
from tools.devstack.stack import PID, down, ensure_up, status


def _exports(values: dict[str, str], dotenv: bool) -> str:
    if dotenv:
        return "".join(f"{k}={v}\n" for k, v in values.items())
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def _print_status() -> None:
    for service, state in status().items():
        detail = ""
        if state == "external":
            detail = f" ({URL_ENV[service]}={external_value(service)})"
        elif state == "running":
            pid, where = PID[service](), local_value(service)
            listening = started_port(service)
            if listening is not None and listening != port(service):
                where = f"on port {listening}, not {PORT_ENV[service]}={port(service)}"
            detail = f" (pid {pid}, {where})"
        print(f"{service}: {state}{detail}")


# What the tests need besides the three servers: installed (or built) once, then their path.
INSTALLERS = {
    "chromium": ensure_chromium,
    "prometheus": ensure_prometheus,
    "jaeger": ensure_jaeger,
    "haproxy": ensure_haproxy,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="devstack",
        description="Local Kafka, Redis and PostgreSQL for tapewire (data under .local/, no Docker).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start missing servers (idempotent) and print export lines")
    p_env = sub.add_parser("env", help="print the export lines without starting anything")
    p_env.add_argument("--dotenv", action="store_true", help="print KEY=VALUE lines instead")
    p_down = sub.add_parser("down", help="stop the servers devstack started")
    p_down.add_argument("--wipe", action="store_true", help="also delete their data (Kafka jars are kept)")
    sub.add_parser("status", help="one line per server: running / stopped / external")
    sub.add_parser("chromium", help="install Chromium for the browser tests if missing; print its path")
    sub.add_parser("prometheus", help="install Prometheus and promtool if missing; print prometheus's path")
    sub.add_parser("jaeger", help="build Jaeger from the Go module proxy if missing; print its path")
    sub.add_parser("haproxy", help="install HAProxy (the load balancer's tests) if missing; print its path")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            started = time.monotonic()
            values = ensure_up()
            log(f"ready in {time.monotonic() - started:.1f}s")
            sys.stdout.write(_exports(values, dotenv=False))
        elif args.command == "env":
            sys.stdout.write(_exports(env_vars(), dotenv=args.dotenv))
        elif args.command == "down":
            down(wipe=args.wipe)
        elif args.command == "status":
            _print_status()
        else:
            print(INSTALLERS[args.command]())
    except (DevstackError, OSError) as e:
        print(f"devstack: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
