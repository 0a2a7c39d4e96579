from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TradingCalendar(_message.Message):
    __slots__ = ("timezone", "hours", "days", "pre_open", "holidays")
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    PRE_OPEN_FIELD_NUMBER: _ClassVar[int]
    HOLIDAYS_FIELD_NUMBER: _ClassVar[int]
    timezone: str
    hours: str
    days: _containers.RepeatedScalarFieldContainer[int]
    pre_open: str
    holidays: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, timezone: _Optional[str] = ..., hours: _Optional[str] = ..., days: _Optional[_Iterable[int]] = ..., pre_open: _Optional[str] = ..., holidays: _Optional[_Iterable[str]] = ...) -> None: ...

class Instrument(_message.Message):
    __slots__ = ("symbol", "name", "asset_class", "currency", "venue", "tick_size", "decimals", "lot_size", "calendar")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ASSET_CLASS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    DECIMALS_FIELD_NUMBER: _ClassVar[int]
    LOT_SIZE_FIELD_NUMBER: _ClassVar[int]
    CALENDAR_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    name: str
    asset_class: str
    currency: str
    venue: str
    tick_size: str
    decimals: int
    lot_size: str
    calendar: TradingCalendar
    def __init__(self, symbol: _Optional[str] = ..., name: _Optional[str] = ..., asset_class: _Optional[str] = ..., currency: _Optional[str] = ..., venue: _Optional[str] = ..., tick_size: _Optional[str] = ..., decimals: _Optional[int] = ..., lot_size: _Optional[str] = ..., calendar: _Optional[_Union[TradingCalendar, _Mapping]] = ...) -> None: ...
