"""The relay's subscription connection to Redis, read in bulk.

redis-py's PubSub hands over one message per awaited `get_message()`, through a coroutine, a
response parser and a dict per message: at 10,000 updates/s that alone fell behind. Here one
asyncio Protocol owns the connection: everything that arrives in one read is parsed by hiredis
and each complete reply is handed on synchronously (`Replies`), a published message straight to
`on_message(channel, payload)` and a SUBSCRIBE/UNSUBSCRIBE confirmation to
`on_confirmation(kind, channel)`. Commands (AUTH, CLIENT SETNAME, SUBSCRIBE, UNSUBSCRIBE, PING)
are written as RESP2 without waiting: Redis answers them in order on the same connection, so
what was confirmed is read from the replies, never from a returned awaitable.

Everything but the subscription stays on redis-py. The URL is read by redis-py's own parser;
redis://, rediss:// (TLS, with redis-py's defaults and `ssl_*` query options) and unix:// work,
with a username and password sent as AUTH. The database number means nothing to pub/sub.

Failures end `PubSubConnection.run()` with an exception: OSError when the connection drops or
cannot be made (TimeoutError, ssl.SSLError, ConnectionResetError), else a `PubSubError`:
`ProtocolViolation` (not RESP, or a reply above the size bound), `ErrorReply` (Redis refused a
command, e.g. AUTH) or `Stalled` (nothing came back for too long).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, cast

import hiredis
from redis.asyncio.connection import RedisSSLContext, SSLConnection, UnixDomainSocketConnection, parse_url

# Largest reply taken in (an Update is a few hundred bytes). A connection whose reply grows past it
# is dropped: the relay reconnects and resyncs its sessions rather than buffer without bound.
MAX_REPLY_BYTES = 1 << 20

OnMessage = Callable[[str, bytes], None]
# `kind` is the command confirmed: subscribe, unsubscribe, or (sharded) ssubscribe, sunsubscribe.
OnConfirmation = Callable[[str, str], None]


_MESSAGES = (b"message", b"smessage")
_CONFIRMATIONS = (b"subscribe", b"unsubscribe", b"ssubscribe", b"sunsubscribe")


class PubSubError(Exception):
    """The subscription connection is unusable; the relay starts over."""


class ProtocolViolation(PubSubError):
    """What came back is not a reply to a subscribed connection, or is larger than the bound."""


class ErrorReply(PubSubError):
    """Redis answered a command with an error (e.g. a refused AUTH)."""


class Stalled(PubSubError):
    """The connection went quiet: no message and no pong."""


class Replies:
    """The bytes a subscribed connection receives, turned into calls as each reply completes.

    The bound holds on what is not yet a complete reply: hiredis keeps the bytes of a partial
    bulk string in its buffer, and the elements of a partial array as objects it has already
    made, so the bound counts the bytes fed since a reply last completed. (hiredis's `maxbuf`
    only decides when an emptied buffer is freed; it limits nothing.) What is held is therefore
    at most `max_reply_bytes` plus one read; Redis itself bounds what waits for a slow relay on
    its side (client-output-buffer-limit pubsub) by dropping the connection.
    """

    def __init__(
        self, on_message: OnMessage, on_confirmation: OnConfirmation, max_reply_bytes: int = MAX_REPLY_BYTES
    ) -> None:
        self._on_message = on_message
        self._on_confirmation = on_confirmation
        self._max_reply_bytes = max_reply_bytes
        self._reader = hiredis.Reader()
        self._partial_bytes = 0
        self._oks_due = 0

    def expect_ok(self, count: int) -> None:
        """`count` commands (AUTH, CLIENT SETNAME) were sent whose answer is a plain OK."""
        self._oks_due += count

    def feed(self, data: bytes) -> None:
        """Hand on every reply `data` completes; raises PubSubError on anything else."""
        reader = self._reader
        on_message = self._on_message
        completed = False
        reader.feed(data)
        try:
            reply = reader.gets()
            while reply is not False:
                completed = True
                # The one case that matters for speed: ["message", channel, payload], or
                # "smessage" on a Redis Cluster's sharded channels (sharded.py).
                if type(reply) is list and len(reply) == 3 and reply[0] in _MESSAGES:
                    on_message(reply[1].decode("utf-8", "replace"), reply[2])
                else:
                    self._other(reply)
                reply = reader.gets()
        except hiredis.ProtocolError as exc:
            raise ProtocolViolation(f"not RESP: {exc}") from None
        self._partial_bytes = 0 if completed else self._partial_bytes + len(data)
        if self._partial_bytes > self._max_reply_bytes:
            raise ProtocolViolation(f"a reply above {self._max_reply_bytes} bytes")

    def _other(self, reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            raise ErrorReply(str(reply))
        if isinstance(reply, list):
            self._push(reply)
        elif reply == b"OK" and self._oks_due:
            self._oks_due -= 1
        else:
            raise ProtocolViolation(f"unexpected reply {reply!r:.100}")

    def _push(self, reply: list[Any]) -> None:
        # Pongs, and kinds never asked for, only show that the connection is alive.
        if len(reply) >= 2 and reply[0] in _CONFIRMATIONS and isinstance(reply[1], bytes):
            self._on_confirmation(reply[0].decode(), reply[1].decode("utf-8", "replace"))


def command(*args: str) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a Redis URL points and how to log in, without the options pub/sub has no use for."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host and port
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """Read the URL as redis-py does (`Redis.from_url`); raises ValueError on a bad one."""
        options: Mapping[str, Any] = parse_url(url)
        kind = options.get("connection_class")
        return cls(
            host=options.get("host", "localhost"),
            port=options.get("port", 6379),
            path=options.get("path", "") if kind is UnixDomainSocketConnection else None,
            username=options.get("username"),
            password=options.get("password"),
            tls=_tls_context(options) if kind is SSLConnection else None,
        )

    def handshake(self, client_name: str | None) -> list[bytes]:
        """The commands before the first SUBSCRIBE (each answered OK), as redis-py sends them."""
        commands = []
        if self.username or self.password:
            login = (self.username, self.password or "") if self.username else (self.password or "",)
            commands.append(command("AUTH", *login))
        if client_name:
            commands.append(command("CLIENT", "SETNAME", client_name))
        return commands


def _tls_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    # redis-py's SSLConnection defaults: verify the certificate and the host name.
    return RedisSSLContext(
        keyfile=options.get("ssl_keyfile"),
        certfile=options.get("ssl_certfile"),
        cert_reqs=options.get("ssl_cert_reqs", "required"),
        include_verify_flags=options.get("ssl_include_verify_flags"),
        exclude_verify_flags=options.get("ssl_exclude_verify_flags"),
        ca_certs=options.get("ssl_ca_certs"),
        ca_data=options.get("ssl_ca_data"),
        ca_path=options.get("ssl_ca_path"),
        check_hostname=options.get("ssl_check_hostname", True),
        min_version=options.get("ssl_min_version"),
        ciphers=options.get("ssl_ciphers"),
        password=options.get("ssl_password"),
    ).get()


class _Wire(asyncio.Protocol):
    """Bytes in, calls out; the first failure closes the transport and ends `closed`."""

    def __init__(self, replies: Replies) -> None:
        self.replies = replies
        self.transport: asyncio.Transport | None = None
        self.last_seen = time.monotonic()
        self.closed = asyncio.get_running_loop().create_future()
        self.error: BaseException = ConnectionResetError("redis closed the connection")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_seen = time.monotonic()
        try:
            self.replies.feed(data)
        except Exception as exc:  # a violation, an error reply, or a callback that failed
            self.fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    def fail(self, exc: BaseException) -> None:
        self._end(exc)
        if self.transport is not None:
            self.transport.abort()

    def _end(self, exc: BaseException | None) -> None:
        if not self.closed.done():
            if exc is not None:
                self.error = exc
            self.closed.set_result(None)


class Subscription(Protocol):
    """What the relay subscribes through: one connection (PubSubConnection), or one per master
    of a Redis Cluster (sharded.py)."""

    def subscribe(self, channels: Collection[str]) -> None: ...

    def unsubscribe(self, channels: Collection[str]) -> None: ...

    async def run(self, heartbeat_s: float, stall_s: float) -> NoReturn: ...

    def close(self) -> None: ...


class Connector(Protocol):
    async def connect(self, on_message: OnMessage, on_confirmation: OnConfirmation) -> Subscription: ...


class PubSubConnection:
    """One subscribed connection: commands are written at once; `run()` until it fails."""

    def __init__(self, transport: asyncio.Transport, wire: _Wire) -> None:
        self._transport = transport
        self._wire = wire

    def subscribe(self, channels: Collection[str], sharded: bool = False) -> None:
        """SUBSCRIBE, or SSUBSCRIBE (every channel of one slot: Redis refuses others)."""
        if channels:
            self._write(command("SSUBSCRIBE" if sharded else "SUBSCRIBE", *channels))

    def unsubscribe(self, channels: Collection[str], sharded: bool = False) -> None:
        if channels:
            self._write(command("SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE", *channels))

    def ping(self) -> None:
        self._write(command("PING"))

    async def run(self, heartbeat_s: float, stall_s: float) -> NoReturn:
        """Ping every `heartbeat_s`; raise once the connection fails, or is quiet for `stall_s`."""
        while True:
            await asyncio.wait([self._wire.closed], timeout=heartbeat_s)
            if self._wire.closed.done():
                raise self._wire.error
            quiet_s = time.monotonic() - self._wire.last_seen
            if quiet_s > stall_s:
                raise Stalled(f"nothing from redis for {quiet_s:.1f}s")
            self.ping()

    def close(self) -> None:
        self._transport.abort()

    def fail(self, exc: PubSubError) -> None:
        """Close, ending `run()` with `exc`."""
        self._wire.fail(exc)

    def _write(self, data: bytes) -> None:
        # Once closing, a command could not be answered: the relay subscribes again on reconnect.
        if not self._transport.is_closing():
            self._transport.write(data)


class PubSubConnector:
    """Opens subscription connections to the Redis of `url`. Makes no connection until asked."""

    def __init__(
        self,
        url: str | Endpoint,
        client_name: str | None = None,
        connect_timeout_s: float = 2.0,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self._endpoint = url if isinstance(url, Endpoint) else Endpoint.from_url(url)
        self._client_name = client_name
        self._connect_timeout_s = connect_timeout_s
        self._max_reply_bytes = max_reply_bytes

    async def connect(self, on_message: OnMessage, on_confirmation: OnConfirmation) -> PubSubConnection:
        """Connected, with AUTH and CLIENT SETNAME on their way (a refusal ends `run()`)."""
        replies = Replies(on_message, on_confirmation, self._max_reply_bytes)
        async with asyncio.timeout(self._connect_timeout_s):
            transport, wire = await self._open(lambda: _Wire(replies))
        handshake = self._endpoint.handshake(self._client_name)
        replies.expect_ok(len(handshake))
        transport.write(b"".join(handshake))
        return PubSubConnection(transport, wire)

    async def _open(self, wire: Callable[[], _Wire]) -> tuple[asyncio.Transport, _Wire]:
        loop = asyncio.get_running_loop()
        endpoint = self._endpoint
        if endpoint.path is not None:
            return await loop.create_unix_connection(wire, endpoint.path)
        transport, protocol = await loop.create_connection(
            wire, endpoint.host, endpoint.port, ssl=endpoint.tls
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A dead peer is noticed by the heartbeat anyway; keepalive also frees the socket.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return transport, protocol
