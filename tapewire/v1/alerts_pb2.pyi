from tapewire.v1 import market_pb2 as _market_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_DIRECTION_UNSPECIFIED: _ClassVar[AlertDirection]
    ALERT_DIRECTION_ABOVE: _ClassVar[AlertDirection]
    ALERT_DIRECTION_BELOW: _ClassVar[AlertDirection]

class AlertStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATUS_UNSPECIFIED: _ClassVar[AlertStatus]
    ALERT_STATUS_ACTIVE: _ClassVar[AlertStatus]
    ALERT_STATUS_TRIGGERED: _ClassVar[AlertStatus]
    ALERT_STATUS_CANCELLED: _ClassVar[AlertStatus]
    ALERT_STATUS_REJECTED: _ClassVar[AlertStatus]
ALERT_DIRECTION_UNSPECIFIED: AlertDirection
ALERT_DIRECTION_ABOVE: AlertDirection
ALERT_DIRECTION_BELOW: AlertDirection
ALERT_STATUS_UNSPECIFIED: AlertStatus
ALERT_STATUS_ACTIVE: AlertStatus
ALERT_STATUS_TRIGGERED: AlertStatus
ALERT_STATUS_CANCELLED: AlertStatus
ALERT_STATUS_REJECTED: AlertStatus

class Alert(_message.Message):
    __slots__ = ("alert_id", "user_id", "instrument", "direction", "price", "created_ns")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    user_id: str
    instrument: str
    direction: AlertDirection
    price: str
    created_ns: int
    def __init__(self, alert_id: _Optional[str] = ..., user_id: _Optional[str] = ..., instrument: _Optional[str] = ..., direction: _Optional[_Union[AlertDirection, str]] = ..., price: _Optional[str] = ..., created_ns: _Optional[int] = ...) -> None: ...

class CancelAlert(_message.Message):
    __slots__ = ("alert_id", "user_id", "instrument")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    user_id: str
    instrument: str
    def __init__(self, alert_id: _Optional[str] = ..., user_id: _Optional[str] = ..., instrument: _Optional[str] = ...) -> None: ...

class AlertCommand(_message.Message):
    __slots__ = ("create", "cancel", "issued_ns")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ISSUED_NS_FIELD_NUMBER: _ClassVar[int]
    create: Alert
    cancel: CancelAlert
    issued_ns: int
    def __init__(self, create: _Optional[_Union[Alert, _Mapping]] = ..., cancel: _Optional[_Union[CancelAlert, _Mapping]] = ..., issued_ns: _Optional[int] = ...) -> None: ...

class AlertEvent(_message.Message):
    __slots__ = ("alert", "status", "trigger_price", "trigger_version", "reason", "times", "event_ns")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PRICE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    EVENT_NS_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    status: AlertStatus
    trigger_price: str
    trigger_version: int
    reason: str
    times: _market_pb2.StageTimes
    event_ns: int
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ..., status: _Optional[_Union[AlertStatus, str]] = ..., trigger_price: _Optional[str] = ..., trigger_version: _Optional[int] = ..., reason: _Optional[str] = ..., times: _Optional[_Union[_market_pb2.StageTimes, _Mapping]] = ..., event_ns: _Optional[int] = ...) -> None: ...

class AlertBook(_message.Message):
    __slots__ = ("instrument", "alerts", "source")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    source: _market_pb2.SourcePosition
    def __init__(self, instrument: _Optional[str] = ..., alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., source: _Optional[_Union[_market_pb2.SourcePosition, _Mapping]] = ...) -> None: ...
