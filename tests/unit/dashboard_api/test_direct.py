"""DirectSocket: the bytes it writes are the websockets library's own, and it stops at a closed
or pushing-back connection."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from services.dashboard_api.live.direct import DirectSocket, frame_header, framed
from services.dashboard_api.live.encoders import Delta, Encoder, JsonEncoder, ProtobufEncoder
from tapewire.v1 import market_pb2 as pb

pytestmark = pytest.mark.anyio


def library_frame(frame: str | bytes) -> bytes:
    if isinstance(frame, str):
        return Frame(Opcode.TEXT, frame.encode()).serialize(mask=False)
    return Frame(Opcode.BINARY, frame).serialize(mask=False)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
def test_frames_are_byte_for_byte_those_of_the_websockets_library(length: int) -> None:
    text = "é" * (length // 2) + "x" * (length % 2)  # UTF-8: the length counted is in bytes
    binary = bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert framed([text]) == library_frame(text)
    assert framed([binary]) == library_frame(binary)
    assert framed([text, binary]) == library_frame(text) + library_frame(binary)


def test_frame_header_sizes() -> None:
    assert len(frame_header(0x1, 125)) == 2
    assert len(frame_header(0x1, 126)) == 4
    assert len(frame_header(0x2, 1 << 16)) == 10


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.written))


class FakeConn:
    """websockets' ServerProtocol, as far as DirectSocket uses it (compression negotiated)."""

    def __init__(self, extensions: list[Any]) -> None:
        self.extensions = extensions
        self.sent: list[tuple[str, bytes]] = []

    def send_text(self, data: bytes) -> None:
        self.sent.append(("text", data))

    def send_binary(self, data: bytes) -> None:
        self.sent.append(("binary", data))

    def data_to_send(self) -> list[bytes]:
        out = [f"{kind}:{data.decode()};".encode() for kind, data in self.sent]
        self.sent.clear()
        return out


def protocol(extensions: list[Any] | None = None) -> SimpleNamespace:
    writable = asyncio.Event()
    writable.set()
    return SimpleNamespace(
        transport=FakeTransport(),
        conn=FakeConn(extensions or []),
        writable=writable,
        disconnected=False,
        close_sent=False,
    )


def test_frames_go_in_one_write() -> None:
    p = protocol()
    socket = DirectSocket(p)
    socket.write(["a", b"b", "c"])
    assert p.transport.written == [framed(["a", b"b", "c"])]
    assert socket.buffered == len(framed(["a", b"b", "c"]))


def test_with_compression_the_connection_compresses_each_frame() -> None:
    p = protocol([PerMessageDeflate(False, False, 12, 12)])
    DirectSocket(p).write(["a", b"b"])
    assert p.transport.written == [b"text:a;binary:b;"]


def test_writable_follows_the_transport_and_the_close() -> None:
    p = protocol()
    socket = DirectSocket(p)
    assert socket.writable
    p.writable.clear()  # pause_writing: the transport's buffer is over its high-water mark
    assert not socket.writable and socket.open
    p.writable.set()
    p.close_sent = True
    assert not socket.writable and not socket.open
    with pytest.raises(WebSocketDisconnect):
        socket.write(["late"])
    assert p.transport.written == []


async def test_wait_writable_returns_on_resume_and_raises_once_disconnected() -> None:
    p = protocol()
    p.writable.clear()
    socket = DirectSocket(p)
    waiter = asyncio.create_task(socket.wait_writable())
    await asyncio.sleep(0)
    assert not waiter.done()
    p.writable.set()  # resume_writing
    await asyncio.wait_for(waiter, 1)
    p.disconnected = True  # connection_lost sets writable too, to let waiters go
    with pytest.raises(WebSocketDisconnect):
        await socket.wait_writable()


def delta(instrument: str, version: int) -> Delta:
    return Delta(pb.InstrumentState(instrument=instrument, version=version), 1)


@pytest.mark.parametrize("encoder", [JsonEncoder(), ProtobufEncoder()])
def test_an_update_alone_is_framed_once_and_shared_by_every_connection(encoder: Encoder) -> None:
    update = delta("A", 1)
    first, second = protocol(), protocol()
    DirectSocket(first).write_updates([[update]], encoder)
    DirectSocket(second).write_updates([[update]], encoder)
    assert first.transport.written == [library_frame(encoder.update(update))]
    assert second.transport.written[0] is first.transport.written[0]


def test_batches_of_updates_go_in_one_write_one_frame_each() -> None:
    encoder = JsonEncoder()
    a1, b1, a2 = delta("A", 1), delta("B", 1), delta("A", 2)
    p = protocol()
    DirectSocket(p).write_updates([[a1, b1], [a2]], encoder)
    assert p.transport.written == [
        library_frame(encoder.updates([a1, b1])) + library_frame(encoder.update(a2))
    ]


def test_with_compression_updates_are_compressed_per_connection() -> None:
    encoder = JsonEncoder()
    p = protocol([PerMessageDeflate(False, False, 12, 12)])
    update = delta("A", 1)
    DirectSocket(p).write_updates([[update]], encoder)
    assert p.transport.written == [f"text:{encoder.update(update)};".encode()]
    assert update.wire == {}


def test_updates_to_a_closed_connection_raise() -> None:
    p = protocol()
    p.close_sent = True
    with pytest.raises(WebSocketDisconnect):
        DirectSocket(p).write_updates([[delta("A", 1)]], JsonEncoder())
    assert p.transport.written == []
