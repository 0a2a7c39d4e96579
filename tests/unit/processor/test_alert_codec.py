"""Alert commands, events and books on the wire."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from services.processor.alert_codec import (
    MalformedCommand,
    book_from_proto,
    book_to_proto,
    decode_command,
    event_to_proto,
    position_record,
)
from services.processor.alerts import Alert, Cancel, Create, Direction, Event, Status, rebuild
from services.processor.enrich import Position
from tapewire.v1 import alerts_pb2 as apb

T0 = 1_763_649_000_000_000_000
WIRE_ALERT = apb.Alert(
    alert_id="a1",
    user_id="ann",
    instrument="AAPL",
    direction=apb.ALERT_DIRECTION_ABOVE,
    price="190.50",
    created_ns=T0,
)
ALERT = Alert("a1", "ann", "AAPL", int(Direction.ABOVE), "190.50", T0)


def test_enums_are_the_wire_values() -> None:
    assert [int(d) for d in Direction] == [apb.ALERT_DIRECTION_ABOVE, apb.ALERT_DIRECTION_BELOW]
    assert [int(s) for s in Status] == [
        apb.ALERT_STATUS_ACTIVE,
        apb.ALERT_STATUS_TRIGGERED,
        apb.ALERT_STATUS_CANCELLED,
        apb.ALERT_STATUS_REJECTED,
    ]


def test_decodes_create_and_cancel() -> None:
    create = apb.AlertCommand(create=WIRE_ALERT, issued_ns=T0).SerializeToString()
    assert decode_command(create, 4096) == Create(ALERT)
    cancel = apb.AlertCommand(cancel=apb.CancelAlert(alert_id="a1", user_id="ann", instrument="AAPL"))
    assert decode_command(cancel.SerializeToString(), 4096) == Cancel("a1", "ann", "AAPL")


def test_an_invalid_alert_still_decodes_so_that_its_user_hears_why() -> None:
    wire = apb.Alert(alert_id="a1", user_id="ann", instrument="", price="-1")
    command = decode_command(apb.AlertCommand(create=wire).SerializeToString(), 4096)
    assert command == Create(Alert("a1", "ann", "", 0, "-1", 0))


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, "empty"),
        (b"\x0a" * 5000, "too_large"),
        (b"\xff\xfe not protobuf", "undecodable"),
        (apb.AlertCommand(issued_ns=1).SerializeToString(), "unaddressed"),
        (
            apb.AlertCommand(create=apb.Alert(alert_id="a1", instrument="AAPL")).SerializeToString(),
            "unaddressed",
        ),
        (apb.AlertCommand(cancel=apb.CancelAlert(user_id="ann")).SerializeToString(), "unaddressed"),
        (
            apb.AlertCommand(create=apb.Alert(alert_id="x" * 300, user_id="ann")).SerializeToString(),
            "unaddressed",
        ),
    ],
)
def test_malformed_commands(value: bytes | None, code: str) -> None:
    with pytest.raises(MalformedCommand) as raised:
        decode_command(value, 4096)
    assert raised.value.code == code


def test_active_and_rejected_events_carry_no_trigger_fields() -> None:
    wire = event_to_proto(Event(ALERT, Status.ACTIVE), processed_ns=T0 + 9)
    assert wire.alert == WIRE_ALERT
    assert (wire.status, wire.event_ns, wire.HasField("times"), wire.trigger_price) == (
        apb.ALERT_STATUS_ACTIVE,
        T0 + 9,
        False,
        "",
    )
    rejected = event_to_proto(Event(ALERT, Status.REJECTED, reason="no"), processed_ns=T0 + 9)
    assert (rejected.status, rejected.reason) == (apb.ALERT_STATUS_REJECTED, "no")


def test_a_triggered_event_carries_the_trade_and_stage_times() -> None:
    event = Event(
        ALERT,
        Status.TRIGGERED,
        trigger_price=D("190.520"),
        trigger_version=1311,
        exchange_ns=T0,
        ingest_ns=T0 + 1,
    )
    wire = event_to_proto(event, processed_ns=T0 + 2)
    assert (wire.status, wire.trigger_price, wire.trigger_version) == (
        apb.ALERT_STATUS_TRIGGERED,
        "190.52",
        1311,
    )
    assert (wire.times.exchange_ns, wire.times.ingest_ns, wire.times.processed_ns) == (T0, T0 + 1, T0 + 2)
    assert wire.times.cached_ns == 0 and wire.event_ns == T0 + 2


def test_a_book_round_trips() -> None:
    below = Alert("b1", "bob", "AAPL", int(Direction.BELOW), "180", T0)
    book = rebuild("AAPL", [ALERT, below], Position(2, 41))
    wire = book_to_proto(book)
    assert (wire.instrument, wire.source.partition, wire.source.offset) == ("AAPL", 2, 41)
    assert [a.alert_id for a in wire.alerts] == ["a1", "b1"]
    assert book_from_proto(apb.AlertBook.FromString(wire.SerializeToString())) == book


def test_the_position_record_is_a_book_of_no_instrument() -> None:
    record = apb.AlertBook.FromString(position_record(3, 77))
    assert (record.instrument, list(record.alerts), record.source.partition, record.source.offset) == (
        "",
        [],
        3,
        77,
    )
