"""The relay's subscription connection: reply parsing, its size bound and the URL without I/O, then
the connection against a fake Redis on loopback (plain and TLS) for what only a socket shows:
the handshake, garbage, silence and a closed connection."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.dashboard_api.live.pubsub import (
    Endpoint,
    ErrorReply,
    ProtocolViolation,
    PubSubConnection,
    PubSubConnector,
    Replies,
    Stalled,
    command,
)

pytestmark = pytest.mark.anyio


class Calls:
    """What `Replies` handed on, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any]] = []

    def message(self, channel: str, payload: bytes) -> None:
        self.seen.append(("message", channel, payload))

    def confirmation(self, kind: str, channel: str) -> None:
        self.seen.append((kind, channel, None))

    def replies(self, max_reply_bytes: int = 1 << 20) -> Replies:
        return Replies(self.message, self.confirmation, max_reply_bytes)


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def push(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(bulk(item) for item in items)


def message(channel: bytes, payload: bytes) -> bytes:
    return push(b"message", channel, payload)


def confirmation(kind: bytes, channel: bytes, count: int = 1) -> bytes:
    return b"*3\r\n" + bulk(kind) + bulk(channel) + b":%d\r\n" % count


PONG = push(b"pong", b"")


# -- Replies ---------------------------------------------------------------------------------


def test_messages_and_confirmations_are_handed_on_in_order() -> None:
    calls = Calls()
    replies = calls.replies()
    replies.feed(
        confirmation(b"subscribe", b"chan")
        + message(b"chan:A", b"\x00\xff payload")
        + PONG
        + confirmation(b"unsubscribe", b"chan:A", 0)
        + message(b"chan:B", b"")
    )
    assert calls.seen == [
        ("subscribe", "chan", None),
        ("message", "chan:A", b"\x00\xff payload"),
        ("unsubscribe", "chan:A", None),
        ("message", "chan:B", b""),
    ]


def test_replies_split_anywhere_give_the_same_calls() -> None:
    wire = confirmation(b"subscribe", b"chan:A") + message(b"chan:A", b"x" * 300) + PONG
    whole = Calls()
    whole.replies().feed(wire)
    for cut in range(1, len(wire)):
        calls = Calls()
        replies = calls.replies()
        replies.feed(wire[:cut])
        replies.feed(wire[cut:])
        assert calls.seen == whole.seen, cut


def test_a_channel_name_that_is_not_utf8_is_decoded_with_replacement() -> None:
    calls = Calls()
    calls.replies().feed(message(b"chan:\xff", b"p"))
    assert calls.seen == [("message", "chan:\ufffd", b"p")]


def test_the_handshake_oks_are_expected_and_no_others() -> None:
    calls = Calls()
    replies = calls.replies()
    replies.expect_ok(2)
    replies.feed(b"+OK\r\n+OK\r\n" + confirmation(b"subscribe", b"chan"))
    assert calls.seen == [("subscribe", "chan", None)]
    with pytest.raises(ProtocolViolation, match="unexpected reply"):
        replies.feed(b"+OK\r\n")


def test_an_error_reply_ends_the_connection() -> None:
    replies = Calls().replies()
    replies.expect_ok(1)
    with pytest.raises(ErrorReply, match="WRONGPASS"):
        replies.feed(b"-WRONGPASS invalid username-password pair\r\n")


@pytest.mark.parametrize(
    "garbage",
    [b"HTTP/1.1 400 Bad Request\r\n", b"$-5\r\n", b":12\r\n", b"$3\r\nabc\r\n"],
    ids=["not-resp", "bad-length", "integer", "bare-string"],
)
def test_garbage_ends_the_connection(garbage: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        Calls().replies().feed(garbage)


def test_kinds_never_asked_for_are_ignored() -> None:
    calls = Calls()
    calls.replies().feed(push(b"pmessage", b"p*", b"p1", b"x") + push(b"message") + b"*0\r\n")
    assert calls.seen == []


def test_a_reply_above_the_bound_ends_the_connection_however_it_arrives() -> None:
    replies = Calls().replies(max_reply_bytes=1000)
    replies.feed(b"$5000\r\n")
    with pytest.raises(ProtocolViolation, match="above 1000 bytes"):
        for _ in range(20):
            replies.feed(b"x" * 100)
    # An array that never ends, element by element: hiredis keeps no bytes but builds the list.
    replies = Calls().replies(max_reply_bytes=1000)
    replies.feed(b"*100000\r\n")
    with pytest.raises(ProtocolViolation, match="above 1000 bytes"):
        for _ in range(200):
            replies.feed(bulk(b"x"))


def test_replies_up_to_the_bound_pass_and_each_starts_the_count_over() -> None:
    calls = Calls()
    replies = calls.replies(max_reply_bytes=1000)
    wire = message(b"c", b"y" * 900) * 5
    for start in range(0, len(wire), 100):
        replies.feed(wire[start : start + 100])
    assert [payload for _, _, payload in calls.seen] == [b"y" * 900] * 5


def test_a_callback_that_fails_stops_the_feed() -> None:
    def fail(channel: str, payload: bytes) -> None:
        raise RuntimeError("bug")

    replies = Replies(fail, Calls().confirmation)
    with pytest.raises(RuntimeError, match="bug"):
        replies.feed(message(b"c", b"p"))


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    expected = b"*3\r\n$9\r\nSUBSCRIBE\r\n$6\r\nchan:A\r\n$2\r\n\xc3\xa9\r\n"
    assert command("SUBSCRIBE", "chan:A", "é") == expected
    assert command("PING") == b"*1\r\n$4\r\nPING\r\n"


# -- Endpoint --------------------------------------------------------------------------------


def test_a_plain_url_names_host_and_port_and_ignores_the_database() -> None:
    endpoint = Endpoint.from_url("redis://10.0.0.5:6390/3")
    assert (endpoint.host, endpoint.port, endpoint.path, endpoint.tls) == ("10.0.0.5", 6390, None, None)
    assert endpoint.handshake(None) == []
    assert Endpoint.from_url("redis://") == Endpoint()


def test_credentials_are_sent_as_redis_py_sends_them() -> None:
    with_user = Endpoint.from_url("redis://reader:p%40ss%3Aword@h:1/0")
    assert (with_user.username, with_user.password) == ("reader", "p@ss:word")
    assert "p@ss" not in repr(with_user)
    assert with_user.handshake("relay:x") == [
        command("AUTH", "reader", "p@ss:word"),
        command("CLIENT", "SETNAME", "relay:x"),
    ]
    assert Endpoint.from_url("redis://:secret@h").handshake(None) == [command("AUTH", "secret")]


def test_rediss_verifies_the_certificate_and_host_name_unless_told_otherwise() -> None:
    strict = Endpoint.from_url("rediss://cache.example:6380")
    assert strict.tls is not None
    assert (strict.tls.verify_mode, strict.tls.check_hostname) == (ssl.CERT_REQUIRED, True)
    lax = Endpoint.from_url("rediss://cache.example?ssl_cert_reqs=none")
    assert lax.tls is not None
    assert (lax.tls.verify_mode, lax.tls.check_hostname) == (ssl.CERT_NONE, False)


def test_a_unix_url_names_the_socket() -> None:
    endpoint = Endpoint.from_url("unix:///run/redis/redis.sock?db=2")
    assert (endpoint.path, endpoint.tls) == ("/run/redis/redis.sock", None)


def test_a_url_redis_py_refuses_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="scheme"):
        PubSubConnector("http://127.0.0.1:6379")


# -- against a fake Redis on loopback ----------------------------------------------------------


class FakeRedis:
    """Accepts one client; the test reads its commands and writes the replies it wants."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.writers: list[asyncio.StreamWriter] = []
        self._parser = hiredis.Reader()

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await self.accepted.put((reader, writer))

    async def commands(self, reader: asyncio.StreamReader, count: int) -> list[list[bytes]]:
        seen: list[list[bytes]] = []
        while len(seen) < count:
            reply = self._parser.gets()
            if reply is False:
                self._parser.feed(await reader.read(65536))
            else:
                seen.append(reply)
        return seen


@contextlib.asynccontextmanager
async def fake_redis(tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[FakeRedis, int]]:
    fake = FakeRedis()
    server = await asyncio.start_server(fake.accept, "127.0.0.1", 0, ssl=tls)
    try:
        yield fake, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in fake.writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


async def connected(url: str, calls: Calls, **options: Any) -> PubSubConnection:
    return await PubSubConnector(url, **options).connect(calls.message, calls.confirmation)


async def test_the_connection_logs_in_names_itself_and_subscribes() -> None:
    async with asyncio.timeout(10):
        calls = Calls()
        async with fake_redis() as (fake, port):
            connection = await connected(f"redis://u:pw@127.0.0.1:{port}/5", calls, client_name="relay:x")
            reader, writer = await fake.accepted.get()
            connection.subscribe(["chan", "chan:A"])
            assert await fake.commands(reader, 3) == [
                [b"AUTH", b"u", b"pw"],
                [b"CLIENT", b"SETNAME", b"relay:x"],
                [b"SUBSCRIBE", b"chan", b"chan:A"],
            ]
            writer.write(b"+OK\r\n+OK\r\n" + confirmation(b"subscribe", b"chan") + message(b"chan:A", b"p"))
            running = asyncio.create_task(connection.run(heartbeat_s=60, stall_s=120))
            while len(calls.seen) < 2:
                await asyncio.sleep(0.01)
            assert calls.seen == [("subscribe", "chan", None), ("message", "chan:A", b"p")]
            writer.close()
            with pytest.raises(ConnectionResetError):
                await running
            connection.subscribe(["chan:B"])  # closed: dropped, not an error
            connection.close()


async def test_garbage_from_the_server_ends_run_and_closes_the_connection() -> None:
    async with asyncio.timeout(10):
        async with fake_redis() as (fake, port):
            connection = await connected(f"redis://127.0.0.1:{port}", Calls())
            reader, writer = await fake.accepted.get()
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            with pytest.raises(ProtocolViolation):
                await connection.run(heartbeat_s=60, stall_s=120)
            assert await reader.read() == b""  # the client hung up


async def test_an_oversized_reply_ends_run() -> None:
    async with asyncio.timeout(10):
        async with fake_redis() as (fake, port):
            connection = await connected(f"redis://127.0.0.1:{port}", Calls(), max_reply_bytes=4096)
            _, writer = await fake.accepted.get()
            writer.write(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$100000\r\n" + b"x" * 50_000)
            with pytest.raises(ProtocolViolation, match="above 4096 bytes"):
                await connection.run(heartbeat_s=60, stall_s=120)


async def test_a_silent_server_is_pinged_then_given_up_on() -> None:
    async with asyncio.timeout(10):
        async with fake_redis() as (fake, port):
            connection = await connected(f"redis://127.0.0.1:{port}", Calls())
            reader, _ = await fake.accepted.get()
            with pytest.raises(Stalled, match="nothing from redis"):
                await connection.run(heartbeat_s=0.05, stall_s=0.2)
            assert (await fake.commands(reader, 2)) == [[b"PING"], [b"PING"]]
            connection.close()


async def test_pongs_keep_the_connection_alive() -> None:
    async with asyncio.timeout(10):
        async with fake_redis() as (fake, port):
            connection = await connected(f"redis://127.0.0.1:{port}", Calls())
            reader, writer = await fake.accepted.get()
            running = asyncio.create_task(connection.run(heartbeat_s=0.05, stall_s=0.2))
            for _ in range(8):  # 0.4 s: twice the stall time
                await fake.commands(reader, 1)
                writer.write(PONG)
            assert not running.done()
            running.cancel()
            connection.close()


async def test_a_refused_login_ends_run() -> None:
    async with asyncio.timeout(10):
        async with fake_redis() as (fake, port):
            connection = await connected(f"redis://:wrong@127.0.0.1:{port}", Calls())
            _, writer = await fake.accepted.get()
            writer.write(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
            with pytest.raises(ErrorReply, match="WRONGPASS"):
                await connection.run(heartbeat_s=60, stall_s=120)


async def test_rediss_speaks_tls_and_checks_the_certificate(tmp_path: Path) -> None:
    server_tls, ca_file = self_signed(tmp_path)

    async with asyncio.timeout(10):
        calls = Calls()
        async with fake_redis(server_tls) as (fake, port):
            connection = await connected(f"rediss://localhost:{port}?ssl_ca_certs={ca_file}", calls)
            reader, writer = await fake.accepted.get()
            connection.subscribe(["chan"])
            assert await fake.commands(reader, 1) == [[b"SUBSCRIBE", b"chan"]]
            writer.write(confirmation(b"subscribe", b"chan"))
            while not calls.seen:
                await asyncio.sleep(0.01)
            connection.close()
            with pytest.raises(ssl.SSLCertVerificationError):
                await connected(f"rediss://localhost:{port}", calls)  # not signed by a known CA


def self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for localhost, and that certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file
