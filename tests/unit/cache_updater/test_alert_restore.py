"""Turning the processor's alert books into the ACTIVE events that restore them after a Redis loss."""

from __future__ import annotations

from services.cache_updater.alerts import COMMANDS_POSITION_KEY, active_events, restored_events
from services.processor import alert_codec
from services.processor.alerts import Alert, Event, Status
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb

ABOVE, BELOW = apb.ALERT_DIRECTION_ABOVE, apb.ALERT_DIRECTION_BELOW


def alert(alert_id: str, user: str, instrument: str = "AAPL", direction: int = ABOVE) -> apb.Alert:
    return apb.Alert(
        alert_id=alert_id,
        user_id=user,
        instrument=instrument,
        direction=direction,  # type: ignore[arg-type]
        price="190.5",
        created_ns=11,
    )


def book(instrument: str, *alerts: apb.Alert) -> bytes:
    source = pb.SourcePosition(partition=0, offset=4)
    return apb.AlertBook(instrument=instrument, alerts=alerts, source=source).SerializeToString()


def test_every_alert_of_every_book_becomes_an_active_event() -> None:
    records = {
        b"AAPL": book("AAPL", alert("a1", "ann"), alert("b1", "bob", direction=BELOW)),
        b"MSFT": book("MSFT", alert("a2", "ann", "MSFT")),
    }
    events = restored_events(records, event_ns=99)
    assert [(e.alert.alert_id, e.alert.user_id, e.status, e.event_ns) for e in events] == [
        ("a1", "ann", apb.ALERT_STATUS_ACTIVE, 99),
        ("b1", "bob", apb.ALERT_STATUS_ACTIVE, 99),
        ("a2", "ann", apb.ALERT_STATUS_ACTIVE, 99),
    ]
    assert events[1].alert == alert("b1", "bob", direction=BELOW)  # echoed whole
    assert not any(e.HasField("times") or e.reason or e.trigger_price for e in events)


def test_the_position_record_and_tombstones_are_no_books() -> None:
    records = {
        COMMANDS_POSITION_KEY: alert_codec.position_record(0, 5),
        b"NVDA": b"",
        b"AAPL": book("AAPL", alert("a1", "ann")),
    }
    assert [e.alert.alert_id for e in restored_events(records, event_ns=1)] == ["a1"]
    assert restored_events({}, event_ns=1) == []


def test_the_position_key_is_the_processors() -> None:
    assert COMMANDS_POSITION_KEY == alert_codec.COMMANDS_POSITION_KEY


def test_an_alert_without_ids_is_left_out() -> None:
    assert active_events([alert("", "ann"), alert("a1", ""), alert("a2", "ann")], 1) == [
        apb.AlertEvent(alert=alert("a2", "ann"), status=apb.ALERT_STATUS_ACTIVE, event_ns=1)
    ]


def test_the_event_is_the_one_the_processor_emits_on_accepting_the_alert() -> None:
    accepted = Alert("a1", "ann", "AAPL", ABOVE, "190.5", created_ns=11)
    emitted = alert_codec.event_to_proto(Event(accepted, Status.ACTIVE), processed_ns=7)
    assert active_events([alert_codec.alert_to_proto(accepted)], event_ns=7) == [emitted]
