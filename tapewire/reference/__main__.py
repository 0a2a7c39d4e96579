"""`python -m tapewire.reference`: load a reference file into the instrument master, list the
master, or remove symbols from it.

    python -m tapewire.reference load instruments.csv             # or .jsonl; "-" reads stdin
    python -m tapewire.reference load instruments.jsonl --dry-run # check only, publish nothing
    python -m tapewire.reference list [--json]
    python -m tapewire.reference remove OLD1 OLD2

`load` checks every line (format: tapewire/reference/files.py and the README), prints one line
per bad line (`line 7: tick_size '0' must be a positive decimal ...`) and publishes every good
one: a bad line costs only itself. Every service sees the new entries within moments, without
a restart. Settings come from the environment like the services': KAFKA_* and
TAPEWIRE_TOPIC_INSTRUMENTS. Part of the library (not tools/) so that the image runs it.

Exit status: 0 every line loaded, 1 some lines were rejected (the rest were loaded), 2 nothing
done (unreadable file, broker unreachable), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from tapewire.errors import TapewireError
from tapewire.kafka import ensure_all_topics
from tapewire.settings import KafkaSettings, TopicSettings

from .files import LineError, format_of, read_entries
from .instrument import Instrument, to_fields
from .master import publish, read_master, remove

LOADED, REJECTED, FAILED, INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tapewire.reference", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="validate a reference file and publish its good lines")
    load.add_argument("file", help="a .csv (with a header row) or .jsonl file; '-' for JSON lines on stdin")
    load.add_argument("--dry-run", action="store_true", help="check every line, publish nothing")
    listing = commands.add_parser("list", help="print the master, one entry per line")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    removal = commands.add_parser("remove", help="remove symbols from the master")
    removal.add_argument("symbols", nargs="+")
    args = parser.parse_args(argv)
    try:
        kafka, topics = KafkaSettings(), TopicSettings()
        if args.command == "load":
            return _load(args.file, args.dry_run, kafka, topics, out, err)
        if args.command == "list":
            return _list(kafka, topics, args.json, out)
        removed = remove(kafka, topics.instruments, args.symbols)
        print(f"removed {removed} from {topics.instruments}", file=out)
        return LOADED
    except (OSError, TapewireError, ValueError) as exc:
        print(f"error: {exc}", file=err)
        return FAILED
    except KeyboardInterrupt:
        return INTERRUPTED


def _load(
    name: str, dry_run: bool, kafka: KafkaSettings, topics: TopicSettings, out: TextIO, err: TextIO
) -> int:
    if name == "-":
        results = list(read_entries(sys.stdin, "jsonl"))
    else:
        # utf-8-sig: a spreadsheet's CSV export starts with a byte-order mark, which is not a column name.
        with Path(name).open(encoding="utf-8-sig") as lines:
            results = list(read_entries(lines, format_of(name)))
    entries = [result for result in results if isinstance(result, Instrument)]
    errors = [result for result in results if isinstance(result, LineError)]
    for error in errors:
        print(f"{name}: {error}", file=err)
    if dry_run:
        print(f"{len(entries)} valid, {len(errors)} rejected (dry run: nothing published)", file=out)
    else:
        ensure_all_topics(kafka, topics)
        published = publish(kafka, topics.instruments, entries)
        print(f"{published} published to {topics.instruments}, {len(errors)} rejected", file=out)
    return REJECTED if errors else LOADED


def _list(kafka: KafkaSettings, topics: TopicSettings, as_json: bool, out: TextIO) -> int:
    for entry in sorted(read_master(kafka, topics.instruments), key=lambda e: e.symbol):
        if as_json:
            print(json.dumps(to_fields(entry)), file=out)
            continue
        calendar = entry.calendar
        pre_open = f" pre-open {calendar.pre_open_text()}" if calendar.pre_open else ""
        print(
            f"{entry.symbol:<12} {entry.asset_class:<7} {entry.venue:<8} {entry.currency:<5}"
            f" tick {entry.tick_size} ({entry.decimals} dp)"
            f"  {calendar.timezone} {calendar.hours_text()} {calendar.days_text()}{pre_open}  {entry.name}",
            file=out,
        )
    return LOADED


if __name__ == "__main__":
    sys.exit(main())
