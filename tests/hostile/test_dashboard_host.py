"""Hostile `Host` headers against the built Next.js dashboard (`next start`): a malformed host is
never a 500, and no host off the allow-list ends up in the page's API or WebSocket URLs.

Only the dashboard runs: dashboard_api is pointed at a port nothing listens on, so the page is
rendered with its "unavailable" notice, which still carries the URLs under test.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.support import wait_for
from tools.isolation import free_port
from tools.suite import DASHBOARD_BUILT, DASHBOARD_DIR

pytestmark = pytest.mark.hostile

WEBSOCKET_URL = re.compile(rb"wss?://[^\"\\&<\s]*")


def get(port: int, host: bytes | None, proto: bytes | None = None) -> tuple[int, bytes]:
    """A raw HTTP/1.1 GET / with exactly this `Host` (or none): the status and the body."""
    head = b"GET / HTTP/1.1\r\n"
    if host is not None:
        head += b"Host: " + host + b"\r\n"
    if proto is not None:
        head += b"X-Forwarded-Proto: " + proto + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _answers(port: int) -> bool:
    try:
        return get(port, b"localhost")[0] == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """(`next start`'s port, the unused dashboard_api port the page points browsers at)."""
    if not DASHBOARD_BUILT.exists():
        pytest.skip(f"{DASHBOARD_BUILT} is missing: build the dashboard first (make dashboard)")
    port, api_port = free_port(), free_port()
    log = (tmp_path_factory.mktemp("dashboard") / "next.log").open("wb")
    env = {
        **os.environ,
        "TAPEWIRE_API_URL": f"http://127.0.0.1:{api_port}",
        "TAPEWIRE_ALLOWED_HOSTS": "localhost,127.0.0.1,desk.example.com,[::1]",
        "NEXT_TELEMETRY_DISABLED": "1",
    }
    env.pop("TAPEWIRE_PUBLIC_API_URL", None)
    process = subprocess.Popen(
        [str(DASHBOARD_DIR / "node_modules" / ".bin" / "next"), "start", "-p", str(port)],
        cwd=DASHBOARD_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _answers(port), 60, "next start to answer 200")
        yield port, api_port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"desk.example.com:3000", b"desk.example.com"),
        (b"DESK.example.com", b"desk.example.com"),
        (b"127.0.0.1:3000", b"127.0.0.1"),
        (b"[::1]:3000", b"[::1]"),
    ],
)
def test_an_allowed_host_is_used(dashboard: tuple[int, int], host: bytes, expected: bytes) -> None:
    port, api_port = dashboard
    status, body = get(port, host)
    assert status == 200
    assert WEBSOCKET_URL.findall(body)[0] == b"ws://%s:%d/ws" % (expected, api_port)


@pytest.mark.parametrize(
    "host",
    [
        b"evil.example",
        b"evil.example:3000",
        b"desk.example.com.evil.example",
        b"desk.example.com@evil.example",
        b"evil.example/desk.example.com",
        b"a b",
        b'desk.example.com"><script>alert(1)</script>',
        b"x" * 300,
        b"[::1",
        b"localhost:99999",
        b"",
    ],
)
def test_a_malformed_or_foreign_host_falls_back(dashboard: tuple[int, int], host: bytes) -> None:
    port, api_port = dashboard
    status, body = get(port, host)
    assert status == 200
    assert WEBSOCKET_URL.findall(body)[0] == b"ws://127.0.0.1:%d/ws" % api_port
    assert b"evil.example" not in body
    assert b"<script>alert(1)" not in body


@pytest.mark.parametrize("host", [None, b"\x01desk.example.com", b"desk.example.com\x7f"])
def test_what_http_forbids_is_a_400_from_node(dashboard: tuple[int, int], host: bytes | None) -> None:
    """No `Host` at all in HTTP/1.1, or control characters in it: Node's own parser answers 400
    before the page is rendered. Never a 500."""
    status, body = get(dashboard[0], host)
    assert status == 400
    assert not WEBSOCKET_URL.findall(body)


def test_forwarded_proto_is_only_http_or_https(dashboard: tuple[int, int]) -> None:
    port, api_port = dashboard
    status, body = get(port, b"localhost", b"https")
    assert status == 200
    assert WEBSOCKET_URL.findall(body)[0] == b"wss://localhost:%d/ws" % api_port
    for proto in (b"javascript", b"wss://evil.example", b"gopher"):
        status, body = get(port, b"localhost", proto)
        assert status == 200
        assert WEBSOCKET_URL.findall(body)[0] == b"ws://localhost:%d/ws" % api_port
