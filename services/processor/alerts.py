"""Price alerts: the rules of one instrument's alert book. Pure: no I/O, no clock.

An alert waits in its instrument's book until the first trade that crosses its level:
- **above** triggers on a trade at or above the level, **below** on a trade at or below it;
- alerts are **one-shot**: the trade that triggers an alert also takes it out of the book;
- only **trades** trigger: a quote is not a price anybody dealt at;
- a trade meets the book as it is when the processor applies the trade. Commands and ticks
  come from two topics, so "before" means in the order the processor applies them; an alert
  never sees a trade applied before its create.

Commands:
- **create** is checked (instrument equal to the record key and well formed, direction above or
  below, price a decimal > 0 of at most 40 characters, the instrument's ticks on the partition
  the command came from, room in the book) and answered with ACTIVE, or with REJECTED and a
  reason a person can read. Room means fewer than `Limits.alerts` alerts and, encoded, at most
  `Limits.book_bytes`: the book is one changelog record, and Kafka refuses records over about
  1 MB (a refused record would fail every transaction that carries it).
  A create whose alert id is already in the book is ignored: it is the same command again.
- **cancel** takes the alert out of the book if its creator asks, and emits CANCELLED.
  Anything else (an unknown id, another user's alert, a mismatched instrument) emits nothing:
  an event states an alert's own status, and such an alert may well be alive in another book or
  have triggered already, so a REJECTED "not found" would overwrite its true status in the
  user's cache. Callers count these as `not_found`.

Each book keeps its alerts sorted by level, the next to trigger first, so a trade that crosses
nothing costs two comparisons, and one that does two binary searches plus the alerts it
triggers, however many alerts wait: every trade of an instrument with alerts is evaluated,
while commands are rare (a create or cancel copies the book: about 0.3 ms at 10 000 alerts).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum

from tapewire import decimals
from tapewire.ticks import INSTRUMENT_PATTERN
from tapewire.v1 import alerts_pb2 as apb

from .enrich import Position, State

MAX_PRICE_LENGTH = 40
# An upper bound on what an alert adds to an encoded book besides its strings: the tags and
# length prefixes, the direction and creation time varints, and the repeated-field framing.
_ENCODING_OVERHEAD = 40


class Direction(IntEnum):
    """The wire values of tapewire.v1.AlertDirection that an active alert can have."""

    ABOVE = apb.ALERT_DIRECTION_ABOVE
    BELOW = apb.ALERT_DIRECTION_BELOW


class Status(IntEnum):
    """The wire values of tapewire.v1.AlertStatus: ACTIVE, then one terminal status."""

    ACTIVE = apb.ALERT_STATUS_ACTIVE
    TRIGGERED = apb.ALERT_STATUS_TRIGGERED
    CANCELLED = apb.ALERT_STATUS_CANCELLED
    REJECTED = apb.ALERT_STATUS_REJECTED


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert as its creator asked for it (the wire `Alert`), echoed unchanged in its events."""

    alert_id: str
    user_id: str
    instrument: str
    direction: int
    price: str
    created_ns: int = 0


@dataclass(frozen=True, slots=True)
class Armed:
    """An alert in a book: checked, with its price parsed once and its encoded size bounded."""

    alert: Alert
    level: Decimal
    size: int = 0

    @property
    def above(self) -> bool:
        return self.alert.direction == Direction.ABOVE


@dataclass(frozen=True, slots=True)
class Book:
    """The active alerts of one instrument.

    `source` is the position, in the commands topic, of the last command that changed the book;
    its partition is the instrument's partition (commands are co-partitioned with ticks).
    """

    instrument: str
    source: Position
    above: tuple[Armed, ...] = ()  # ascending level: above[0] triggers first
    below: tuple[Armed, ...] = ()  # descending level: below[0] triggers first
    # alert id -> alert, over both tuples: a book may hold thousands, and commands look up ids.
    by_id: Mapping[str, Armed] = field(default_factory=dict, compare=False, repr=False)
    size: int = field(default=0, compare=False, repr=False)  # sum of the alerts' sizes

    def __len__(self) -> int:
        return len(self.above) + len(self.below)

    def alerts(self) -> Iterator[Alert]:
        for armed in (*self.above, *self.below):
            yield armed.alert

    def find(self, alert_id: str) -> Armed | None:
        return self.by_id.get(alert_id)


@dataclass(frozen=True, slots=True)
class Event:
    """A change of one alert. The trigger fields are set on TRIGGERED only."""

    alert: Alert
    status: Status
    reason: str = ""
    trigger_price: Decimal | None = None
    trigger_version: int = 0
    exchange_ns: int = 0
    ingest_ns: int = 0


@dataclass(frozen=True, slots=True)
class Create:
    alert: Alert

    @property
    def instrument(self) -> str:
        return self.alert.instrument


@dataclass(frozen=True, slots=True)
class Cancel:
    alert_id: str
    user_id: str
    instrument: str


Command = Create | Cancel


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one book may hold: alerts, and bytes once encoded (see the module docstring)."""

    alerts: int = 10_000
    book_bytes: int = 900_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the book after it (the same object when unchanged), its events, and
    a bounded label for metrics (applied, rejected, ignored, not_found)."""

    book: Book | None
    events: tuple[Event, ...]
    label: str


class Refusal(ValueError):
    """Why an alert cannot be armed; the message is the reason its creator reads."""


def apply_command(
    book: Book | None,
    command: Command,
    key: str,
    source: Position,
    limits: Limits,
    ticks_partition: int | None = None,
) -> Outcome:
    """Apply a command read at `source` with record key `key` to the book of its instrument.

    `ticks_partition` is the partition the instrument's ticks arrive on when known: a create
    routed elsewhere could never trigger, so it is refused rather than left to wait forever.
    """
    if isinstance(command, Create):
        return create(book, command.alert, key, source, limits, ticks_partition)
    return cancel(book, command, key, source)


def create(
    book: Book | None,
    alert: Alert,
    key: str,
    source: Position,
    limits: Limits,
    ticks_partition: int | None = None,
) -> Outcome:
    """ACTIVE and the book with the alert in it; REJECTED and the same book; or, for an alert id
    the book holds already, nothing."""
    if book is not None and book.find(alert.alert_id) is not None:
        return Outcome(book, (), "ignored")
    try:
        armed = arm(alert, key)
        if ticks_partition is not None and ticks_partition != source.partition:
            raise Refusal(
                f"routed to partition {source.partition} but the ticks of {alert.instrument}"
                f" are on partition {ticks_partition}"
            )
        if book is not None:
            _check_room(book, armed, limits)
    except Refusal as refusal:
        return Outcome(book, (Event(alert, Status.REJECTED, reason=str(refusal)),), "rejected")
    return Outcome(_insert(book, armed, source), (Event(alert, Status.ACTIVE),), "applied")


def cancel(book: Book | None, request: Cancel, key: str, source: Position) -> Outcome:
    """CANCELLED and the book without the alert, when its creator asks; otherwise nothing."""
    armed = book.find(request.alert_id) if book is not None and request.instrument == key else None
    if book is None or armed is None or armed.alert.user_id != request.user_id:
        return Outcome(book, (), "not_found")
    above, below = book.above, book.below
    if armed.above:
        above = _without(above, armed, _level(armed), _level)
    else:
        below = _without(below, armed, _negated_level(armed), _negated_level)
    remaining = Book(
        book.instrument, source, above, below, _ids_without(book.by_id, (armed,)), book.size - armed.size
    )
    return Outcome(remaining, (Event(armed.alert, Status.CANCELLED),), "applied")


def on_trade(book: Book, price: Decimal, state: State) -> tuple[Book, tuple[Event, ...]]:
    """Trigger every alert a trade at `price` crosses; `state` is the instrument's state right
    after the trade (its version and stage times go into the events)."""
    if (not book.above or book.above[0].level > price) and (not book.below or book.below[0].level < price):
        return book, ()  # the common case, without a search
    crossed_above = bisect_right(book.above, price, key=_level)  # levels <= price
    crossed_below = bisect_right(book.below, -price, key=_negated_level)  # levels >= price
    if not crossed_above and not crossed_below:
        return book, ()
    events = tuple(
        Event(
            armed.alert,
            Status.TRIGGERED,
            trigger_price=price,
            trigger_version=state.version,
            exchange_ns=state.exchange_ns,
            ingest_ns=state.ingest_ns,
        )
        for armed in (*book.above[:crossed_above], *book.below[:crossed_below])
    )
    gone = (*book.above[:crossed_above], *book.below[:crossed_below])
    remaining = Book(
        book.instrument,
        book.source,
        book.above[crossed_above:],
        book.below[crossed_below:],
        _ids_without(book.by_id, gone),
        book.size - sum(armed.size for armed in gone),
    )
    return remaining, events


def arm(alert: Alert, key: str) -> Armed:
    """The alert ready for a book, or `Refusal` with the first rule it breaks."""
    if alert.instrument != key:
        raise Refusal(f"instrument {alert.instrument[:40]!r} does not match the record key {key[:40]!r}")
    if not INSTRUMENT_PATTERN.match(alert.instrument):
        raise Refusal(f"instrument {alert.instrument[:40]!r} must be 1-32 chars of [A-Za-z0-9._:/-]")
    if alert.direction not in (Direction.ABOVE, Direction.BELOW):
        raise Refusal("direction must be above or below")
    level = decimals.parse(alert.price) if len(alert.price) <= MAX_PRICE_LENGTH else None
    if level is None or level <= 0:
        raise Refusal(f"price {alert.price[:40]!r} must be a decimal > 0 of at most {MAX_PRICE_LENGTH} chars")
    return Armed(alert, level, encoded_size(alert))


def encoded_size(alert: Alert) -> int:
    """An upper bound on the bytes `alert` adds to an encoded AlertBook."""
    texts = (alert.alert_id, alert.user_id, alert.instrument, alert.price)
    return sum(len(text.encode()) for text in texts) + _ENCODING_OVERHEAD


def rebuild(instrument: str, alerts: Iterable[Alert], source: Position) -> Book:
    """A book from its stored alerts; raises `Refusal` on one that is not valid. Alerts of one
    level keep the order they are given in (book_to_proto stores them in firing order)."""
    armed = [arm(alert, instrument) for alert in alerts]
    above = tuple(sorted((a for a in armed if a.above), key=_level))
    below = tuple(sorted((a for a in armed if not a.above), key=_negated_level))
    by_id = {a.alert.alert_id: a for a in armed}
    return Book(instrument, source, above, below, by_id, sum(a.size for a in armed))


def _check_room(book: Book, armed: Armed, limits: Limits) -> None:
    if len(book) >= limits.alerts:
        raise Refusal(f"{book.instrument} already has the maximum of {limits.alerts} active alerts")
    if book.size + armed.size > limits.book_bytes:
        raise Refusal(f"{book.instrument} has no room left for alerts ({limits.book_bytes} bytes)")


def _insert(book: Book | None, armed: Armed, source: Position) -> Book:
    """The book with `armed` added after the alerts of the same level (first come, first fired)."""
    above, below = (book.above, book.below) if book is not None else ((), ())
    if armed.above:
        at = bisect_right(above, armed.level, key=_level)
        above = (*above[:at], armed, *above[at:])
    else:
        at = bisect_right(below, -armed.level, key=_negated_level)
        below = (*below[:at], armed, *below[at:])
    by_id = {**(book.by_id if book is not None else {}), armed.alert.alert_id: armed}
    size = (book.size if book is not None else 0) + armed.size
    return Book(armed.alert.instrument, source, above, below, by_id, size)


def _without(
    alerts: tuple[Armed, ...], armed: Armed, sort_key: Decimal, key: Callable[[Armed], Decimal]
) -> tuple[Armed, ...]:
    """`alerts` (sorted by `key`) without `armed`, found among the alerts of its level."""
    at = bisect_left(alerts, sort_key, key=key)
    while alerts[at] is not armed:
        at += 1
    return (*alerts[:at], *alerts[at + 1 :])


def _ids_without(by_id: Mapping[str, Armed], gone: Iterable[Armed]) -> dict[str, Armed]:
    remaining = dict(by_id)
    for armed in gone:
        del remaining[armed.alert.alert_id]
    return remaining


def _level(armed: Armed) -> Decimal:
    return armed.level


def _negated_level(armed: Armed) -> Decimal:
    return -armed.level
