from tapewire.v1 import market_pb2 as _market_pb2
from tapewire.v1 import reference_pb2 as _reference_pb2
from tapewire.v1 import stream_pb2 as _stream_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MarketStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MARKET_STATUS_UNSPECIFIED: _ClassVar[MarketStatus]
    MARKET_STATUS_OPEN: _ClassVar[MarketStatus]
    MARKET_STATUS_PRE_OPEN: _ClassVar[MarketStatus]
    MARKET_STATUS_CLOSED: _ClassVar[MarketStatus]
MARKET_STATUS_UNSPECIFIED: MarketStatus
MARKET_STATUS_OPEN: MarketStatus
MARKET_STATUS_PRE_OPEN: MarketStatus
MARKET_STATUS_CLOSED: MarketStatus

class ListInstrumentsRequest(_message.Message):
    __slots__ = ("query", "asset_class")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ASSET_CLASS_FIELD_NUMBER: _ClassVar[int]
    query: str
    asset_class: str
    def __init__(self, query: _Optional[str] = ..., asset_class: _Optional[str] = ...) -> None: ...

class InstrumentDetails(_message.Message):
    __slots__ = ("instrument", "market_status", "status_until_ns")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    MARKET_STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_UNTIL_NS_FIELD_NUMBER: _ClassVar[int]
    instrument: _reference_pb2.Instrument
    market_status: MarketStatus
    status_until_ns: int
    def __init__(self, instrument: _Optional[_Union[_reference_pb2.Instrument, _Mapping]] = ..., market_status: _Optional[_Union[MarketStatus, str]] = ..., status_until_ns: _Optional[int] = ...) -> None: ...

class ListInstrumentsResponse(_message.Message):
    __slots__ = ("instruments", "details")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    details: _containers.RepeatedCompositeFieldContainer[InstrumentDetails]
    def __init__(self, instruments: _Optional[_Iterable[str]] = ..., details: _Optional[_Iterable[_Union[InstrumentDetails, _Mapping]]] = ...) -> None: ...

class GetSnapshotRequest(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instruments: _Optional[_Iterable[str]] = ...) -> None: ...

class GetSnapshotResponse(_message.Message):
    __slots__ = ("states", "missing")
    STATES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[_market_pb2.InstrumentState]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, states: _Optional[_Iterable[_Union[_market_pb2.InstrumentState, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...
