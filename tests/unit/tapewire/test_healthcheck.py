"""tapewire.healthcheck: the containers' health check, against a throw-away loopback server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tapewire.healthcheck import check, main


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/healthz")
        else:
            self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_healthy_answers_exit_0(base_url: str) -> None:
    assert check(f"{base_url}/healthz") is None
    assert main([f"{base_url}/healthz"]) == 0


def test_an_unready_service_exits_1_saying_what_it_answered(
    base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([f"{base_url}/readyz"]) == 1
    assert "answered 503" in capsys.readouterr().err


def test_nothing_listening_is_unhealthy() -> None:
    problem = check("http://127.0.0.1:1/healthz")
    assert problem is not None and problem.startswith("http://127.0.0.1:1/healthz: ")
    assert "Connection refused" in problem or "ConnectionRefused" in problem


def test_a_proxy_in_the_environment_is_not_used(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Containers inherit the host's proxy variables; the proxy must not answer for the service.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert check(f"{base_url}/healthz") is None


def test_a_redirect_is_not_health(base_url: str) -> None:
    assert check(f"{base_url}/moved") == f"{base_url}/moved answered 302"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:1/",
        "http://example.com/healthz",
        "file:///etc/passwd",
        "http://127.0.0.1.example.com:80/",
    ],
)
def test_only_loopback_http_is_checked(url: str) -> None:
    assert check(url) == f"not a loopback http URL: {url!r}"


def test_usage_is_exit_2() -> None:
    assert main([]) == 2
