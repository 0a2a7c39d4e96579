"""The relay: one pub/sub connection per process, subscribed only to what its clients need.

Each instrument and each user's alerts have a channel of their own (tapewire/keys.py). The
relay SUBSCRIBEs to an instrument's channel when its first local client watches it and
UNSUBSCRIBEs when the last one leaves, so an instance behind a load balancer receives only
the updates its own clients asked for. `watch()` returns an awaitable that completes once
Redis has confirmed every channel it needed: only then may a session read the snapshot,
because only then is every later update sure to arrive (the snapshot/update race).

Each update is parsed once into a `Delta` that renders each encoding once, and is offered to
every watching session. Offering never awaits a client: a session queues the delta or asks to
be dropped.

The connection itself is `pubsub.py`'s: it reads in bulk and calls `handle()` for each message
and `_on_confirmation()` for each SUBSCRIBE/UNSUBSCRIBE that Redis confirmed, synchronously. On a
Redis Cluster it is `sharded.py`'s: one such connection per master, SSUBSCRIBE to the master of
each channel's slot; a lost master is replaced alone and confirms the bare channel again, which
resyncs the sessions as a reconnection does, and a slot moved between masters is a reconnection.

If Redis drops, updates published meanwhile are lost to this process. So after every
reconnection each session is asked to resync: it resumes from the versions it has sent, from
the history streams, and its version check hides anything it already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from google.protobuf.message import DecodeError
from opentelemetry.trace import Span

from tapewire import tracing
from tapewire.keys import RedisKeys
from tapewire.tracing import Tracer
from tapewire.v1 import alerts_pb2
from tapewire.v1 import market_pb2 as pb

from ..metrics import DashboardApiMetrics
from .encoders import Delta
from .pubsub import Connector, PubSubError, Subscription

log = logging.getLogger(__name__)

# The relay pings Redis on its subscription every HEARTBEAT_S and starts over when nothing at
# all (update or pong) has come back for STALL_S: a half-open TCP connection would otherwise
# look like a quiet market for many minutes.
HEARTBEAT_S = 2.0
STALL_S = 3 * HEARTBEAT_S


class Subscriber(Hashable, Protocol):
    def deliver(self, delta: Delta) -> bool:
        """Queue `delta` without waiting; False means drop me (I am closing)."""

    def deliver_alert(self, event: alerts_pb2.AlertEvent) -> bool:
        """Queue an event of my user's alerts; False means drop me."""

    def resync(self) -> bool:
        """Updates may have been lost: catch up on everything watched before any later delta."""


S = TypeVar("S", bound=Hashable)


class SubscriptionIndex(Generic[S]):
    """Which subscribers watch which key (instrument or user), both ways round."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[S]] = {}
        self._by_subscriber: dict[S, set[str]] = {}

    def add(self, subscriber: S, keys: Iterable[str]) -> list[str]:
        """Add; returns the keys nobody watched before."""
        first: list[str] = []
        watched = self._by_subscriber.setdefault(subscriber, set())
        for key in keys:
            watched.add(key)
            watchers = self._by_key.get(key)
            if watchers is None:
                watchers = self._by_key[key] = set()
                first.append(key)
            watchers.add(subscriber)
        return first

    def remove(self, subscriber: S, keys: Iterable[str]) -> list[str]:
        """Remove; returns the keys nobody watches any more."""
        watched = self._by_subscriber.get(subscriber)
        if watched is None:
            return []
        # One pass, discarding as it goes: `keys` may be an iterator, or name a key twice.
        last: list[str] = []
        for key in keys:
            if key in watched:
                watched.discard(key)
                if self._forget(key, subscriber):
                    last.append(key)
        if not watched:
            del self._by_subscriber[subscriber]
        return last

    def remove_all(self, subscriber: S) -> list[str]:
        return [key for key in self._by_subscriber.pop(subscriber, ()) if self._forget(key, subscriber)]

    def subscribers(self, key: str) -> Collection[S]:
        return self._by_key.get(key, ())

    def keys_of(self, subscriber: S) -> Collection[str]:
        return self._by_subscriber.get(subscriber, ())

    def keys(self) -> Collection[str]:
        return self._by_key.keys()

    def items(self) -> Iterator[tuple[S, frozenset[str]]]:
        for subscriber, keys in list(self._by_subscriber.items()):
            yield subscriber, frozenset(keys)

    def _forget(self, key: str, subscriber: S) -> bool:
        watchers = self._by_key[key]
        watchers.discard(subscriber)
        if watchers:
            return False
        del self._by_key[key]
        return True


async def confirmed(events: list[asyncio.Event]) -> None:
    """Wait until Redis has confirmed the channels behind `events` (see Relay.watch)."""
    for event in events:
        await event.wait()


def parse_update(instrument: str, payload: bytes) -> pb.Update | None:
    """One pub/sub payload, or None when it is not an Update of `instrument`."""
    update = pb.Update()
    try:
        update.ParseFromString(payload)
    except DecodeError:
        return None
    state = update.state
    if state.instrument != instrument or state.version == 0:
        return None
    return update


@dataclass(slots=True)
class _Channel:
    """A channel the relay has sent commands for, and whether it is subscribed for sure."""

    wanted: bool = True
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    # SUBSCRIBE/UNSUBSCRIBE commands sent whose confirmation has not come back yet. Redis
    # answers in order, so once this is back to zero the last command's outcome holds.
    pending: int = 0


class Relay:
    """Owns the pub/sub connection and the indexes; `run()` until cancelled."""

    def __init__(
        self,
        connector: Connector,
        keys: RedisKeys,
        metrics: DashboardApiMetrics,
        clock: Callable[[], int] = time.time_ns,
        max_backoff_s: float = 5.0,
        tracer: Tracer = tracing.DISABLED,
    ) -> None:
        self.instruments: SubscriptionIndex[Subscriber] = SubscriptionIndex()
        self.users: SubscriptionIndex[Subscriber] = SubscriptionIndex()
        self._connector = connector
        self._keys = keys
        self._metrics = metrics
        self._clock = clock
        self._max_backoff_s = max_backoff_s
        self._tracer = tracer
        self._connection: Subscription | None = None
        self._channels: dict[str, _Channel] = {}
        self._ready = False
        self._paused = False
        self._subscribed_before = False
        self._task: asyncio.Task[None] | None = None
        # Sessions' flushes due once what Redis sent in one read has been offered (flush_soon).
        self._flushes: list[Callable[[], None]] = []

    @property
    def ready(self) -> bool:
        """True while Redis has confirmed the subscription: every update published now arrives."""
        return self._ready

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def channels(self) -> int:
        """Channels subscribed (or being subscribed) for this instance's sessions."""
        return sum(1 for channel in self._channels.values() if channel.wanted)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- what sessions call ---------------------------------------------------------------

    def watch(self, subscriber: Subscriber, instruments: Collection[str]) -> list[asyncio.Event]:
        """Register interest; once every returned event is set, every update of them arrives."""
        first = self.instruments.add(subscriber, instruments)
        self._subscribe([self._keys.updates(name) for name in first])
        return self._confirmations([self._keys.updates(name) for name in instruments])

    def unwatch(self, subscriber: Subscriber, instruments: Iterable[str]) -> None:
        last = self.instruments.remove(subscriber, list(instruments))
        self._unsubscribe([self._keys.updates(name) for name in last])

    def watch_alerts(self, subscriber: Subscriber, user: str) -> list[asyncio.Event]:
        if self.users.add(subscriber, [user]):
            self._subscribe([self._keys.alert_events(user)])
        return self._confirmations([self._keys.alert_events(user)])

    def forget(self, subscriber: Subscriber) -> None:
        """The session is gone: drop all of its interest."""
        gone = [self._keys.updates(name) for name in self.instruments.remove_all(subscriber)]
        gone += [self._keys.alert_events(user) for user in self.users.remove_all(subscriber)]
        self._unsubscribe(gone)

    def flush_soon(self, flush: Callable[[], None]) -> None:
        """Run `flush` (a session's write of what it was offered) in the loop's next turn,
        after the rest of the bulk read: one loop callback for every session, not one each."""
        if not self._flushes:
            asyncio.get_running_loop().call_soon(self._flush_all)
        self._flushes.append(flush)

    def _flush_all(self) -> None:
        flushes, self._flushes = self._flushes, []
        for flush in flushes:
            try:
                flush()
            except Exception:  # one session's bug must not hold back every other session's
                log.exception("session flush failed")

    def pause(self) -> None:
        """Stop relaying updates (operators: e.g. while Redis is being repaired)."""
        self._paused = True
        log.warning("relay paused")

    def resume(self) -> None:
        """Relay again; every session catches up from history on what the pause held back."""
        if self._paused:
            self._paused = False
            log.warning("relay resumed, resyncing sessions")
            self._resync_all()

    # -- the pub/sub side -----------------------------------------------------------------

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen()
            except (OSError, PubSubError) as exc:
                log.warning("relay lost redis", extra={"error": repr(exc), "retry_in_s": delay})
            except Exception:
                # A bug must not end the relay for good: log it and start over like a disconnect.
                log.exception("relay failed", extra={"retry_in_s": delay})
            self._metrics.relay_reconnects.inc()
            if self._subscribed_before and self._ready:
                delay = 0.1
            self._set_ready(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)

    def handle(self, channel: str, payload: bytes) -> None:
        """Dispatch one published message to the sessions that watch its channel."""
        if channel.startswith(self._keys.channel + ":"):
            self._handle_update(self._keys.instrument_of_channel(channel), payload)
        elif channel.startswith(self._keys.alerts_channel + ":"):
            self._handle_alert(self._keys.user_of_alerts_channel(channel), payload)

    def _handle_update(self, instrument: str, payload: bytes) -> None:
        self._metrics.updates_received.inc()
        watchers = self.instruments.subscribers(instrument)
        if not watchers or self._paused:
            return
        update = parse_update(instrument, payload)
        if update is None:
            self._metrics.invalid_updates.inc()
            log.warning("invalid update on pub/sub", extra={"instrument": instrument})
            return
        state = update.state
        sent_ns = self._clock()
        times = state.times
        if times.cached_ns:
            self._metrics.cached_to_sent.observe(max(0, sent_ns - times.cached_ns) / 1e9)
        if times.ingest_ns:
            self._metrics.ingest_to_sent.observe(max(0, sent_ns - times.ingest_ns) / 1e9)
        delta = Delta(state, sent_ns)
        self._metrics.updates_relayed.inc()
        span = self._span(update.traceparent, delta, watchers) if self._tracer.enabled else None
        dropped = [subscriber for subscriber in watchers if not subscriber.deliver(delta)]
        for subscriber in dropped:
            self.forget(subscriber)
        if span is not None:
            span.end(end_time=self._clock())

    def _span(self, traceparent: str, delta: Delta, watchers: Collection[Subscriber]) -> Span | None:
        """For a sampled update (it carries a trace context): a span of its fan-out, from its
        arrival to the last session it was queued for (each session's writer sends it from there)."""
        parent = tracing.parent_of(traceparent)
        if parent is None:
            return None
        attributes = {"instrument": delta.instrument, "version": delta.version, "sessions": len(watchers)}
        return self._tracer.start("dashboard_api relay", delta.state.times.sent_ns, parent, attributes)

    def _handle_alert(self, user: str, payload: bytes) -> None:
        watchers = self.users.subscribers(user)
        if not watchers:
            return
        event = alerts_pb2.AlertEvent()
        try:
            event.ParseFromString(payload)
        except DecodeError:
            self._metrics.invalid_updates.inc()
            return
        if event.alert.user_id != user:
            self._metrics.invalid_updates.inc()
            return
        dropped = [subscriber for subscriber in watchers if not subscriber.deliver_alert(event)]
        for subscriber in dropped:
            self.forget(subscriber)

    async def _listen(self) -> None:
        connection = await self._connector.connect(self.handle, self._on_confirmation)
        try:
            self._attach(connection)
            await connection.run(HEARTBEAT_S, STALL_S)
        finally:
            self._connection = None
            connection.close()

    def _attach(self, connection: Subscription) -> None:
        """Subscribe a fresh connection to everything wanted; commands go to it from now on."""
        # Same channel objects (sessions may be waiting on their events), fresh bookkeeping.
        self._channels = {name: channel for name, channel in self._channels.items() if channel.wanted}
        for channel in self._channels.values():
            channel.pending = 1
            channel.confirmed.clear()
        # The bare channel name is a channel nobody publishes on: its confirmation says the
        # connection works even when no client watches anything.
        connection.subscribe([self._keys.channel, *self._channels])
        self._connection = connection

    def _on_confirmation(self, kind: str, name: str) -> None:
        """Redis confirmed a SUBSCRIBE (`kind` "subscribe") or an UNSUBSCRIBE of `name`."""
        if name == self._keys.channel:
            if kind == "subscribe":
                self._on_connected()
            return
        channel = self._channels.get(name)
        if channel is None or channel.pending == 0:
            return
        channel.pending -= 1
        if channel.pending == 0:
            if channel.wanted:
                channel.confirmed.set()
            else:
                del self._channels[name]

    def _on_connected(self) -> None:
        self._set_ready(True)
        if self._subscribed_before:
            self._resync_all()
        self._subscribed_before = True

    def _subscribe(self, names: list[str]) -> None:
        """Want `names`: SUBSCRIBE to those not wanted already."""
        send = []
        for name in names:
            if name == self._keys.channel:
                send.append(name)
                continue
            channel = self._channels.get(name)
            if channel is None:
                channel = self._channels[name] = _Channel()
            elif channel.wanted:
                continue
            channel.wanted = True
            send.append(name)
        self._send(True, send)

    def _unsubscribe(self, names: list[str]) -> None:
        send = []
        for name in names:
            channel = self._channels.get(name)
            if channel is None or not channel.wanted:
                continue
            channel.wanted = False
            channel.confirmed.clear()
            send.append(name)
        self._send(False, send)

    def _send(self, subscribe: bool, names: list[str]) -> None:
        connection = self._connection
        if not names:
            return
        if connection is None:
            # Not connected: _attach subscribes to everything wanted once it is; nothing sent
            # means nothing to wait for, so forget channels nobody wants any more.
            for name in names:
                channel = self._channels.get(name)
                if channel is not None and not channel.wanted and channel.pending == 0:
                    del self._channels[name]
            return
        for name in names:
            channel = self._channels.get(name)
            if channel is not None:
                channel.pending += 1
        if subscribe:
            connection.subscribe(names)
        else:
            connection.unsubscribe(names)

    def _confirmations(self, names: list[str]) -> list[asyncio.Event]:
        return [self._channels[name].confirmed for name in names if name in self._channels]

    def _resync_all(self) -> None:
        log.info("relay resubscribed, resyncing sessions")
        subscribers = {subscriber for subscriber, _ in self.instruments.items()}
        for subscriber in subscribers:
            if not subscriber.resync():
                self.forget(subscriber)

    def _set_ready(self, ready: bool) -> None:
        if ready != self._ready:
            log.info("relay ready" if ready else "relay not ready")
        self._ready = ready
        self._metrics.relay_ready.set(1 if ready else 0)
