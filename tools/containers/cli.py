"""``python3 -m tools.containers <command>``.

- ``setup``: install podman & co. (root, once) and start its Docker API on SOCKET;
- ``build``: build every image compose.local.yaml names (``--servers``: Kafka, Redis and
  PostgreSQL only, what the tests' testcontainers start);
- ``compose ARGS``: ``docker-compose -f compose.yaml -f compose.local.yaml ARGS`` against the
  engine, health checks run meanwhile (see health.py), e.g. ``compose up -d --wait``;
- ``health``: run the health checks until interrupted (beside a compose you drive yourself);
- ``env``: print the export line that points docker-compose and testcontainers at the engine;
- ``stop``: stop the API service (``setup`` or any other command starts it again).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from tools.containers import health, images
from tools.containers.compose import compose_command, compose_env
from tools.containers.engine import DOCKER_HOST, ensure_api, ensure_engine, stop_api
from tools.devstack.errors import DevstackError
from tools.devstack.paths import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.containers", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install and configure podman, start its Docker API (idempotent)")
    p_build = sub.add_parser("build", help="build the images (layers cached)")
    p_build.add_argument("--servers", action="store_true", help="only Kafka, Redis and PostgreSQL")
    p_build.add_argument(
        "--refresh", action="store_true", help="a new base and no cached layer: Debian's updates"
    )
    sub.add_parser("compose", help="docker-compose ARGS on the local images, health checks running")
    sub.add_parser("health", help="run the containers' health checks until interrupted")
    sub.add_parser("env", help="print `export DOCKER_HOST=...`")
    sub.add_parser("stop", help="stop podman's Docker API service (containers keep running)")
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["compose"]:
        # Everything after `compose` is docker-compose's, its options included: argparse would
        # take `-p NAME` apart.
        return _compose(args[1:])
    opts = parser.parse_args(args)
    try:
        if opts.command == "setup":
            ensure_engine()
            ensure_api()
        elif opts.command == "build":
            ensure_api()
            images.build(images.SERVER_IMAGES if opts.servers else images.ALL, refresh=opts.refresh)
        elif opts.command == "health":
            ensure_api()
            health.run_forever()
        elif opts.command == "stop":
            stop_api()
        elif opts.command == "env":
            print(f"export DOCKER_HOST={DOCKER_HOST}")
    except DevstackError as e:
        print(f"tools.containers: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _compose(args: list[str]) -> int:
    try:
        ensure_api()
        with health.HealthChecks():
            return subprocess.run(compose_command(*args), env=compose_env(), cwd=ROOT).returncode
    except DevstackError as e:
        print(f"tools.containers: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
