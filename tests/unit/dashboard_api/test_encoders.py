"""Server messages on the wire: the JSON of docs/websocket.md, and protobuf that reads back."""

from __future__ import annotations

import json

import pytest

from services.dashboard_api.live.encoders import (
    ENCODERS,
    Delta,
    JsonEncoder,
    ProtobufEncoder,
    alert_event_to_json,
    message_to_json,
)
from services.dashboard_api.rest import views
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb
from tapewire.v1 import stream_pb2 as spb
from tapewire.wire import varint

T0 = 1_763_800_000_000_000_000
ALERT_ID = "0b6c3e0e-5d1e-4a8e-9d7c-2f1e8d3b7a11"


def state(instrument: str = "AAPL", version: int = 1214) -> pb.InstrumentState:
    return pb.InstrumentState(
        instrument=instrument,
        version=version,
        last_price="187.42",
        times=pb.StageTimes(exchange_ns=T0, ingest_ns=T0 + 1, processed_ns=T0 + 2, cached_ns=T0 + 3),
    )


def alert_event(status: int = apb.ALERT_STATUS_TRIGGERED) -> apb.AlertEvent:
    return apb.AlertEvent(
        alert=apb.Alert(
            alert_id=ALERT_ID,
            user_id="anonymous",
            instrument="AAPL",
            direction=apb.ALERT_DIRECTION_ABOVE,
            price="190.50",
            created_ns=T0,
        ),
        status=status,
        trigger_price="190.52" if status == apb.ALERT_STATUS_TRIGGERED else "",
        trigger_version=1311 if status == apb.ALERT_STATUS_TRIGGERED else 0,
        reason="",
        times=pb.StageTimes(exchange_ns=T0 + 10, ingest_ns=T0 + 11),
        event_ns=T0 + 4_000_000_000,
    )


def as_json(message: spb.ServerMessage) -> dict[str, object]:
    text = JsonEncoder().message(message)
    assert isinstance(text, str)
    parsed = json.loads(text)
    assert parsed == message_to_json(message)
    return parsed  # type: ignore[no-any-return]


# -- Delta -----------------------------------------------------------------------------------


def test_delta_stamps_sent_ns_and_renders_each_encoding_once() -> None:
    delta = Delta(state(), sent_ns=T0 + 5)
    assert (delta.instrument, delta.version, delta.state.times.sent_ns) == ("AAPL", 1214, T0 + 5)
    text = delta.json()
    assert delta.json() is text
    blob = delta.proto()
    assert delta.proto() is blob
    assert JsonEncoder().update(delta) is text
    assert ProtobufEncoder().update(delta) is blob


def test_delta_json() -> None:
    delta = Delta(state(), sent_ns=T0 + 5)
    text = delta.json()
    assert text.startswith('{"type":"update","instrument":"AAPL","version":1214,"state":{')
    assert json.loads(text) == {
        "type": "update",
        "instrument": "AAPL",
        "version": 1214,
        "state": views.state_to_json(delta.state),
    }
    assert json.loads(text)["state"]["times"] == {
        "exchange_ns": T0,
        "ingest_ns": T0 + 1,
        "processed_ns": T0 + 2,
        "cached_ns": T0 + 3,
        "sent_ns": T0 + 5,
    }


def test_delta_proto_reads_back_and_matches_the_json() -> None:
    delta = Delta(state(), sent_ns=T0 + 5)
    message = spb.ServerMessage.FromString(delta.proto())
    assert message.WhichOneof("kind") == "update"
    assert message.update.state == delta.state
    assert message.update.state.times.sent_ns == T0 + 5
    assert message_to_json(message) == json.loads(delta.json())


def test_varint() -> None:
    assert [varint(n) for n in (0, 1, 127, 128, 300, 2**32)] == [
        b"\x00",
        b"\x01",
        b"\x7f",
        b"\x80\x01",
        b"\xac\x02",
        b"\x80\x80\x80\x80\x10",
    ]


def batch() -> list[Delta]:
    # States of different sizes, one well over 127 bytes, so that lengths take two varint bytes.
    big = state("BIG", 7)
    big.venue = "X" * 200
    return [Delta(state("AAPL", 1214), T0), Delta(state("MSFT", 88), T0 + 1), Delta(big, T0 + 2)]


def test_updates_proto_is_a_server_message_of_those_updates_in_order() -> None:
    deltas = batch()
    frame = ProtobufEncoder().updates(deltas)
    assert isinstance(frame, bytes)
    message = spb.ServerMessage.FromString(frame)
    assert message.WhichOneof("kind") == "updates"
    assert [update.state for update in message.updates.updates] == [delta.state for delta in deltas]
    # The hand-framed bytes are exactly what protobuf itself writes.
    expected = spb.ServerMessage(updates=spb.Updates(updates=[pb.Update(state=d.state) for d in deltas]))
    assert frame == expected.SerializeToString()


def test_updates_json_holds_each_update_as_sent_alone() -> None:
    deltas = batch()
    frame = JsonEncoder().updates(deltas)
    assert isinstance(frame, str)
    assert json.loads(frame) == {"type": "updates", "updates": [json.loads(d.json()) for d in deltas]}
    message = spb.ServerMessage.FromString(ProtobufEncoder().updates(deltas))
    assert message_to_json(message) == json.loads(frame)


# -- every message's JSON --------------------------------------------------------------------


def test_welcome() -> None:
    message = spb.ServerMessage(
        welcome=spb.Welcome(
            protocol=1,
            connection_id="c7f3a2d9e1b04c55",
            user_id="anonymous",
            heartbeat_s=15.0,
            idle_timeout_s=120.0,
            encoding="json",
            max_batch=64,
            limits=spb.ConnectionLimits(
                max_subscriptions=1000,
                max_message_bytes=65536,
                max_messages_per_second=50.0,
                send_queue_size=2048,
            ),
        )
    )
    text = JsonEncoder().message(message)
    assert isinstance(text, str)
    assert text.startswith('{"type":"welcome",')
    assert json.loads(text) == {
        "type": "welcome",
        "protocol": 1,
        "connection_id": "c7f3a2d9e1b04c55",
        "user_id": "anonymous",
        "heartbeat_s": 15.0,
        "idle_timeout_s": 120.0,
        "encoding": "json",
        "max_batch": 64,
        "limits": {
            "max_subscriptions": 1000,
            "max_message_bytes": 65536,
            "max_messages_per_second": 50.0,
            "send_queue_size": 2048,
        },
    }


def test_snapshot_with_everything() -> None:
    message = spb.ServerMessage()
    snapshot = message.snapshot
    snapshot.request_id = "s2"
    snapshot.reason = spb.SNAPSHOT_REASON_SUBSCRIBE
    snapshot.states.append(state("MSFT", 412))
    snapshot.missing.append("NEW")
    snapshot.resumed["AAPL"].from_version = 1208
    snapshot.resumed["AAPL"].to_version = 1213
    snapshot.gaps.append("MSFT")
    snapshot.ahead["TSLA"] = 77
    assert as_json(message) == {
        "type": "snapshot",
        "id": "s2",
        "reason": "subscribe",
        "states": [views.state_to_json(state("MSFT", 412))],
        "missing": ["NEW"],
        "resumed": {"AAPL": {"from": 1208, "to": 1213}},
        "gaps": ["MSFT"],
        "ahead": {"TSLA": 77},
    }


def test_a_resync_snapshot_has_no_id_and_empty_lists() -> None:
    message = spb.ServerMessage(snapshot=spb.Snapshot(reason=spb.SNAPSHOT_REASON_RESYNC))
    assert as_json(message) == {
        "type": "snapshot",
        "reason": "resync",
        "states": [],
        "missing": [],
        "resumed": {},
        "gaps": [],
        "ahead": {},
    }


def test_an_empty_resumed_range() -> None:
    message = spb.ServerMessage()
    message.snapshot.resumed["AAPL"].from_version = 1210
    message.snapshot.resumed["AAPL"].to_version = 1209
    assert as_json(message)["resumed"] == {"AAPL": {"from": 1210, "to": 1209}}


def test_update() -> None:
    message = spb.ServerMessage(update=pb.Update(state=state()))
    assert as_json(message) == {
        "type": "update",
        "instrument": "AAPL",
        "version": 1214,
        "state": views.state_to_json(state()),
    }


def test_unsubscribed() -> None:
    message = spb.ServerMessage(unsubscribed=spb.Unsubscribed(instruments=["MSFT"], request_id="u1"))
    assert as_json(message) == {"type": "unsubscribed", "id": "u1", "instruments": ["MSFT"]}
    bare = spb.ServerMessage(unsubscribed=spb.Unsubscribed(instruments=["A", "B"]))
    assert JsonEncoder().message(bare) == '{"type":"unsubscribed","instruments":["A","B"]}'


def test_error() -> None:
    message = spb.ServerMessage(
        error=spb.ServerError(code="too_many_subscriptions", reason="at most 1", request_id="s1")
    )
    assert JsonEncoder().message(message) == (
        '{"type":"error","id":"s1","code":"too_many_subscriptions","reason":"at most 1"}'
    )
    bare = spb.ServerMessage(error=spb.ServerError(code="invalid_json", reason="no"))
    assert as_json(bare) == {"type": "error", "code": "invalid_json", "reason": "no"}


def test_pong_and_heartbeat() -> None:
    pong = spb.ServerMessage(pong=spb.Pong(request_id="p1", server_time_ns=T0 + 123))
    assert as_json(pong) == {"type": "pong", "id": "p1", "server_time_ns": T0 + 123}
    assert as_json(spb.ServerMessage(pong=spb.Pong(server_time_ns=1))) == {
        "type": "pong",
        "server_time_ns": 1,
    }
    heartbeat = spb.ServerMessage(heartbeat=spb.Heartbeat(server_time_ns=T0))
    assert as_json(heartbeat) == {"type": "heartbeat", "server_time_ns": T0}


def test_conflated() -> None:
    message = spb.ServerMessage(conflated=spb.Conflated(dropped=5310, instruments=["AAPL", "MSFT"]))
    assert as_json(message) == {"type": "conflated", "dropped": 5310, "instruments": ["AAPL", "MSFT"]}


def test_alert_accepted() -> None:
    message = spb.ServerMessage(alert_accepted=spb.AlertAccepted(request_id="a1", alert_id=ALERT_ID))
    assert as_json(message) == {"type": "alert.accepted", "id": "a1", "alert_id": ALERT_ID}


ALERT_JSON = {
    "status": "triggered",
    "alert": {
        "alert_id": ALERT_ID,
        "user_id": "anonymous",
        "instrument": "AAPL",
        "direction": "above",
        "price": "190.50",
        "created_ns": T0,
    },
    "trigger_price": "190.52",
    "trigger_version": 1311,
    "reason": "",
    "times": {"exchange_ns": T0 + 10, "ingest_ns": T0 + 11, "processed_ns": 0, "cached_ns": 0, "sent_ns": 0},
    "event_ns": T0 + 4_000_000_000,
}


def test_alert_event() -> None:
    assert as_json(spb.ServerMessage(alert=alert_event())) == {"type": "alert", **ALERT_JSON}


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (apb.ALERT_STATUS_ACTIVE, "active"),
        (apb.ALERT_STATUS_CANCELLED, "cancelled"),
        (apb.ALERT_STATUS_REJECTED, "rejected"),
    ],
)
def test_alert_statuses_without_a_trigger(status: int, name: str) -> None:
    rendered = alert_event_to_json(alert_event(status))
    assert (rendered["status"], rendered["trigger_price"], rendered["trigger_version"]) == (name, None, 0)


def test_alert_list() -> None:
    message = spb.ServerMessage(alert_list=spb.AlertList(request_id="a3", alerts=[alert_event()]))
    assert as_json(message) == {"type": "alert.list", "id": "a3", "alerts": [ALERT_JSON]}
    empty = spb.ServerMessage(alert_list=spb.AlertList())
    assert as_json(empty) == {"type": "alert.list", "alerts": []}


def test_an_empty_message_is_a_bug() -> None:
    with pytest.raises(ValueError, match="empty ServerMessage"):
        message_to_json(spb.ServerMessage())


# -- protobuf ---------------------------------------------------------------------------------


def every_message() -> list[spb.ServerMessage]:
    snapshot = spb.ServerMessage(
        snapshot=spb.Snapshot(
            request_id="s", reason=spb.SNAPSHOT_REASON_SUBSCRIBE, states=[state()], missing=["N"], gaps=["G"]
        )
    )
    snapshot.snapshot.resumed["R"].from_version = 3
    snapshot.snapshot.resumed["R"].to_version = 9
    return [
        spb.ServerMessage(welcome=spb.Welcome(protocol=1, connection_id="c", encoding="protobuf")),
        snapshot,
        spb.ServerMessage(update=pb.Update(state=state())),
        spb.ServerMessage(unsubscribed=spb.Unsubscribed(instruments=["A"], request_id="u")),
        spb.ServerMessage(error=spb.ServerError(code="c", reason="r", request_id="e")),
        spb.ServerMessage(pong=spb.Pong(request_id="p", server_time_ns=T0)),
        spb.ServerMessage(heartbeat=spb.Heartbeat(server_time_ns=T0)),
        spb.ServerMessage(conflated=spb.Conflated(dropped=7, instruments=["A"])),
        spb.ServerMessage(alert_accepted=spb.AlertAccepted(request_id="a", alert_id=ALERT_ID)),
        spb.ServerMessage(alert_list=spb.AlertList(request_id="l", alerts=[alert_event()])),
        spb.ServerMessage(alert=alert_event()),
        spb.ServerMessage(
            updates=spb.Updates(updates=[pb.Update(state=state()), pb.Update(state=state("B"))])
        ),
    ]


def test_every_kind_is_covered() -> None:
    kinds = {message.WhichOneof("kind") for message in every_message()}
    assert kinds == {field.name for field in spb.ServerMessage.DESCRIPTOR.oneofs_by_name["kind"].fields}


@pytest.mark.parametrize("message", every_message(), ids=lambda m: m.WhichOneof("kind"))
def test_protobuf_round_trip(message: spb.ServerMessage) -> None:
    frame = ProtobufEncoder().message(message)
    assert isinstance(frame, bytes)
    assert spb.ServerMessage.FromString(frame) == message


@pytest.mark.parametrize("message", every_message(), ids=lambda m: m.WhichOneof("kind"))
def test_json_type_names(message: spb.ServerMessage) -> None:
    kind = message.WhichOneof("kind")
    expected = {"alert_accepted": "alert.accepted", "alert_list": "alert.list"}.get(kind, kind)  # type: ignore[arg-type]
    text = JsonEncoder().message(message)
    assert isinstance(text, str)
    assert text.startswith(f'{{"type":"{expected}"')


def test_encoders_by_name() -> None:
    assert sorted(ENCODERS) == ["json", "protobuf"]
    assert all(encoder.name == name for name, encoder in ENCODERS.items())
