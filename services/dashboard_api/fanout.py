"""The relay: one pub/sub subscription per process, each update rendered once, handed to many.

The relay pattern-subscribes to `<channel>:*` once, however many clients there are. For each
update that some connection watches it parses the protobuf once, renders the client JSON once
(stamping `times.sent_ns`) and offers that same text to every watching connection. Offering
never awaits a client: a connection queues the text or, when its queue is full, asks to be
closed and returns False, and the relay forgets it.

If Redis drops, updates published meanwhile are lost to this process. So after every
re-subscription (not the first) each connection is asked to resync: it takes a fresh snapshot
of what it watches, and its version check hides anything it already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from google.protobuf.message import DecodeError
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from tapewire.keys import RedisKeys
from tapewire.v1 import market_pb2 as pb

from . import views
from .metrics import DashboardApiMetrics

log = logging.getLogger(__name__)

# The relay pings Redis on its subscription every HEARTBEAT_S and starts over when nothing at
# all (update or pong) has come back for STALL_S: a half-open TCP connection would otherwise
# look like a quiet market for many minutes.
HEARTBEAT_S = 2.0
STALL_S = 3 * HEARTBEAT_S


@dataclass(frozen=True, slots=True)
class Delta:
    """One update, rendered for clients."""

    instrument: str
    version: int
    text: str


class Subscriber(Hashable, Protocol):
    def deliver(self, delta: Delta) -> bool:
        """Queue `delta` without waiting; False means drop me (I am closing)."""

    def resync(self, instruments: tuple[str, ...]) -> bool:
        """Send a fresh snapshot of `instruments` before any later delta; False means drop me."""


S = TypeVar("S", bound=Hashable)


class SubscriptionIndex(Generic[S]):
    """Which subscribers watch which instrument, both ways round."""

    def __init__(self) -> None:
        self._by_instrument: dict[str, set[S]] = {}
        self._by_subscriber: dict[S, set[str]] = {}

    def add(self, subscriber: S, instruments: Collection[str]) -> None:
        self._by_subscriber.setdefault(subscriber, set()).update(instruments)
        for instrument in instruments:
            self._by_instrument.setdefault(instrument, set()).add(subscriber)

    def remove(self, subscriber: S, instruments: Collection[str]) -> None:
        watched = self._by_subscriber.get(subscriber)
        if watched is None:
            return
        for instrument in instruments:
            if instrument in watched:
                watched.discard(instrument)
                self._forget(instrument, subscriber)
        if not watched:
            del self._by_subscriber[subscriber]

    def remove_all(self, subscriber: S) -> None:
        for instrument in self._by_subscriber.pop(subscriber, ()):
            self._forget(instrument, subscriber)

    def subscribers(self, instrument: str) -> Collection[S]:
        return self._by_instrument.get(instrument, ())

    def instruments_of(self, subscriber: S) -> Collection[str]:
        return self._by_subscriber.get(subscriber, ())

    def items(self) -> Iterator[tuple[S, frozenset[str]]]:
        for subscriber, instruments in list(self._by_subscriber.items()):
            yield subscriber, frozenset(instruments)

    def _forget(self, instrument: str, subscriber: S) -> None:
        watchers = self._by_instrument[instrument]
        watchers.discard(subscriber)
        if not watchers:
            del self._by_instrument[instrument]


def render_update(instrument: str, payload: bytes, sent_ns: int) -> tuple[Delta, pb.InstrumentState] | None:
    """The client message for one pub/sub payload, or None when it is not an Update of `instrument`."""
    update = pb.Update()
    try:
        update.ParseFromString(payload)
    except DecodeError:
        return None
    state = update.state
    if state.instrument != instrument or state.version == 0:
        return None
    return Delta(instrument, state.version, views.update_message(state, sent_ns)), state


class Relay:
    """Owns the subscription and the index; `run()` until cancelled."""

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        metrics: DashboardApiMetrics,
        clock: Callable[[], int] = time.time_ns,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.index: SubscriptionIndex[Subscriber] = SubscriptionIndex()
        self._redis = redis
        self._keys = keys
        self._metrics = metrics
        self._clock = clock
        self._max_backoff_s = max_backoff_s
        self._ready = False
        self._subscribed_before = False
        self._confirmed_this_time = False
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """True while the subscription is confirmed: every update published from now on arrives."""
        return self._ready

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen()
            except (RedisError, OSError, _Stalled) as exc:
                log.warning("relay lost redis", extra={"error": repr(exc), "retry_in_s": delay})
            except Exception:
                # A bug must not end the relay for good: log it and start over like a disconnect.
                log.exception("relay failed", extra={"retry_in_s": delay})
            self._metrics.relay_reconnects.inc()
            if self._confirmed_this_time:
                delay = 0.1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)

    def handle(self, channel: str, payload: bytes) -> None:
        """Render one published update and offer it to every connection watching its instrument."""
        self._metrics.updates_received.inc()
        instrument = self._keys.instrument_of_channel(channel)
        watchers = self.index.subscribers(instrument)
        if not watchers:
            return
        sent_ns = self._clock()
        rendered = render_update(instrument, payload, sent_ns)
        if rendered is None:
            self._metrics.invalid_updates.inc()
            log.warning("invalid update on pub/sub", extra={"channel": channel})
            return
        delta, state = rendered
        if state.times.cached_ns:
            self._metrics.cached_to_sent.observe(max(0, sent_ns - state.times.cached_ns) / 1e9)
        self._metrics.updates_relayed.inc()
        dropped = [subscriber for subscriber in watchers if not subscriber.deliver(delta)]
        for subscriber in dropped:
            self.index.remove_all(subscriber)

    async def _listen(self) -> None:
        self._confirmed_this_time = False
        try:
            async with self._redis.pubsub() as pubsub:
                await pubsub.psubscribe(self._keys.updates_pattern)
                await self._pump(pubsub)
        finally:
            self._set_ready(False)

    async def _pump(self, pubsub: PubSub) -> None:
        last_seen = last_ping = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=HEARTBEAT_S)
            now = time.monotonic()
            if message is not None:
                last_seen = now
                self._on_message(message)
            if now - last_ping >= HEARTBEAT_S:
                last_ping = now
                await pubsub.ping()
            if now - last_seen > STALL_S:
                raise _Stalled(f"nothing from redis for {now - last_seen:.1f}s")

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "pmessage":
            self.handle(message["channel"].decode("utf-8", "replace"), message["data"])
        elif kind == "psubscribe":
            self._confirmed_this_time = True
            self._set_ready(True)
            if self._subscribed_before:
                self._resync_all()
            self._subscribed_before = True

    def _resync_all(self) -> None:
        log.info("relay resubscribed, resyncing connections")
        dropped = [
            subscriber for subscriber, watched in self.index.items() if not subscriber.resync(tuple(watched))
        ]
        for subscriber in dropped:
            self.index.remove_all(subscriber)

    def _set_ready(self, ready: bool) -> None:
        if ready != self._ready:
            log.info("relay ready" if ready else "relay not ready")
        self._ready = ready
        self._metrics.relay_ready.set(1 if ready else 0)


class _Stalled(Exception):
    """The subscription's connection went quiet: no update and no pong."""
