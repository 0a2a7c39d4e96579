# mypy: ignore-errors
# ^ This module runs with the Quix venv's python (.local/bench/venv-quix, see quix_env.py), where
#   quixstreams is installed; tapewire's .venv cannot have it (confluent-kafka pins conflict), so
#   its mypy could not check the Quix calls. It is kept typed all the same.
"""The processor peer: tapewire's enrichment written with Quix Streams.

    PYTHONPATH=. .local/bench/venv-quix/bin/python bench/peers/quix_processor.py \\
        --bootstrap 127.0.0.1:19092 --input RAW --output OUT --group G --state-dir DIR

Consumes the raw topic (key: instrument, value: `tapewire.v1.Tick`) with a Quix `Application`
and a `StreamingDataFrame`, and produces one `tapewire.v1.InstrumentState` per tick to the
output topic, keyed by instrument, until SIGTERM (Quix's own graceful stop).

**Same logic, reused, not re-implemented.** The per-tick work is tapewire's own pure code:
`tapewire.dead_letters.decode_raw_tick` (decode and validate), `services.processor.enrich.apply`
(version, last trade, bid/ask, session stats and VWAP inputs, OHLCV bars of 1 s and 1 min) and
`services.processor.codec.state_to_proto` (mid, spread, spread_bps, VWAP, change; the wire form),
plus the same replay guard (`_already_applied`: a tick at or before the state's source position
is skipped). Those modules import only the standard library, protobuf and tapewire (no
pydantic, no confluent-kafka), so they work in the Quix venv with PYTHONPATH at the repository
root. The benchmark therefore compares the frameworks around identical business logic: the
difference is consuming, state handling, producing and committing, which is what the issue asks
about. A re-implementation would also measure two versions of the rules.

**Idiomatic Quix.** The state lives in Quix's State store (RocksDB, one store per partition,
scoped by message key = instrument, backed by Quix's changelog topic), read with `state.get`
and written with `state.set` on every tick in a `stateful=True` apply. Quix serialises state
values with JSON (orjson), so the `State` dataclass is stored as a JSON object with the decimals
as exact strings and rebuilt on every read; that serialisation is part of what a real Quix
application pays. Values go in and out as bytes (`value_deserializer="bytes"`), decoded and
encoded with tapewire's generated protobuf code: Quix's ProtobufDeserializer would turn each
message into a dict and the enrichment would need the `Tick` back. Everything else is Quix's
defaults: `commit_interval=5.0`, `processing_guarantee="at-least-once"` (or `--exactly-once`),
changelog topics on, its own producer and consumer settings.

**Guarantees differ from tapewire's processor.** tapewire's processor is exactly-once: each
batch (up to PROCESSOR_BATCH_SIZE=500 records) is one Kafka transaction holding the new states,
the latest state per instrument for its changelog, dead letters and the consumer offsets; it
has no at-least-once mode (services/processor/run.py, settings.py), so it is measured in that
one mode. Quix by default is at-least-once: outputs are produced as they are computed and
offsets are committed at each checkpoint (every 5 s) after the producer is flushed, so a crash
replays up to 5 s of input and re-emits its outputs (the state store's changelog is written at
the same checkpoint). With `--exactly-once` Quix also uses Kafka transactions, one per
checkpoint (5 s), not one per 500 records. Neither Quix mode dead-letters: an invalid tick is
logged and dropped here (the benchmark's ticks are all valid), where tapewire writes it to the
DLQ in the same transaction. Price alerts (the commands topic) are not part of the peer.
"""

from __future__ import annotations

import argparse
import logging
import time
from decimal import Decimal
from typing import Any

from quixstreams import Application, State, message_context

from services.processor.codec import state_to_proto
from services.processor.enrich import Bar, Position, TradingSession, apply
from services.processor.enrich import State as InstrumentState
from tapewire.dead_letters import Refused, decode_raw_tick

log = logging.getLogger("quix_processor")

STATE_KEY = "state"
# PROCESSOR_MAX_RECORD_BYTES's default (services/processor/settings.py; importing the settings
# would pull in confluent-kafka's newer API and prometheus_client, which this venv lacks).
MAX_RECORD_BYTES = 4096


def enrich(value: bytes, state: State) -> bytes | None:
    """One raw tick in, the instrument's new state out (serialised), as tapewire's processor
    computes it; None for an invalid tick or one the state already accounts for."""
    now_ns = time.time_ns()
    try:
        tick = decode_raw_tick(value, now_ns, MAX_RECORD_BYTES)
    except Refused as refused:
        context = message_context()
        log.warning("invalid tick dropped: %s (%s:%s)", refused, context.partition, context.offset)
        return None
    context = message_context()
    position = Position(context.partition, context.offset)
    stored = state.get(STATE_KEY)
    previous = state_from_json(stored) if stored is not None else None
    if previous is not None and _already_applied(previous, position):
        return None
    new = apply(previous, tick, position)
    state.set(STATE_KEY, state_to_json(new))
    return state_to_proto(new, time.time_ns()).SerializeToString()


def _already_applied(state: InstrumentState, position: Position) -> bool:
    """services.processor.run._already_applied (private there, and run.py imports confluent-kafka)."""
    return state.source.partition == position.partition and state.source.offset >= position.offset


# -- the state as Quix stores it: JSON, decimals as exact strings ---------------------------------


def state_to_json(state: InstrumentState) -> dict[str, Any]:
    return {
        "instrument": state.instrument,
        "venue": state.venue,
        "version": state.version,
        "last_sequence": state.last_sequence,
        "source": [state.source.partition, state.source.offset],
        "exchange_ns": state.exchange_ns,
        "ingest_ns": state.ingest_ns,
        "last_price": _text(state.last_price),
        "last_size": _text(state.last_size),
        "last_trade_time_ns": state.last_trade_time_ns,
        "bid_price": _text(state.bid_price),
        "bid_size": _text(state.bid_size),
        "ask_price": _text(state.ask_price),
        "ask_size": _text(state.ask_size),
        "session": _session_to_json(state.session),
        "bar_1s": _bar_to_json(state.bar_1s),
        "bar_1m": _bar_to_json(state.bar_1m),
    }


def state_from_json(data: dict[str, Any]) -> InstrumentState:
    partition, offset = data["source"]
    return InstrumentState(
        instrument=data["instrument"],
        venue=data["venue"],
        version=data["version"],
        last_sequence=data["last_sequence"],
        source=Position(partition, offset),
        exchange_ns=data["exchange_ns"],
        ingest_ns=data["ingest_ns"],
        last_price=_decimal(data["last_price"]),
        last_size=_decimal(data["last_size"]),
        last_trade_time_ns=data["last_trade_time_ns"],
        bid_price=_decimal(data["bid_price"]),
        bid_size=_decimal(data["bid_size"]),
        ask_price=_decimal(data["ask_price"]),
        ask_size=_decimal(data["ask_size"]),
        session=_session_from_json(data["session"]),
        bar_1s=_bar_from_json(data["bar_1s"]),
        bar_1m=_bar_from_json(data["bar_1m"]),
    )


def _session_to_json(session: TradingSession | None) -> list[Any] | None:
    if session is None:
        return None
    return [
        session.day,
        str(session.open),
        str(session.high),
        str(session.low),
        str(session.volume),
        str(session.turnover),
        session.trade_count,
    ]


def _session_from_json(data: list[Any] | None) -> TradingSession | None:
    if data is None:
        return None
    day, open_, high, low, volume, turnover, trade_count = data
    return TradingSession(
        day=day,
        open=Decimal(open_),
        high=Decimal(high),
        low=Decimal(low),
        volume=Decimal(volume),
        turnover=Decimal(turnover),
        trade_count=trade_count,
    )


def _bar_to_json(bar: Bar | None) -> list[Any] | None:
    if bar is None:
        return None
    return [
        bar.start_ns,
        str(bar.open),
        str(bar.high),
        str(bar.low),
        str(bar.close),
        str(bar.volume),
        bar.trade_count,
    ]


def _bar_from_json(data: list[Any] | None) -> Bar | None:
    if data is None:
        return None
    start_ns, open_, high, low, close, volume, trade_count = data
    return Bar(
        start_ns=start_ns,
        open=Decimal(open_),
        high=Decimal(high),
        low=Decimal(low),
        close=Decimal(close),
        volume=Decimal(volume),
        trade_count=trade_count,
    )


def _text(value: Decimal | None) -> str | None:
    # str() of a Decimal is exact and round-trips (exponent included), unlike fmt's canonical form.
    return None if value is None else str(value)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


# -- the application ----------------------------------------------------------------------------


def build(args: argparse.Namespace) -> Application:
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once" if args.exactly_once else "at-least-once",
        state_dir=args.state_dir,
        loglevel=args.log_level,
    )
    raw = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    out = app.topic(args.output, key_serializer="bytes", value_serializer="bytes")
    sdf = app.dataframe(raw)
    sdf = sdf.apply(enrich, stateful=True).filter(lambda value: value is not None)
    sdf.to_topic(out)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--input", required=True, help="raw topic (tapewire.v1.Tick values)")
    parser.add_argument("--output", required=True, help="topic for the InstrumentState outputs")
    parser.add_argument("--group", required=True, help="consumer group (also names Quix's changelogs)")
    parser.add_argument("--state-dir", required=True, help="Quix's RocksDB state directory")
    parser.add_argument("--exactly-once", action="store_true", help="Kafka transactions (Quix's EOS)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    build(args).run()


if __name__ == "__main__":
    main()
