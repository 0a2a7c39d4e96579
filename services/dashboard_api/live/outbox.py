"""One connection's send queue: the slow-client ladder and per-instrument throttles (pure, no I/O).

The relay offers updates (`offer_delta`) and the session queues its own messages
(`offer_control`) without ever waiting; the connection's sender takes the next thing to send
with `pop`. Memory stays bounded however slowly the client reads:

- **normal**: updates queue in order, up to `capacity`.
- **conflating**: the queue is full, or the session says the client's socket has taken
  nothing for a while (`stall`). New updates replace the pending update of the same
  instrument in `latest` (at most one per subscribed instrument) and are counted as dropped.
  When the sender has emptied the queue it gets a `ConflatedNotice`, then those latest updates.
- **resyncing**: still conflating `conflation_timeout_s` after it began. Queued updates are
  thrown away and a `ResyncRequest` goes to the front of what is left: the sender answers it
  with a fresh snapshot. Updates meanwhile again wait in `latest`.
- **closing**: the resync has not been taken by the sender within `resync_timeout_s`:
  `offer_delta` says CLOSE and the session disconnects the client (4008).

Control messages (replies, snapshot requests, alert events) are never conflated: they are
few, rate-limited at the source, and have a small allowance of their own above `capacity`.

Throttles: an instrument with a minimum interval is sent at most once per interval; an update
that comes sooner is held (the newest one wins) until its slot comes round.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Versioned(Protocol):
    @property
    def instrument(self) -> str: ...

    @property
    def version(self) -> int: ...


D = TypeVar("D", bound=Versioned)
C = TypeVar("C")


class Ladder(enum.Enum):
    NORMAL = "normal"
    CONFLATING = "conflating"
    RESYNCING = "resyncing"


class Verdict(enum.Enum):
    QUEUED = "queued"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class ConflatedNotice:
    dropped: int
    instruments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    """Send a fresh snapshot of everything subscribed: queued updates were thrown away."""


RESYNC = ResyncRequest()


class _ControlEntry:
    """A control message in the queue. Updates are queued bare and control messages wrapped,
    so that a queued update costs one pointer: a full queue of every silent client is most of
    what they hold (at 2,048 per client, a pair per entry was 128 KiB per client more)."""

    __slots__ = ("item",)

    def __init__(self, item: object) -> None:
        self.item = item


_RESYNC_ENTRY = _ControlEntry(RESYNC)


class Outbox(Generic[D, C]):
    def __init__(
        self,
        capacity: int,
        conflation_timeout_s: float,
        resync_timeout_s: float,
        control_allowance: int = 64,
    ) -> None:
        self.capacity = capacity
        self._conflation_timeout_s = conflation_timeout_s
        self._resync_timeout_s = resync_timeout_s
        self._control_allowance = control_allowance
        self._queue: deque[D | _ControlEntry] = deque()
        self._deltas_queued = 0
        self._latest: dict[str, D] = {}
        self._dropped = 0
        self.ladder = Ladder.NORMAL
        self._ladder_since = 0.0
        # Moves down the ladder since the session last looked (`take_steps`); None is "close".
        self._steps: list[Ladder | None] = []
        # Throttles: instrument -> minimum interval; when it may next be sent; what waits.
        self._interval: dict[str, float] = {}
        self._next_slot: dict[str, float] = {}
        self._held: dict[str, D] = {}
        self._due: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._queue) + len(self._latest) + len(self._held)

    # -- producer side --------------------------------------------------------------------

    def offer_delta(self, delta: D, now: float) -> Verdict:
        if self.ladder is Ladder.NORMAL:
            if self._deltas_queued < self.capacity:
                self._queue.append(delta)
                self._deltas_queued += 1
                return Verdict.QUEUED
            self._move(Ladder.CONFLATING, now)
        elif self.ladder is Ladder.CONFLATING and now - self._ladder_since > self._conflation_timeout_s:
            self._start_resync(now)
        elif self.ladder is Ladder.RESYNCING and now - self._ladder_since > self._resync_timeout_s:
            self._steps.append(None)
            return Verdict.CLOSE
        if self._latest.pop(delta.instrument, None) is not None:
            self._dropped += 1
        self._latest[delta.instrument] = delta
        return Verdict.QUEUED

    def offer_control(self, item: C) -> bool:
        """Queue a control message; False when even the allowance is used up (close the client)."""
        if len(self._queue) - self._deltas_queued >= self._control_allowance:
            return False
        self._queue.append(_ControlEntry(item))
        return True

    def stall(self, now: float) -> None:
        """The client's socket has taken nothing for a while: conflate from now on, however
        much room the queue has left (what is queued stays, in order, ahead of the latest)."""
        if self.ladder is Ladder.NORMAL:
            self._move(Ladder.CONFLATING, now)

    def resync(self, now: float) -> None:
        """Skip straight to a resync (e.g. an operator paused the relay and resumed it)."""
        self._start_resync(now)

    # -- throttles ------------------------------------------------------------------------

    def throttle(self, instruments: tuple[str, ...], max_rate: float) -> None:
        """At most `max_rate` updates per second for each of `instruments`; 0 lifts the throttle."""
        for instrument in instruments:
            if max_rate > 0:
                self._interval[instrument] = 1.0 / max_rate
                continue
            self._interval.pop(instrument, None)
            self._next_slot.pop(instrument, None)
            held = self._held.pop(instrument, None)
            if held is not None:
                self._queue.append(held)
                self._deltas_queued += 1

    def forget(self, instruments: tuple[str, ...]) -> None:
        """Unsubscribed: drop anything waiting for these instruments outside the queue."""
        for instrument in instruments:
            self._interval.pop(instrument, None)
            self._next_slot.pop(instrument, None)
            self._held.pop(instrument, None)
            self._latest.pop(instrument, None)

    # -- sender side ----------------------------------------------------------------------

    def pop(self, now: float) -> D | C | ConflatedNotice | ResyncRequest | None:
        """The next thing to send, or None when nothing is due now (see `next_due`)."""
        while True:
            held = self._pop_due(now)
            if held is not None:
                return held
            entry = self._next_entry(now)
            if entry is None:
                return None
            if type(entry) is _ControlEntry:
                return entry.item  # type: ignore[return-value]
            delta: D = entry  # type: ignore[assignment]
            if not self._must_wait(delta, now):
                return delta

    def pop_update(self, now: float) -> D | None:
        """The next thing to send if it is an update that may go now; else None, and whatever is
        next (a control message, the conflation notice) stays queued for `pop`. What the
        session's fast path takes: updates only, in the order `pop` would give them."""
        while True:
            held = self._pop_due(now)
            if held is not None:
                return held
            if not self._queue or type(self._queue[0]) is _ControlEntry:
                return None
            delta: D = self._queue.popleft()  # type: ignore[assignment]
            self._deltas_queued -= 1
            if not self._must_wait(delta, now):
                return delta

    @property
    def holding(self) -> bool:
        """Whether throttled updates wait for their slot (see `next_due`)."""
        return bool(self._held)

    def has_ready(self) -> bool:
        """Whether `pop` has something for the sender besides held (throttled) updates."""
        return bool(self._queue) or (self.ladder is Ladder.CONFLATING and bool(self._dropped or self._latest))

    def next_due(self) -> float | None:
        """When the earliest held update may be sent, if any is held."""
        while self._due and self._due[0][1] not in self._held:
            heapq.heappop(self._due)
        return self._due[0][0] if self._due else None

    @property
    def has_steps(self) -> bool:
        return bool(self._steps)

    def take_steps(self) -> list[Ladder | None]:
        steps, self._steps = self._steps, []
        return steps

    # -- internals ------------------------------------------------------------------------

    def _next_entry(self, now: float) -> D | _ControlEntry | None:
        if self._queue:
            entry = self._queue.popleft()
            if type(entry) is not _ControlEntry:
                self._deltas_queued -= 1
            elif entry is _RESYNC_ENTRY:
                # The sender reads again and is about to snapshot: `latest` drains after it,
                # and the conflation clock starts over.
                self.ladder = Ladder.CONFLATING
                self._ladder_since = now
                self._dropped = 0
            return entry
        if self.ladder is Ladder.CONFLATING:
            if self._dropped:
                notice = ConflatedNotice(self._dropped, tuple(self._latest))
                self._dropped = 0
                return _ControlEntry(notice)
            if self._latest:
                instrument = next(iter(self._latest))
                return self._latest.pop(instrument)
            self.ladder = Ladder.NORMAL
        return None

    def _must_wait(self, delta: D, now: float) -> bool:
        interval = self._interval.get(delta.instrument)
        if interval is None:
            return False
        slot = self._next_slot.get(delta.instrument, 0.0)
        if now >= slot and delta.instrument not in self._held:
            self._next_slot[delta.instrument] = now + interval
            return False
        if delta.instrument not in self._held:
            heapq.heappush(self._due, (slot, delta.instrument))
        self._held[delta.instrument] = delta  # the newest wins
        return True

    def _pop_due(self, now: float) -> D | None:
        while self._due and self._due[0][0] <= now:
            _, instrument = heapq.heappop(self._due)
            held = self._held.pop(instrument, None)
            if held is not None:
                self._next_slot[instrument] = now + self._interval.get(instrument, 0.0)
                return held
        return None

    def _start_resync(self, now: float) -> None:
        kept = [entry for entry in self._queue if type(entry) is _ControlEntry and entry is not _RESYNC_ENTRY]
        self._queue = deque([_RESYNC_ENTRY, *kept])
        self._deltas_queued = 0
        self._latest.clear()
        self._held.clear()
        self._due.clear()
        self._dropped = 0
        self._move(Ladder.RESYNCING, now)

    def _move(self, to: Ladder, now: float) -> None:
        self.ladder = to
        self._ladder_since = now
        self._steps.append(to)
