"""The publisher process: `rate` states/s through each contender's own publish path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import redis
import uvloop

from services.cache_updater.apply import StateScript, cache_stamp, prepare
from services.cache_updater.scripts import run_pipeline
from services.dashboard_api.rest import views
from tapewire.keys import RedisKeys
from tapewire.v1 import market_pb2 as pb

TICK_S = 0.005
EMIT_CONCURRENCY = 8
HISTORY_LENGTH = 1000  # REDIS_HISTORY_LENGTH's default: cache_updater appends every state


@dataclass(frozen=True)
class PublisherSpec:
    contender: str
    redis_url: str
    instruments: list[str]
    rate: int
    key_prefix: str = ""
    updates_channel: str = ""
    socketio_channel: str = ""
    centrifugo_url: str = ""
    centrifugo_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class PublisherReport:
    published: int = 0
    in_window: int = 0
    max_behind_ms: float = 0.0  # how far the publisher fell behind its schedule
    errors: list[str] = field(default_factory=list)
    logged_errors: int = 0


def make_state(instrument: str, version: int, now_ns: int) -> pb.InstrumentState:
    """A state as the processor makes it: every field set, prices moving with the version."""
    cents = 10_000 + (version * 7) % 500
    price = f"{cents // 100}.{cents % 100:02d}"
    bid = f"{(cents - 1) // 100}.{(cents - 1) % 100:02d}"
    ask = f"{(cents + 1) // 100}.{(cents + 1) % 100:02d}"
    second = now_ns - now_ns % 1_000_000_000
    state = pb.InstrumentState(
        instrument=instrument,
        venue="BENCH",
        version=version,
        last_sequence=version,
        last_price=price,
        last_size="100",
        last_trade_time_ns=now_ns,
        bid_price=bid,
        bid_size="300",
        ask_price=ask,
        ask_size="200",
        mid=price,
        spread="0.02",
        spread_bps=2.0 * 10_000 / cents,
        session_day=now_ns // 86_400_000_000_000,
        session_open="100.00",
        session_high="104.99",
        session_low="99.01",
        session_volume=str(100 * version),
        session_turnover=f"{version * cents}.00",
        trade_count=version,
        vwap="101.23",
        change=f"{(cents - 10_000) // 100}.{(cents - 10_000) % 100:02d}",
        change_pct=(cents - 10_000) / 100.0,
        bar_1s=pb.Bar(
            start_time_ns=second, open=price, high=price, low=price, close=price, volume="100", trade_count=1
        ),
        bar_1m=pb.Bar(
            start_time_ns=second - second % 60_000_000_000,
            open="100.00",
            high="104.99",
            low="99.01",
            close=price,
            volume=str(100 * version),
            trade_count=version,
        ),
    )
    state.times.exchange_ns = now_ns
    state.times.ingest_ns = now_ns
    state.times.processed_ns = now_ns
    return state


class _Schedule:
    """`rate` states/s from `start_ns`, round-robin over the instruments."""

    def __init__(self, rate: int, start_ns: int, instruments: list[str], first_version: int) -> None:
        self.rate = rate
        self.start_ns = start_ns
        self.instruments = instruments
        self.versions = dict.fromkeys(instruments, first_version - 1)
        self.sent = 0
        self.report = PublisherReport()

    def due(self, now_ns: int) -> list[tuple[str, int]]:
        target = self.rate * max(0, now_ns - self.start_ns) // 1_000_000_000
        batch = []
        for index in range(self.sent, target):
            instrument = self.instruments[index % len(self.instruments)]
            self.versions[instrument] += 1
            batch.append((instrument, self.versions[instrument]))
        self.sent = max(self.sent, target)
        return batch

    def published(self, count: int, stamp_ns: int, window: tuple[int, int], now_ns: int) -> None:
        self.report.published += count
        if window[0] <= stamp_ns <= window[1]:
            self.report.in_window += count
        if count:
            # The first of this batch was due at start + sent_before / rate.
            due_ns = self.start_ns + (self.sent - count) * 1_000_000_000 // self.rate
            self.report.max_behind_ms = max(self.report.max_behind_ms, (now_ns - due_ns) / 1e6)


class _ErrorLog(logging.Handler):
    """Keeps what the publisher's libraries log at ERROR (python-socketio's failed publishes)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.messages) < 10:
            detail = getattr(record, "redis_exception", "")
            self.messages.append(f"{record.getMessage()} {detail}".strip()[:300])


_PUBLISHER_ERRORS = _ErrorLog()


def publisher_process(conn: Connection, spec: PublisherSpec) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger().addHandler(_PUBLISHER_ERRORS)
    if spec.contender == "dashboard_api":
        _publish_tapewire(conn, spec)
    else:
        uvloop.run(_publish_peer(conn, spec))


def _publish_tapewire(conn: Connection, spec: PublisherSpec) -> None:
    """cache_updater's write path: prepare() and the apply_states script, one pipeline per tick."""
    client = redis.Redis.from_url(spec.redis_url)
    keys = RedisKeys(prefix=spec.key_prefix, channel=spec.updates_channel, alerts_channel="")
    script = StateScript(keys)

    def apply(batch: list[tuple[str, int]], cached_ns: int) -> None:
        stamp = cache_stamp(cached_ns)
        changes = []
        for instrument, version in batch:
            state = make_state(instrument, version, cached_ns)
            changes.append(prepare(state, state.SerializeToString(), keys, stamp, HISTORY_LENGTH))
        calls, results = run_pipeline(client, [script.script], lambda pipe: script.queue(changes, pipe))
        if sum(StateScript.applied(results[:calls])) != len(batch):
            raise RuntimeError("a state was not applied: versions out of step")

    # Seed version 1 of every instrument so that the clients' snapshots hold a state.
    apply([(instrument, 1) for instrument in spec.instruments], time.time_ns())
    conn.send(("ready",))
    _, start_ns, window_start, window_end, end_ns = conn.recv()
    schedule = _Schedule(spec.rate, start_ns, spec.instruments, first_version=2)
    window = (window_start, window_end)
    sleep_until(start_ns)
    while (now := time.time_ns()) < end_ns:
        batch = schedule.due(now)
        if batch:
            stamp = time.time_ns()
            apply(batch, stamp)
            schedule.published(len(batch), stamp, window, time.time_ns())
        time.sleep(TICK_S)
    client.close()
    conn.send(("done", schedule.report))


async def _publish_peer(conn: Connection, spec: PublisherSpec) -> None:
    import aiohttp

    from bench.peers.socketio_server import EVENT_UPDATE, publisher

    loop = asyncio.get_running_loop()
    session = aiohttp.ClientSession()
    manager = publisher(spec.redis_url, spec.socketio_channel) if spec.contender == "socketio" else None

    async def emit(batch: list[tuple[str, int]], stamp: int) -> None:
        states = [(instrument, make_state(instrument, version, stamp)) for instrument, version in batch]
        for _, state in states:
            state.times.cached_ns = stamp
        if manager is not None:
            # A few emits in flight at once (each is one PUBLISH on a pooled connection): enough
            # to keep up, without a connection per state when a tick's batch is large.
            for first in range(0, len(states), EMIT_CONCURRENCY):
                await asyncio.gather(
                    *(
                        manager.emit(EVENT_UPDATE, views.state_to_json(state), room=instrument, namespace="/")
                        for instrument, state in states[first : first + EMIT_CONCURRENCY]
                    )
                )
            return
        body = (
            '{"commands":['
            + ",".join(
                f'{{"publish":{{"channel":"{instrument}","data":{views.dumps(views.state_to_json(state))}}}}}'
                for instrument, state in states
            )
            + "]}"
        )
        async with session.post(spec.centrifugo_url, data=body, headers=spec.centrifugo_headers) as reply:
            text = await reply.text()
            if reply.status != 200 or '"error"' in text:
                raise RuntimeError(f"centrifugo publish: {reply.status} {text[:300]}")

    # One publish before the clients come, so that connections and scripts are warm.
    await emit([(spec.instruments[0], 0)], time.time_ns())
    conn.send(("ready",))
    _, start_ns, window_start, window_end, end_ns = await loop.run_in_executor(None, conn.recv)
    schedule = _Schedule(spec.rate, start_ns, spec.instruments, first_version=1)
    window = (window_start, window_end)
    await asyncio.sleep(max(0.0, (start_ns - time.time_ns()) / 1e9))
    while (now := time.time_ns()) < end_ns:
        batch = schedule.due(now)
        if batch:
            stamp = time.time_ns()
            await emit(batch, stamp)
            schedule.published(len(batch), stamp, window, time.time_ns())
        await asyncio.sleep(TICK_S)
    await session.close()
    if manager is not None:
        with contextlib.suppress(Exception):
            await manager.redis.aclose()
    schedule.report.errors = _PUBLISHER_ERRORS.messages
    schedule.report.logged_errors = _PUBLISHER_ERRORS.count
    conn.send(("done", schedule.report))


def sleep_until(ns: int) -> None:
    delay = (ns - time.time_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)
