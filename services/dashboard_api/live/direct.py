"""Writing WebSocket frames straight to a connection's socket, past the ASGI send.

The live stream is most of what dashboard_api writes, and per frame the ASGI path costs more
than the update itself: a message dict, Starlette's and uvicorn's state checks, an await on
uvicorn's writable event, the websockets library's frame object, and a system call each. A
`DirectSocket` frames a session's pending updates itself and hands them to the asyncio
transport in one write. The bytes are what the websockets library would have written: server
frames are not masked (RFC 6455 §5.1), so without compression a frame is a two-to-ten-byte
header in front of the payload every subscriber shares. With permessage-deflate negotiated,
each frame goes through the connection's own compressor instead (its context is per client).

The connection's protocol (connection_limits.py) puts its `DirectSocket` in the ASGI scope's
extensions; without one (another server, a test double) sessions use the ASGI send.

Backpressure is the transport's own: asyncio pauses the protocol when the transport's buffer
passes its high-water mark, and `writable` is then False until it drains below the low one.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from starlette.websockets import WebSocketDisconnect

from .encoders import Delta, Encoder, Frame, updates_frame

EXTENSION = "tapewire.direct_socket"

_TEXT = 0x1
_BINARY = 0x2
_FIN = 0x80
_SHORT = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def frame_header(opcode: int, length: int) -> bytes:
    """The header of one unmasked, unfragmented frame of `length` payload bytes."""
    if length < 126:
        return bytes((_FIN | opcode, length))
    if length < 1 << 16:
        return _SHORT.pack(_FIN | opcode, 126, length)
    return _LONG.pack(_FIN | opcode, 127, length)


def framed_update(delta: Delta, encoder: Encoder) -> bytes:
    """The WebSocket frame of `delta` alone in `encoder`'s encoding, framed once per update and
    shared by every uncompressed connection it goes to."""
    wire = delta.wire.get(encoder.name)
    if wire is None:
        wire = delta.wire[encoder.name] = framed([encoder.update(delta)])
    return wire


def framed(frames: Sequence[Frame]) -> bytes:
    """`frames` as the bytes of consecutive WebSocket frames: text for str, binary for bytes."""
    parts: list[bytes] = []
    for frame in frames:
        if isinstance(frame, str):
            payload = frame.encode()
            parts.append(frame_header(_TEXT, len(payload)))
        else:
            payload = frame
            parts.append(frame_header(_BINARY, len(payload)))
        parts.append(payload)
    return b"".join(parts)


class DirectSocket:
    """One WebSocket connection of uvicorn's websockets-sansio protocol, written to directly."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        # uvicorn's WebSocketsSansIOProtocol: its transport, its websockets `ServerProtocol`
        # (`conn`), its `writable` event (set by resume_writing, cleared by pause_writing) and
        # its `disconnected` and `close_sent` flags.
        self._protocol = protocol

    @property
    def open(self) -> bool:
        protocol = self._protocol
        return not (protocol.disconnected or protocol.close_sent)

    @property
    def writable(self) -> bool:
        """Open, and the transport takes more without going over its high-water mark."""
        protocol = self._protocol
        return protocol.writable.is_set() and not (protocol.disconnected or protocol.close_sent)

    @property
    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return int(self._protocol.transport.get_write_buffer_size())

    async def wait_writable(self) -> None:
        """Until `writable`; raises WebSocketDisconnect once the connection is gone."""
        await self._protocol.writable.wait()
        if not self.open:
            raise WebSocketDisconnect(1006)

    def abort(self) -> None:
        """Drop the connection now, with whatever is still buffered for it. A client that stopped
        reading never takes the close frame, and a transport closed the polite way would hold
        its descriptor and its buffer until the client goes: this is how a slow client's cost
        ends."""
        self._protocol.transport.abort()

    def write_updates(self, batches: Sequence[list[Delta]], encoder: Encoder) -> None:
        """Queue one frame per batch of updates, in one write. Raises WebSocketDisconnect when
        closed."""
        protocol = self._protocol
        if not self.open:
            raise WebSocketDisconnect(1006)
        if protocol.conn.extensions:  # compressed: per connection, with its own context
            self.write([updates_frame(encoder, batch) for batch in batches])
            return
        parts = [
            framed_update(batch[0], encoder) if len(batch) == 1 else framed([encoder.updates(batch)])
            for batch in batches
        ]
        protocol.transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def write(self, frames: Sequence[Frame]) -> None:
        """Queue `frames` on the transport, in one write. Raises WebSocketDisconnect when closed."""
        protocol = self._protocol
        if not self.open:
            raise WebSocketDisconnect(1006)
        conn = protocol.conn
        if not conn.extensions:
            protocol.transport.write(framed(frames))
            return
        for frame in frames:
            if isinstance(frame, str):
                conn.send_text(frame.encode())
            else:
                conn.send_binary(frame)
        protocol.transport.write(b"".join(conn.data_to_send()))
