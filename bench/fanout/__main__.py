"""`python -m bench.fanout`: the arguments, then run() and its JSON (see the package doc)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import bench.fanout
from bench.fanout.servers import CONTENDERS
from bench.fanout.trial import run


def _redis_url_default() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    from tools.devstack import env_vars

    return env_vars()["REDIS_URL"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(bench.fanout.__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else the devstack one")
    parser.add_argument("--connections", default="100,1000", help="comma-separated (default 100,1000)")
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per trial")
    parser.add_argument("--offered-rate", type=int, default=400, help="states/s published in all")
    parser.add_argument(
        "--deliveries-per-s",
        type=int,
        default=None,
        help="instead of --offered-rate: offer this many deliveries/s at every connection count",
    )
    parser.add_argument("--instruments", type=int, default=100)
    parser.add_argument("--per-client", type=int, default=10, help="instruments each connection watches")
    parser.add_argument("--client-processes", type=int, default=None)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--no-trials", action="store_true", help="leave the per-trial details out")
    args = parser.parse_args(argv)
    result = run(
        args.redis_url or _redis_url_default(),
        [int(n) for n in args.connections.split(",") if n.strip()],
        args.repetitions,
        args.seconds,
        args.offered_rate,
        args.instruments,
        args.per_client,
        contenders=[c.strip() for c in args.contenders.split(",") if c.strip()],
        client_processes=args.client_processes,
        deliveries_per_s=args.deliveries_per_s,
    )
    if args.no_trials:
        result.pop("trials")
    text = json.dumps(result, indent=2, default=str)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(text)
    return 0


# Only the arguments and main() are here: run as `python -m bench.fanout`, this module is
# __main__, and the spawned processes find every function and class by its module name, so what
# they run and exchange (client_process, publisher_process, their specs and reports) lives in
# importable modules (bench.fanout.client_process, .publisher, .clients), under the same name
# in every process.
if __name__ == "__main__":
    sys.exit(main())
