"""Server messages on the wire: every message is a `tapewire.v1.ServerMessage`, written either as
its protobuf bytes (binary frames, gRPC) or as the JSON of docs/websocket.md (text frames).

Updates are the hot path: one `Delta` is shared by every connection watching the instrument,
and renders each encoding at most once, on first use. A batch of updates (`Updates`, for clients
that asked for them) is put together from those renderings without encoding anything again:
for protobuf by writing the few bytes of framing around each cached `Update` by hand.
"""

from __future__ import annotations

from typing import Any, Protocol

from tapewire.v1 import alerts_pb2, market_pb2, stream_pb2
from tapewire.wire import length_delimited

from ..rest import views

# JSON "type" of each ServerMessage kind, where it is not the kind's own name.
_JSON_TYPES = {"alert_accepted": "alert.accepted", "alert_list": "alert.list"}


# Protobuf tags (field number << 3 | 2, length-delimited), each one byte.
_STATE_IN_UPDATE = b"\x0a"  # Update.state = 1
_UPDATE_IN_MESSAGE = b"\x1a"  # ServerMessage.update = 3
_UPDATE_IN_UPDATES = b"\x0a"  # Updates.updates = 1
_UPDATES_IN_MESSAGE = b"\x62"  # ServerMessage.updates = 12


class Delta:
    """One update of one instrument, stamped with the time the relay sent it on its way."""

    __slots__ = ("_json", "_proto", "_update", "instrument", "state", "version", "wire")

    def __init__(self, state: market_pb2.InstrumentState, sent_ns: int) -> None:
        state.times.sent_ns = sent_ns
        self.state = state
        self.instrument = state.instrument
        self.version = state.version
        self._json: str | None = None
        self._proto: bytes | None = None
        self._update: bytes | None = None
        # Whole WebSocket frames of this update alone, per encoding (live/direct.py fills it):
        # uncompressed, they are the same bytes for every client.
        self.wire: dict[str, bytes] = {}

    def json(self) -> str:
        if self._json is None:
            self._json = views.dumps(
                {
                    "type": "update",
                    "instrument": self.instrument,
                    "version": self.version,
                    "state": views.state_to_json(self.state),
                }
            )
        return self._json

    def update_bytes(self) -> bytes:
        """The serialized `Update` message."""
        if self._update is None:
            self._update = length_delimited(_STATE_IN_UPDATE, self.state.SerializeToString())
        return self._update

    def proto(self) -> bytes:
        """The serialized `ServerMessage` holding this update."""
        if self._proto is None:
            self._proto = length_delimited(_UPDATE_IN_MESSAGE, self.update_bytes())
        return self._proto


Frame = str | bytes


class Encoder(Protocol):
    name: str

    def update(self, delta: Delta) -> Frame: ...

    def updates(self, deltas: list[Delta]) -> Frame:
        """Several updates in one frame (an `Updates` message), in order."""
        ...

    def message(self, message: stream_pb2.ServerMessage) -> Frame: ...


class ProtobufEncoder:
    name = "protobuf"

    def update(self, delta: Delta) -> Frame:
        return delta.proto()

    def updates(self, deltas: list[Delta]) -> Frame:
        body = b"".join([length_delimited(_UPDATE_IN_UPDATES, delta.update_bytes()) for delta in deltas])
        return length_delimited(_UPDATES_IN_MESSAGE, body)

    def message(self, message: stream_pb2.ServerMessage) -> Frame:
        return message.SerializeToString()


class JsonEncoder:
    name = "json"

    def update(self, delta: Delta) -> Frame:
        return delta.json()

    def updates(self, deltas: list[Delta]) -> Frame:
        # Each element is the update's own cached JSON, "type" included (see _updates).
        return '{"type":"updates","updates":[' + ",".join([delta.json() for delta in deltas]) + "]}"

    def message(self, message: stream_pb2.ServerMessage) -> Frame:
        return views.dumps(message_to_json(message))


ENCODERS: dict[str, Encoder] = {"json": JsonEncoder(), "protobuf": ProtobufEncoder()}


def updates_frame(encoder: Encoder, deltas: list[Delta]) -> Frame:
    """One frame of `deltas`: an update alone, or an `Updates` message of several."""
    return encoder.update(deltas[0]) if len(deltas) == 1 else encoder.updates(deltas)


def message_to_json(message: stream_pb2.ServerMessage) -> dict[str, Any]:
    kind = message.WhichOneof("kind")
    if kind is None:
        raise ValueError("empty ServerMessage")
    body = _RENDER[kind](getattr(message, kind))
    return {"type": _JSON_TYPES.get(kind, kind), **body}


def _request_id(request_id: str) -> dict[str, Any]:
    return {"id": request_id} if request_id else {}


def _welcome(m: stream_pb2.Welcome) -> dict[str, Any]:
    limits = m.limits
    return {
        "protocol": m.protocol,
        "connection_id": m.connection_id,
        "user_id": m.user_id,
        "heartbeat_s": m.heartbeat_s,
        "idle_timeout_s": m.idle_timeout_s,
        "encoding": m.encoding,
        "max_batch": m.max_batch,
        "limits": {
            "max_subscriptions": limits.max_subscriptions,
            "max_message_bytes": limits.max_message_bytes,
            "max_messages_per_second": limits.max_messages_per_second,
            "send_queue_size": limits.send_queue_size,
        },
    }


def _snapshot(m: stream_pb2.Snapshot) -> dict[str, Any]:
    return {
        **_request_id(m.request_id),
        "reason": _enum_name(stream_pb2.SnapshotReason.Name(m.reason), "SNAPSHOT_REASON_"),
        "states": [views.state_to_json(state) for state in m.states],
        "missing": list(m.missing),
        "resumed": {
            name: {"from": span.from_version, "to": span.to_version} for name, span in m.resumed.items()
        },
        "gaps": list(m.gaps),
        "ahead": dict(m.ahead),
    }


def _update(m: market_pb2.Update) -> dict[str, Any]:
    return {
        "instrument": m.state.instrument,
        "version": m.state.version,
        "state": views.state_to_json(m.state),
    }


def _updates(m: stream_pb2.Updates) -> dict[str, Any]:
    return {"updates": [{"type": "update", **_update(update)} for update in m.updates]}


def _unsubscribed(m: stream_pb2.Unsubscribed) -> dict[str, Any]:
    return {**_request_id(m.request_id), "instruments": list(m.instruments)}


def _error(m: stream_pb2.ServerError) -> dict[str, Any]:
    return {**_request_id(m.request_id), "code": m.code, "reason": m.reason}


def _pong(m: stream_pb2.Pong) -> dict[str, Any]:
    return {**_request_id(m.request_id), "server_time_ns": m.server_time_ns}


def _heartbeat(m: stream_pb2.Heartbeat) -> dict[str, Any]:
    return {"server_time_ns": m.server_time_ns}


def _conflated(m: stream_pb2.Conflated) -> dict[str, Any]:
    return {"dropped": m.dropped, "instruments": list(m.instruments)}


def _alert_accepted(m: stream_pb2.AlertAccepted) -> dict[str, Any]:
    return {**_request_id(m.request_id), "alert_id": m.alert_id}


def _alert_list(m: stream_pb2.AlertList) -> dict[str, Any]:
    return {**_request_id(m.request_id), "alerts": [alert_event_to_json(event) for event in m.alerts]}


def alert_event_to_json(m: alerts_pb2.AlertEvent) -> dict[str, Any]:
    alert = m.alert
    return {
        "status": _enum_name(alerts_pb2.AlertStatus.Name(m.status), "ALERT_STATUS_"),
        "alert": {
            "alert_id": alert.alert_id,
            "user_id": alert.user_id,
            "instrument": alert.instrument,
            "direction": _enum_name(alerts_pb2.AlertDirection.Name(alert.direction), "ALERT_DIRECTION_"),
            "price": alert.price,
            "created_ns": alert.created_ns,
        },
        "trigger_price": m.trigger_price or None,
        "trigger_version": m.trigger_version,
        "reason": m.reason,
        "times": views.times_to_json(m.times),
        "event_ns": m.event_ns,
    }


def _alert(m: alerts_pb2.AlertEvent) -> dict[str, Any]:
    return alert_event_to_json(m)


def _enum_name(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower()


_RENDER: dict[str, Any] = {
    "welcome": _welcome,
    "snapshot": _snapshot,
    "update": _update,
    "unsubscribed": _unsubscribed,
    "error": _error,
    "pong": _pong,
    "heartbeat": _heartbeat,
    "conflated": _conflated,
    "alert_accepted": _alert_accepted,
    "alert_list": _alert_list,
    "alert": _alert,
    "updates": _updates,
}
