from tapewire.v1 import alerts_pb2 as _alerts_pb2
from tapewire.v1 import market_pb2 as _market_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SnapshotReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SNAPSHOT_REASON_UNSPECIFIED: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_SUBSCRIBE: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_RESYNC: _ClassVar[SnapshotReason]
SNAPSHOT_REASON_UNSPECIFIED: SnapshotReason
SNAPSHOT_REASON_SUBSCRIBE: SnapshotReason
SNAPSHOT_REASON_RESYNC: SnapshotReason

class SubscribeRequest(_message.Message):
    __slots__ = ("instruments", "since", "max_rate")
    class SinceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    MAX_RATE_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    since: _containers.ScalarMap[str, int]
    max_rate: float
    def __init__(self, instruments: _Optional[_Iterable[str]] = ..., since: _Optional[_Mapping[str, int]] = ..., max_rate: _Optional[float] = ...) -> None: ...

class UnsubscribeRequest(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instruments: _Optional[_Iterable[str]] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateAlertRequest(_message.Message):
    __slots__ = ("instrument", "direction", "price")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    direction: _alerts_pb2.AlertDirection
    price: str
    def __init__(self, instrument: _Optional[str] = ..., direction: _Optional[_Union[_alerts_pb2.AlertDirection, str]] = ..., price: _Optional[str] = ...) -> None: ...

class CancelAlertRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    def __init__(self, alert_id: _Optional[str] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("request_id", "subscribe", "unsubscribe", "ping", "create_alert", "cancel_alert", "list_alerts")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    CREATE_ALERT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ALERT_FIELD_NUMBER: _ClassVar[int]
    LIST_ALERTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscribe: SubscribeRequest
    unsubscribe: UnsubscribeRequest
    ping: PingRequest
    create_alert: CreateAlertRequest
    cancel_alert: CancelAlertRequest
    list_alerts: ListAlertsRequest
    def __init__(self, request_id: _Optional[str] = ..., subscribe: _Optional[_Union[SubscribeRequest, _Mapping]] = ..., unsubscribe: _Optional[_Union[UnsubscribeRequest, _Mapping]] = ..., ping: _Optional[_Union[PingRequest, _Mapping]] = ..., create_alert: _Optional[_Union[CreateAlertRequest, _Mapping]] = ..., cancel_alert: _Optional[_Union[CancelAlertRequest, _Mapping]] = ..., list_alerts: _Optional[_Union[ListAlertsRequest, _Mapping]] = ...) -> None: ...

class ConnectionLimits(_message.Message):
    __slots__ = ("max_subscriptions", "max_message_bytes", "max_messages_per_second", "send_queue_size")
    MAX_SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SEND_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    max_subscriptions: int
    max_message_bytes: int
    max_messages_per_second: float
    send_queue_size: int
    def __init__(self, max_subscriptions: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_messages_per_second: _Optional[float] = ..., send_queue_size: _Optional[int] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("protocol", "connection_id", "user_id", "heartbeat_s", "idle_timeout_s", "limits", "encoding", "max_batch")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_S_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    protocol: int
    connection_id: str
    user_id: str
    heartbeat_s: float
    idle_timeout_s: float
    limits: ConnectionLimits
    encoding: str
    max_batch: int
    def __init__(self, protocol: _Optional[int] = ..., connection_id: _Optional[str] = ..., user_id: _Optional[str] = ..., heartbeat_s: _Optional[float] = ..., idle_timeout_s: _Optional[float] = ..., limits: _Optional[_Union[ConnectionLimits, _Mapping]] = ..., encoding: _Optional[str] = ..., max_batch: _Optional[int] = ...) -> None: ...

class VersionRange(_message.Message):
    __slots__ = ("from_version", "to_version")
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    from_version: int
    to_version: int
    def __init__(self, from_version: _Optional[int] = ..., to_version: _Optional[int] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("states", "missing", "resumed", "gaps", "request_id", "reason", "ahead")
    class ResumedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: VersionRange
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[VersionRange, _Mapping]] = ...) -> None: ...
    class AheadEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STATES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AHEAD_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[_market_pb2.InstrumentState]
    missing: _containers.RepeatedScalarFieldContainer[str]
    resumed: _containers.MessageMap[str, VersionRange]
    gaps: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    reason: SnapshotReason
    ahead: _containers.ScalarMap[str, int]
    def __init__(self, states: _Optional[_Iterable[_Union[_market_pb2.InstrumentState, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ..., resumed: _Optional[_Mapping[str, VersionRange]] = ..., gaps: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., reason: _Optional[_Union[SnapshotReason, str]] = ..., ahead: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Unsubscribed(_message.Message):
    __slots__ = ("instruments", "request_id")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, instruments: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ServerError(_message.Message):
    __slots__ = ("code", "reason", "request_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    reason: str
    request_id: str
    def __init__(self, code: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ("request_id", "server_time_ns")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    server_time_ns: int
    def __init__(self, request_id: _Optional[str] = ..., server_time_ns: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("server_time_ns",)
    SERVER_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    server_time_ns: int
    def __init__(self, server_time_ns: _Optional[int] = ...) -> None: ...

class Conflated(_message.Message):
    __slots__ = ("dropped", "instruments")
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    instruments: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dropped: _Optional[int] = ..., instruments: _Optional[_Iterable[str]] = ...) -> None: ...

class AlertAccepted(_message.Message):
    __slots__ = ("request_id", "alert_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    alert_id: str
    def __init__(self, request_id: _Optional[str] = ..., alert_id: _Optional[str] = ...) -> None: ...

class AlertList(_message.Message):
    __slots__ = ("request_id", "alerts")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    alerts: _containers.RepeatedCompositeFieldContainer[_alerts_pb2.AlertEvent]
    def __init__(self, request_id: _Optional[str] = ..., alerts: _Optional[_Iterable[_Union[_alerts_pb2.AlertEvent, _Mapping]]] = ...) -> None: ...

class Updates(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[_market_pb2.Update]
    def __init__(self, updates: _Optional[_Iterable[_Union[_market_pb2.Update, _Mapping]]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("welcome", "snapshot", "update", "unsubscribed", "error", "pong", "heartbeat", "conflated", "alert_accepted", "alert_list", "alert", "updates")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CONFLATED_FIELD_NUMBER: _ClassVar[int]
    ALERT_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ALERT_LIST_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    snapshot: Snapshot
    update: _market_pb2.Update
    unsubscribed: Unsubscribed
    error: ServerError
    pong: Pong
    heartbeat: Heartbeat
    conflated: Conflated
    alert_accepted: AlertAccepted
    alert_list: AlertList
    alert: _alerts_pb2.AlertEvent
    updates: Updates
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., update: _Optional[_Union[_market_pb2.Update, _Mapping]] = ..., unsubscribed: _Optional[_Union[Unsubscribed, _Mapping]] = ..., error: _Optional[_Union[ServerError, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., conflated: _Optional[_Union[Conflated, _Mapping]] = ..., alert_accepted: _Optional[_Union[AlertAccepted, _Mapping]] = ..., alert_list: _Optional[_Union[AlertList, _Mapping]] = ..., alert: _Optional[_Union[_alerts_pb2.AlertEvent, _Mapping]] = ..., updates: _Optional[_Union[Updates, _Mapping]] = ...) -> None: ...
