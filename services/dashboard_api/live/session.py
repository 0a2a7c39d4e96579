"""One live client, whatever carries it (WebSocket or gRPC): subscriptions, resume and sending.

Snapshot then deltas, without a race. On subscribe the session registers its interest with the
relay (which subscribes to the channels) and queues a snapshot request behind whatever is
queued. The sender, on reaching the request, first waits until Redis has confirmed the
channels, then reads states (or replays history) and remembers the version it sent per
instrument. From then on it sends a queued update only when its version is above the last one
sent. cache_updater writes a state, appends it to the history and publishes it in one atomic
script, so an update is either in what was read (and dropped here) or published after it (and
queued, since the channel was confirmed first): every later version arrives exactly once.

Resume uses the same machinery: `since` replaces the snapshot read by a history read, and the
relay's own resync after losing Redis is a resume from the versions already sent.

All waiting happens in the sender task; the relay and the receive side only queue (outbox.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tapewire.auth import Principal
from tapewire.errors import StoreUnavailable
from tapewire.v1 import alerts_pb2, stream_pb2

from ..metrics import DashboardApiMetrics
from ..stores.states import StateStore
from . import protocol
from .encoders import Delta, Encoder, Frame, updates_frame
from .outbox import RESYNC, ConflatedNotice, Ladder, Outbox, ResyncRequest, Verdict
from .relay import Relay, confirmed

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
QUEUE_WAIT_SAMPLE = 16

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4001
CLOSE_SLOW_CONSUMER = 4008
CLOSE_IDLE = 4009
CLOSE_BY_OPERATOR = 4010


@dataclass(frozen=True, slots=True)
class SessionLimits:
    send_queue_size: int
    max_subscriptions: int
    conflation_timeout_s: float
    resync_timeout_s: float
    heartbeat_s: float
    # Updates replayed to one resuming subscribe, in all: beyond it instruments get a snapshot.
    max_replay_updates: int
    # How long a subscribe may wait for Redis to confirm its channels.
    subscribe_timeout_s: float
    # A socket that has taken nothing for this long conflates the session (the fast path's
    # writer only: it is the one that knows the transport's state).
    stalled_socket_s: float = 5.0
    # Updates per frame at most (1: one frame each, for clients that did not ask for batches).
    max_batch: int = 1


class Transport(Protocol):
    async def send(self, frame: Frame) -> None: ...


class DirectWriter(Protocol):
    """What the fast path writes to (live/direct.py): synchronously, several frames at once."""

    @property
    def writable(self) -> bool: ...

    async def wait_writable(self) -> None: ...

    def write(self, frames: Sequence[Frame]) -> None: ...

    def write_updates(self, batches: Sequence[list[Delta]], encoder: Encoder) -> None: ...


class AlertHandler(Protocol):
    async def handle(
        self,
        user_id: str,
        command: protocol.CreateAlert | protocol.CancelAlert | protocol.ListAlerts,
        on_failed: Callable[[str, str], None],
    ) -> stream_pb2.ServerMessage | protocol.ClientError: ...


@dataclass(frozen=True, slots=True)
class _SnapshotRequest:
    instruments: tuple[str, ...]
    since: dict[str, int]
    request_id: str
    confirmations: list[asyncio.Event]


@dataclass(frozen=True, slots=True)
class _ResumeAll:
    """The relay lost Redis: catch up on every instrument from the versions already sent."""


@dataclass(frozen=True, slots=True)
class _Forget:
    instruments: tuple[str, ...]
    request_id: str


_Control = _SnapshotRequest | _ResumeAll | _Forget | stream_pb2.ServerMessage


@dataclass(slots=True)
class SessionInfo:
    """What an operator sees of a session (admin endpoints)."""

    connection_id: str
    user_id: str
    transport: str
    encoding: str
    peer: str
    connected_at_ns: int = field(default_factory=time.time_ns)


class Session:
    """The relay calls `deliver`, `deliver_alert` and `resync`; the transport calls `handle` with
    each client command and runs `run_sender()` until `stopped` is set."""

    def __init__(
        self,
        info: SessionInfo,
        principal: Principal,
        transport: Transport,
        encoder: Encoder,
        relay: Relay,
        states: StateStore,
        metrics: DashboardApiMetrics,
        limits: SessionLimits,
        alerts: AlertHandler | None = None,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        direct: DirectWriter | None = None,
    ) -> None:
        self.info = info
        self.principal = principal
        self._transport = transport
        self._encoder = encoder
        self._relay = relay
        self._states = states
        self._metrics = metrics
        self._limits = limits
        self._alerts = alerts
        self._clock = clock
        self._monotonic = monotonic
        self._outbox: Outbox[Delta, _Control] = Outbox(
            limits.send_queue_size, limits.conflation_timeout_s, limits.resync_timeout_s
        )
        self._wake = asyncio.Event()
        # Sender side: the version last sent per instrument, present once its snapshot went out.
        self._sent: dict[str, int] = {}
        self.stopped = asyncio.Event()
        self.finished = asyncio.Event()
        self.close_reason: tuple[int, str] | None = None
        self._last_sent_at = monotonic()
        self._updates_sent = 0
        self._beat: asyncio.TimerHandle | None = None
        # The fast path (see `_flush`): its writer, whether a flush is scheduled, and whether
        # the sender is parked waiting for work (and until when, if a throttle timer is set).
        self._direct = direct
        self._flush_scheduled = False
        self._parked = False
        self._parked_until: float | None = None
        # Since when the sender has been waiting for the socket to take more, if it is.
        self._stalled_since: float | None = None

    # -- called by the relay, synchronously, never awaiting the client ----------------------

    def deliver(self, delta: Delta) -> bool:
        if self.stopped.is_set():
            return False
        now = self._monotonic()
        if self._stalled_since is not None and now - self._stalled_since > self._limits.stalled_socket_s:
            self._outbox.stall(now)
        verdict = self._outbox.offer_delta(delta, now)
        if self._outbox.has_steps:
            self._note_steps()
        if verdict is Verdict.CLOSE:
            self._metrics.slow_consumer_disconnects.inc()
            self.request_close(CLOSE_SLOW_CONSUMER, "too slow: send queue overflowed, conflated and resynced")
            return False
        if self._parked and not self._flush_scheduled:
            # Once per session per burst: the relay offers a whole bulk read before it runs
            # this, so the updates of one read leave in one write. A sender that is not
            # parked (busy, or waiting for its socket to drain) takes the queue up itself:
            # for a stalled client, a callback per update would be most of what it costs.
            self._flush_scheduled = True
            self._relay.flush_soon(self._flush)
        return True

    def deliver_alert(self, event: alerts_pb2.AlertEvent) -> bool:
        message = stream_pb2.ServerMessage()
        message.alert.CopyFrom(event)
        return self._control(message)

    def resync(self) -> bool:
        return self._control(_ResumeAll())

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Register for the user's alert events (when alerts are served) and say welcome."""
        if self._alerts is not None:
            self._relay.watch_alerts(self, self.principal.user_id)

    def request_close(self, code: int, reason: str) -> None:
        if not self.stopped.is_set():
            self.close_reason = (code, reason)
            self._metrics.closes.labels(str(code)).inc()
            self.stopped.set()
            self._wake.set()

    def finish(self) -> None:
        """The transport is done with the session: drop its interest everywhere."""
        self.stopped.set()
        self._relay.forget(self)
        self.finished.set()

    @property
    def ladder(self) -> Ladder:
        return self._outbox.ladder

    @property
    def max_batch(self) -> int:
        return self._limits.max_batch

    @property
    def queued(self) -> int:
        return len(self._outbox)

    @property
    def subscriptions(self) -> int:
        return len(self._relay.instruments.keys_of(self))

    # -- client commands --------------------------------------------------------------------

    async def handle(self, command: protocol.Command) -> None:
        if isinstance(command, protocol.Subscribe):
            self.subscribe(command)
        elif isinstance(command, protocol.Unsubscribe):
            self._relay.unwatch(self, command.instruments)
            self._outbox.forget(command.instruments)
            self._control(_Forget(command.instruments, command.request_id))
        elif isinstance(command, protocol.Ping):
            message = stream_pb2.ServerMessage()
            message.pong.request_id = command.request_id
            message.pong.server_time_ns = self._clock()
            self._control(message)
        elif self._alerts is None:
            self.error(
                protocol.ClientError(protocol.UNKNOWN_TYPE, "alerts are not served here", command.request_id)
            )
        else:
            reply = await self._alerts.handle(self.principal.user_id, command, self._alert_failed)
            if isinstance(reply, protocol.ClientError):
                self.error(reply)  # counted and logged like every other client error
            else:
                self._control(reply)

    def subscribe(self, command: protocol.Subscribe) -> None:
        watched = self._relay.instruments.keys_of(self)
        added = sum(1 for instrument in command.instruments if instrument not in watched)
        limit = self._limits.max_subscriptions
        if len(watched) + added > limit:
            reason = (
                f"at most {limit} subscriptions per connection: {len(watched)} active, {added} more asked"
            )
            self.error(protocol.ClientError(protocol.TOO_MANY_SUBSCRIPTIONS, reason, command.request_id))
            return
        self._outbox.throttle(command.instruments, command.max_rate)
        # Interest first, then the snapshot request behind it: see the module docstring.
        confirmations = self._relay.watch(self, command.instruments)
        self._control(_SnapshotRequest(command.instruments, command.since, command.request_id, confirmations))

    def error(self, error: protocol.ClientError) -> None:
        self._metrics.client_errors.labels(error.code).inc()
        log.info(
            "client error",
            extra={"connection": self.info.connection_id, "code": error.code, "reason": error.reason},
        )
        message = stream_pb2.ServerMessage()
        message.error.code = error.code
        message.error.reason = error.reason
        message.error.request_id = error.request_id
        self._control(message)

    def send_later(self, message: stream_pb2.ServerMessage) -> None:
        self._control(message)

    # -- the sender -------------------------------------------------------------------------

    async def run_sender(self) -> None:
        """Send until the session stops. A failure of the transport ends it (raised)."""
        self._beat = asyncio.get_running_loop().call_later(self._limits.heartbeat_s, self._heartbeat_timer)
        try:
            while not self.stopped.is_set():
                if self._direct is not None and not self._direct.writable:
                    # The socket pushes back: wait for it before taking anything out of the
                    # outbox, where updates can still be conflated. A frame rendered now could
                    # not be, and would hold its bytes for as long as the client does not read.
                    self._stalled_since = self._monotonic()
                    try:
                        await self._direct.wait_writable()
                    finally:
                        self._stalled_since = None
                    continue
                now = self._monotonic()
                item = self._outbox.pop(now)
                if item is None:
                    await self._idle(now)
                    continue
                if isinstance(item, Delta):
                    item = await self._send_deltas(item, now)
                    if item is None:
                        continue
                await self._send_item(item)
        finally:
            self._beat.cancel()
            self.stopped.set()

    def _flush(self) -> None:
        """The fast path: while the sender is parked with nothing to do, and the socket takes
        more without waiting, write the updates that are due straight to it, in the caller's
        turn of the loop: no task switch, no ASGI send. Anything else (a control message, the
        conflation notice, a socket that pushes back, a new throttle deadline) wakes the sender,
        which handles it as before. Only a parked sender is bypassed, so the order of what is
        sent, and the snapshot-before-updates rule, are the sender's own."""
        self._flush_scheduled = False
        if self.stopped.is_set():
            return
        now = self._monotonic()
        direct = self._direct
        if self._parked and direct is not None and direct.writable:
            batches = self._due_batches(now)
            if batches:
                try:
                    direct.write_updates(batches, self._encoder)
                except Exception:  # the socket is gone: the sender meets it too and ends the session
                    self._wake.set()
                    return
                self._count_updates(batches[-1][-1], sum(map(len, batches)))
                self._last_sent_at = now
        if not self._parked or self._outbox.has_ready() or (self._outbox.holding and self._sooner_due()):
            self._wake.set()

    def _due_batches(self, now: float) -> list[list[Delta]]:
        """Pop the updates due now, stopping at anything else, in frames of `max_batch`."""
        step = self._limits.max_batch
        batches: list[list[Delta]] = []
        batch: list[Delta] = []
        while (delta := self._outbox.pop_update(now)) is not None:
            if self._take(delta):
                batch.append(delta)
                if len(batch) == step:
                    batches.append(batch)
                    batch = []
        if batch:
            batches.append(batch)
        return batches

    def _sooner_due(self) -> bool:
        """Whether a throttled update became due before the parked sender's timer."""
        due = self._outbox.next_due()
        return due is not None and (self._parked_until is None or due < self._parked_until)

    async def _send_deltas(
        self, first: Delta, now: float
    ) -> _Control | ConflatedNotice | ResyncRequest | None:
        """Send `first` and the updates queued right behind it, up to `max_batch` of them in one
        frame (natural batching: nothing waits for more to come, so a quiet feed's updates go
        out one by one as soon as they arrive). Returns what was popped after them, if not an
        update: the caller sends it next."""
        batch = [first] if self._take(first) else []
        after: _Control | ConflatedNotice | ResyncRequest | None = None
        while len(batch) < self._limits.max_batch:
            item = self._outbox.pop(now)
            if item is None:
                break
            if not isinstance(item, Delta):
                after = item
                break
            if self._take(item):
                batch.append(item)
        if batch:
            await self._write_updates(batch)
        return after

    def _take(self, delta: Delta) -> bool:
        """Whether `delta` is due to the client; if so it counts as sent."""
        last = self._sent.get(delta.instrument)
        if last is None or delta.version <= last:
            return False  # not snapshotted yet, unsubscribed, or already covered by the snapshot
        self._sent[delta.instrument] = delta.version
        return True

    async def _write_updates(self, deltas: list[Delta]) -> None:
        await self._transport.send(updates_frame(self._encoder, deltas))
        self._last_sent_at = self._monotonic()
        self._count_updates(deltas[-1], len(deltas))

    def _count_updates(self, last: Delta, updates: int) -> None:
        """Count `updates` sent, the last of them `last`. Per update per client, a histogram
        observation (~1.7 µs) would be a large share of the fan-out's cost: one update in
        QUEUE_WAIT_SAMPLE per session is sampled instead."""
        self._metrics.sent_by_type["update"].inc(updates)
        before = self._updates_sent
        self._updates_sent += updates
        if before // QUEUE_WAIT_SAMPLE != self._updates_sent // QUEUE_WAIT_SAMPLE:
            self._metrics.queue_wait.observe(max(0, self._clock() - last.state.times.sent_ns) / 1e9)

    async def _idle(self, now: float) -> None:
        """Wait for something to send: a wake-up (`deliver`, a control message, the heartbeat
        timer) or the slot of a throttled update. Most waits need no timer of their own: timers
        per wait were a tenth of the fan-out's CPU."""
        self._wake.clear()
        due = self._outbox.next_due()
        if now - self._last_sent_at >= self._limits.heartbeat_s and (due is None or due > now):
            await self._send_heartbeat()
            return
        if due is not None and due <= now:
            return
        timer = None if due is None else asyncio.get_running_loop().call_later(due - now, self._wake.set)
        self._parked, self._parked_until = True, due
        try:
            await self._wake.wait()
        finally:
            self._parked = False
            if timer is not None:
                timer.cancel()

    def _heartbeat_timer(self) -> None:
        """Runs about every heartbeat_s while the sender runs: wakes it when nothing was sent for
        that long (it then sends a heartbeat), else comes back when that would be the case."""
        if self.stopped.is_set():
            return
        heartbeat_s = self._limits.heartbeat_s
        quiet_for = self._monotonic() - self._last_sent_at
        if quiet_for >= heartbeat_s:
            self._wake.set()
            quiet_for = 0.0
        self._beat = asyncio.get_running_loop().call_later(heartbeat_s - quiet_for, self._heartbeat_timer)

    async def _send_item(self, item: _Control | ConflatedNotice | object) -> None:
        if isinstance(item, stream_pb2.ServerMessage):
            await self._send_message(item)
        elif isinstance(item, _SnapshotRequest):
            await self._send_snapshot(item)
        elif isinstance(item, ConflatedNotice):
            await self._send_conflated(item)
        elif item is RESYNC:
            await self._send_resync()
        elif isinstance(item, _ResumeAll):
            await self._resume_all()
        elif isinstance(item, _Forget):
            for instrument in item.instruments:
                self._sent.pop(instrument, None)
            message = stream_pb2.ServerMessage()
            message.unsubscribed.instruments.extend(item.instruments)
            message.unsubscribed.request_id = item.request_id
            await self._send_message(message)

    async def _send_snapshot(self, request: _SnapshotRequest) -> None:
        try:
            async with asyncio.timeout(self._limits.subscribe_timeout_s):
                await confirmed(request.confirmations)
        except TimeoutError:
            self._relay.unwatch(self, request.instruments)
            self._outbox.forget(request.instruments)
            self.error(
                protocol.ClientError(
                    protocol.UNAVAILABLE,
                    "live updates are unavailable (Redis): try again",
                    request.request_id,
                )
            )
            return
        watched = self._relay.instruments.keys_of(self)
        instruments = tuple(name for name in request.instruments if name in watched)
        since = {name: version for name, version in request.since.items() if name in watched}
        await self._snapshot(instruments, since, request.request_id, stream_pb2.SNAPSHOT_REASON_SUBSCRIBE)

    async def _resume_all(self) -> None:
        since = {name: version for name, version in self._sent.items() if version > 0}
        fresh = tuple(name for name, version in self._sent.items() if version == 0)
        await self._snapshot(fresh + tuple(since), since, "", stream_pb2.SNAPSHOT_REASON_RESYNC)

    async def _send_resync(self) -> None:
        """The slow-client ladder threw queued updates away: send what is current instead."""
        self._metrics.slow_client_steps.labels("resync_sent").inc()
        watched = tuple(name for name in self._relay.instruments.keys_of(self) if name in self._sent)
        await self._snapshot(watched, {}, "", stream_pb2.SNAPSHOT_REASON_RESYNC)

    async def _snapshot(
        self,
        instruments: tuple[str, ...],
        since: dict[str, int],
        request_id: str,
        reason: stream_pb2.SnapshotReason,
    ) -> None:
        """Send the snapshot message for `instruments` (resuming those in `since`), then replays.

        A version never goes back: a state at or below what the client already has is left
        out (Redis may have come back empty or behind after a failover), and a resume from
        beyond Redis's version is listed in `ahead`, its updates held back until they pass it."""
        try:
            history = await self._states.history(since, self._limits.max_replay_updates)
            plain = [name for name in instruments if name not in since] + history.gaps
            found = await self._states.read(plain)
        except StoreUnavailable as exc:
            log.warning(
                "snapshot failed, closing", extra={"connection": self.info.connection_id, "error": str(exc)}
            )
            self.request_close(CLOSE_TRY_AGAIN_LATER, "state store unavailable")
            return
        message = stream_pb2.ServerMessage()
        snapshot = message.snapshot
        snapshot.request_id = request_id
        snapshot.reason = reason
        sent_ns = self._clock()
        for state in found.states:
            known = self._sent.get(state.instrument, 0)
            if state.version < known or (
                state.version == known and reason == stream_pb2.SNAPSHOT_REASON_RESYNC
            ):
                continue
            state.times.sent_ns = sent_ns
            snapshot.states.append(state)
            self._sent[state.instrument] = state.version
        for name in found.missing:
            if self._sent.get(name, 0) == 0:
                snapshot.missing.append(name)
                self._sent[name] = 0
        snapshot.gaps.extend(history.gaps)
        for name, current in history.ahead.items():
            # Redis is behind the client (a failover lost its latest writes): say so, and hold
            # the instrument's updates back until they pass what the client holds.
            snapshot.ahead[name] = current
            self._sent[name] = max(since[name], self._sent.get(name, 0))
        replays: list[Delta] = []
        for name, states in history.replays.items():
            start = max(since[name], self._sent.get(name, 0))
            fresh = [state for state in states if state.version > start]
            span = snapshot.resumed[name]
            span.from_version = start + 1
            span.to_version = fresh[-1].version if fresh else start
            self._sent[name] = span.to_version
            replays.extend(Delta(state, sent_ns) for state in fresh)
        self._metrics.resumes.labels("replayed").inc(len(history.replays))
        self._metrics.resumes.labels("gap").inc(len(history.gaps))
        self._metrics.replayed_updates.inc(len(replays))
        await self._send_message(message)
        step = self._limits.max_batch
        for start in range(0, len(replays), step):
            await self._write_updates(replays[start : start + step])

    async def _send_conflated(self, notice: ConflatedNotice) -> None:
        self._metrics.conflated_updates.inc(notice.dropped)
        message = stream_pb2.ServerMessage()
        message.conflated.dropped = notice.dropped
        message.conflated.instruments.extend(notice.instruments)
        await self._send_message(message)

    async def _send_heartbeat(self) -> None:
        message = stream_pb2.ServerMessage()
        message.heartbeat.server_time_ns = self._clock()
        await self._send_message(message)

    async def _send_message(self, message: stream_pb2.ServerMessage) -> None:
        await self._write(self._encoder.message(message), message.WhichOneof("kind") or "unknown")

    async def _write(self, frame: Frame, kind: str, messages: int = 1) -> None:
        await self._transport.send(frame)
        self._last_sent_at = self._monotonic()
        self._metrics.sent_by_type[kind].inc(messages)

    # -- internals --------------------------------------------------------------------------

    def _control(self, item: _Control) -> bool:
        if self.stopped.is_set():
            return False
        if not self._outbox.offer_control(item):
            self._metrics.slow_consumer_disconnects.inc()
            self.request_close(CLOSE_SLOW_CONSUMER, "too slow: replies are piling up")
            return False
        self._wake.set()
        return True

    def _note_steps(self) -> None:
        for step in self._outbox.take_steps():
            name = "disconnect" if step is None else step.value
            self._metrics.slow_client_steps.labels(name).inc()
            log.info("slow client", extra={"connection": self.info.connection_id, "step": name})

    def _alert_failed(self, alert_id: str, reason: str) -> None:
        self.error(protocol.ClientError("alert_failed", f"alert {alert_id} was not recorded: {reason}"))
