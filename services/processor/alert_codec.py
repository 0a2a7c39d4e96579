"""Alerts <-> tapewire.v1 alert messages: commands in, events and the alert changelog out.

The changelog `tt_processor_alerts` holds, per partition p:
- one AlertBook per instrument of p with active alerts (key: instrument; a book that becomes
  empty is written as a tombstone, so compaction drops it);
- one position record (key `#commands`, never an instrument: `#` is outside the instrument
  alphabet) whose `source` is the offset in the commands topic up to which p's commands are
  applied. A book's own `source` cannot serve: a book that empties is deleted, and a command
  that is refused or ignored changes no book, yet both must not be applied again when a new
  consumer group re-reads the commands topic from the beginning.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from tapewire import decimals
from tapewire.errors import TapewireError
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb

from .alerts import Alert, Book, Cancel, Command, Create, Event, Status, rebuild
from .enrich import Position

COMMANDS_POSITION_KEY = b"#commands"
# Alert and user ids are UUIDs and token subjects; anything much longer is not from dashboard_api.
MAX_ID_LENGTH = 256
MALFORMED_CODES = ("empty", "too_large", "undecodable", "unaddressed")


class MalformedCommand(TapewireError):
    """A command record that addresses no alert or user, so it cannot even be refused to someone;
    `code` (one of MALFORMED_CODES) is a bounded metrics label."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def decode_command(value: bytes | None, max_record_bytes: int) -> Command:
    """A commands-topic record as a command, or `MalformedCommand`. Only the addressing (alert and
    user id) is checked here; the alert's own rules are the book's (alerts.arm)."""
    if value is None:
        raise MalformedCommand("empty", "record has no value")
    if len(value) > max_record_bytes:
        raise MalformedCommand("too_large", f"record of {len(value)} bytes exceeds {max_record_bytes}")
    try:
        wire = apb.AlertCommand.FromString(value)
    except DecodeError as exc:
        raise MalformedCommand("undecodable", f"not a tapewire.v1.AlertCommand: {exc}") from exc
    which = wire.WhichOneof("command")
    if which == "create":
        command: Command = Create(alert_from_proto(wire.create))
        _check_ids(wire.create.alert_id, wire.create.user_id)
    elif which == "cancel":
        command = Cancel(wire.cancel.alert_id, wire.cancel.user_id, wire.cancel.instrument)
        _check_ids(wire.cancel.alert_id, wire.cancel.user_id)
    else:
        raise MalformedCommand("unaddressed", "command is neither create nor cancel")
    return command


def _check_ids(alert_id: str, user_id: str) -> None:
    for name, value in (("alert_id", alert_id), ("user_id", user_id)):
        if not value or len(value) > MAX_ID_LENGTH:
            raise MalformedCommand("unaddressed", f"{name} must be 1-{MAX_ID_LENGTH} chars")


def alert_from_proto(message: apb.Alert) -> Alert:
    return Alert(
        alert_id=message.alert_id,
        user_id=message.user_id,
        instrument=message.instrument,
        direction=message.direction,
        price=message.price,
        created_ns=message.created_ns,
    )


def alert_to_proto(alert: Alert) -> apb.Alert:
    return apb.Alert(
        alert_id=alert.alert_id,
        user_id=alert.user_id,
        instrument=alert.instrument,
        direction=alert.direction,  # type: ignore[arg-type]  # the int as received, valid or not
        price=alert.price,
        created_ns=alert.created_ns,
    )


def event_to_proto(event: Event, processed_ns: int) -> apb.AlertEvent:
    """The wire event, stamped with the processor's time (the same stamp as the batch's states)."""
    message = apb.AlertEvent(
        alert=alert_to_proto(event.alert),
        status=event.status.value,
        reason=event.reason,
        event_ns=processed_ns,
    )
    if event.status == Status.TRIGGERED:
        message.trigger_price = decimals.fmt(event.trigger_price)
        message.trigger_version = event.trigger_version
        message.times.CopyFrom(
            pb.StageTimes(exchange_ns=event.exchange_ns, ingest_ns=event.ingest_ns, processed_ns=processed_ns)
        )
    return message


def book_to_proto(book: Book) -> apb.AlertBook:
    return apb.AlertBook(
        instrument=book.instrument,
        alerts=[alert_to_proto(alert) for alert in book.alerts()],
        source=pb.SourcePosition(partition=book.source.partition, offset=book.source.offset),
    )


def book_from_proto(message: apb.AlertBook) -> Book:
    """The book a processor resumes from; its alerts were checked when they were created."""
    source = Position(message.source.partition, message.source.offset)
    return rebuild(message.instrument, (alert_from_proto(a) for a in message.alerts), source)


def position_record(partition: int, offset: int) -> bytes:
    """The value of the `#commands` record: the last command applied on `partition`."""
    return apb.AlertBook(source=pb.SourcePosition(partition=partition, offset=offset)).SerializeToString()
