from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChangeBasis(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_BASIS_UNSPECIFIED: _ClassVar[ChangeBasis]
    CHANGE_BASIS_PREVIOUS_CLOSE: _ClassVar[ChangeBasis]
    CHANGE_BASIS_SESSION_OPEN: _ClassVar[ChangeBasis]

class TickKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TICK_KIND_UNSPECIFIED: _ClassVar[TickKind]
    TICK_KIND_TRADE: _ClassVar[TickKind]
    TICK_KIND_QUOTE: _ClassVar[TickKind]
CHANGE_BASIS_UNSPECIFIED: ChangeBasis
CHANGE_BASIS_PREVIOUS_CLOSE: ChangeBasis
CHANGE_BASIS_SESSION_OPEN: ChangeBasis
TICK_KIND_UNSPECIFIED: TickKind
TICK_KIND_TRADE: TickKind
TICK_KIND_QUOTE: TickKind

class Tick(_message.Message):
    __slots__ = ("instrument", "venue", "kind", "price", "size", "bid_price", "bid_size", "ask_price", "ask_size", "sequence", "exchange_time_ns", "ingest_time_ns")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BID_PRICE_FIELD_NUMBER: _ClassVar[int]
    BID_SIZE_FIELD_NUMBER: _ClassVar[int]
    ASK_PRICE_FIELD_NUMBER: _ClassVar[int]
    ASK_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    INGEST_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    venue: str
    kind: TickKind
    price: str
    size: str
    bid_price: str
    bid_size: str
    ask_price: str
    ask_size: str
    sequence: int
    exchange_time_ns: int
    ingest_time_ns: int
    def __init__(self, instrument: _Optional[str] = ..., venue: _Optional[str] = ..., kind: _Optional[_Union[TickKind, str]] = ..., price: _Optional[str] = ..., size: _Optional[str] = ..., bid_price: _Optional[str] = ..., bid_size: _Optional[str] = ..., ask_price: _Optional[str] = ..., ask_size: _Optional[str] = ..., sequence: _Optional[int] = ..., exchange_time_ns: _Optional[int] = ..., ingest_time_ns: _Optional[int] = ...) -> None: ...

class Bar(_message.Message):
    __slots__ = ("start_time_ns", "open", "high", "low", "close", "volume", "trade_count")
    START_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    TRADE_COUNT_FIELD_NUMBER: _ClassVar[int]
    start_time_ns: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trade_count: int
    def __init__(self, start_time_ns: _Optional[int] = ..., open: _Optional[str] = ..., high: _Optional[str] = ..., low: _Optional[str] = ..., close: _Optional[str] = ..., volume: _Optional[str] = ..., trade_count: _Optional[int] = ...) -> None: ...

class StageTimes(_message.Message):
    __slots__ = ("exchange_ns", "ingest_ns", "processed_ns", "cached_ns", "sent_ns")
    EXCHANGE_NS_FIELD_NUMBER: _ClassVar[int]
    INGEST_NS_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_NS_FIELD_NUMBER: _ClassVar[int]
    CACHED_NS_FIELD_NUMBER: _ClassVar[int]
    SENT_NS_FIELD_NUMBER: _ClassVar[int]
    exchange_ns: int
    ingest_ns: int
    processed_ns: int
    cached_ns: int
    sent_ns: int
    def __init__(self, exchange_ns: _Optional[int] = ..., ingest_ns: _Optional[int] = ..., processed_ns: _Optional[int] = ..., cached_ns: _Optional[int] = ..., sent_ns: _Optional[int] = ...) -> None: ...

class SourcePosition(_message.Message):
    __slots__ = ("partition", "offset")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class InstrumentState(_message.Message):
    __slots__ = ("instrument", "venue", "version", "last_sequence", "last_price", "last_size", "last_trade_time_ns", "bid_price", "bid_size", "ask_price", "ask_size", "mid", "spread", "spread_bps", "session_day", "session_open", "session_high", "session_low", "session_volume", "session_turnover", "trade_count", "vwap", "change", "change_pct", "bar_1s", "bar_1m", "times", "source", "previous_close", "change_basis", "session_close", "session_start_ns")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    LAST_SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_TRADE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    BID_PRICE_FIELD_NUMBER: _ClassVar[int]
    BID_SIZE_FIELD_NUMBER: _ClassVar[int]
    ASK_PRICE_FIELD_NUMBER: _ClassVar[int]
    ASK_SIZE_FIELD_NUMBER: _ClassVar[int]
    MID_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    SPREAD_BPS_FIELD_NUMBER: _ClassVar[int]
    SESSION_DAY_FIELD_NUMBER: _ClassVar[int]
    SESSION_OPEN_FIELD_NUMBER: _ClassVar[int]
    SESSION_HIGH_FIELD_NUMBER: _ClassVar[int]
    SESSION_LOW_FIELD_NUMBER: _ClassVar[int]
    SESSION_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SESSION_TURNOVER_FIELD_NUMBER: _ClassVar[int]
    TRADE_COUNT_FIELD_NUMBER: _ClassVar[int]
    VWAP_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_PCT_FIELD_NUMBER: _ClassVar[int]
    BAR_1S_FIELD_NUMBER: _ClassVar[int]
    BAR_1M_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_CLOSE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_BASIS_FIELD_NUMBER: _ClassVar[int]
    SESSION_CLOSE_FIELD_NUMBER: _ClassVar[int]
    SESSION_START_NS_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    venue: str
    version: int
    last_sequence: int
    last_price: str
    last_size: str
    last_trade_time_ns: int
    bid_price: str
    bid_size: str
    ask_price: str
    ask_size: str
    mid: str
    spread: str
    spread_bps: float
    session_day: int
    session_open: str
    session_high: str
    session_low: str
    session_volume: str
    session_turnover: str
    trade_count: int
    vwap: str
    change: str
    change_pct: float
    bar_1s: Bar
    bar_1m: Bar
    times: StageTimes
    source: SourcePosition
    previous_close: str
    change_basis: ChangeBasis
    session_close: str
    session_start_ns: int
    def __init__(self, instrument: _Optional[str] = ..., venue: _Optional[str] = ..., version: _Optional[int] = ..., last_sequence: _Optional[int] = ..., last_price: _Optional[str] = ..., last_size: _Optional[str] = ..., last_trade_time_ns: _Optional[int] = ..., bid_price: _Optional[str] = ..., bid_size: _Optional[str] = ..., ask_price: _Optional[str] = ..., ask_size: _Optional[str] = ..., mid: _Optional[str] = ..., spread: _Optional[str] = ..., spread_bps: _Optional[float] = ..., session_day: _Optional[int] = ..., session_open: _Optional[str] = ..., session_high: _Optional[str] = ..., session_low: _Optional[str] = ..., session_volume: _Optional[str] = ..., session_turnover: _Optional[str] = ..., trade_count: _Optional[int] = ..., vwap: _Optional[str] = ..., change: _Optional[str] = ..., change_pct: _Optional[float] = ..., bar_1s: _Optional[_Union[Bar, _Mapping]] = ..., bar_1m: _Optional[_Union[Bar, _Mapping]] = ..., times: _Optional[_Union[StageTimes, _Mapping]] = ..., source: _Optional[_Union[SourcePosition, _Mapping]] = ..., previous_close: _Optional[str] = ..., change_basis: _Optional[_Union[ChangeBasis, str]] = ..., session_close: _Optional[str] = ..., session_start_ns: _Optional[int] = ...) -> None: ...

class Update(_message.Message):
    __slots__ = ("state", "traceparent")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    state: InstrumentState
    traceparent: str
    def __init__(self, state: _Optional[_Union[InstrumentState, _Mapping]] = ..., traceparent: _Optional[str] = ...) -> None: ...
