"""Centrifugo, the fan-out peer written in Go: installed from the Go module proxy, run as a process.

    install()                  # idempotent: .local/bench/bin/centrifugo (git-ignored)
    server = start(redis_url="redis://127.0.0.1:16379/0", redis_prefix="bench1234")
    server.ws_url              # ws://127.0.0.1:<port>/connection/websocket
    server.publish_url         # POST JSON {"commands": [{"publish": {...}}, ...]} with server.api_headers
    server.stop()

Version: the module proxy this project can reach serves no v6 release of
github.com/centrifugal/centrifugo (every v6 version, and the version list, answer 403), so this
pins the last v5 release, v5.4.9 (December 2024), whose configuration is the flat v5 format
below. It is built with `go install` inside a throw-away module that requires exactly that
version: `go install module@version` would first ask the proxy for the version list (to look for
a deprecation notice) and fail on the 403.

Configuration: clients connect without a token (`client_insecure`: every connection is an
anonymous user that may subscribe to any channel; loopback only), the HTTP API needs a key drawn
at random per start (never written anywhere but the run's own config file under .local/), and
the engine is Redis (same server as the other contenders, own key prefix) so that a publish goes
through Redis pub/sub to the node that holds the subscribers, as it does for dashboard_api and
python-socketio; `engine="memory"` gives the single-node setup instead.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.ready import NotReady, wait_http_ok
from tools.devstack.errors import DevstackError
from tools.devstack.go_install import go_install
from tools.isolation import free_port

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / ".local" / "bench"
BIN_DIR = BENCH_DIR / "bin"
MODULE = "github.com/centrifugal/centrifugo/v5"
VERSION = "v5.4.9"
BINARY = BIN_DIR / "centrifugo"


class CentrifugoError(RuntimeError):
    pass


def install(version: str = VERSION) -> Path:
    """Build Centrifugo `version` into .local/bench/bin with `go install`; a no-op when it is there."""
    ldflags = f"-X {MODULE}/internal/build.Version={version.removeprefix('v')}"
    try:
        return go_install(MODULE, MODULE, version, BIN_DIR, ldflags, timeout_s=900)
    except DevstackError as exc:
        raise CentrifugoError(str(exc)) from exc


@dataclass
class CentrifugoServer:
    """A running Centrifugo: where clients connect and how to publish."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    api_key: str
    config_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/connection/websocket"

    @property
    def ws_path(self) -> str:
        return "/connection/websocket"

    @property
    def publish_url(self) -> str:
        """The server API's batch endpoint: one request carries many publish commands."""
        return f"http://{self.host}:{self.port}/api/batch"

    @property
    def api_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key, "Content-Type": "application/json"}

    def stop(self, timeout_s: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.config_path.parent, ignore_errors=True)
        return code


def config(
    port: int, api_key: str, redis_url: str | None, redis_prefix: str, host: str = "127.0.0.1"
) -> dict[str, object]:
    """Centrifugo v5's configuration for the benchmark (see the module doc)."""
    settings: dict[str, object] = {
        "address": host,
        "port": str(port),
        "log_level": "error",
        "usage_stats_disable": True,
        "health": True,
        "api_key": api_key,
        "client_insecure": True,
        "allowed_origins": ["*"],
        # An instrument per channel, as the other contenders; 10 per client by default.
        "client_channel_limit": 1000,
    }
    if redis_url:
        settings.update({"engine": "redis", "redis_address": redis_url, "redis_prefix": redis_prefix})
    return settings


def start(
    redis_url: str | None,
    redis_prefix: str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_dir: Path = BENCH_DIR / "logs",
    extra_env: dict[str, str] | None = None,
    ready_timeout_s: float = 20.0,
) -> CentrifugoServer:
    """Install if needed, write a config with a fresh API key, start, wait for /health.

    `redis_url=None` runs the in-memory engine (a single node)."""
    binary = install()
    port = port or free_port()
    api_key = secrets.token_urlsafe(24)
    run_dir = Path(tempfile.mkdtemp(prefix="centrifugo-", dir=_ensure(BENCH_DIR / "run")))
    config_path = run_dir / "config.json"
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config(port, api_key, redis_url, redis_prefix, host), handle, indent=2)
    log = (_ensure(log_dir) / "centrifugo.log").open("ab")
    process = subprocess.Popen(
        [str(binary), "--config", str(config_path)],
        cwd=run_dir,
        env={**os.environ, **(extra_env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = CentrifugoServer(process, host, port, api_key, config_path, log)
    try:
        _wait_healthy(server, ready_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_healthy(server: CentrifugoServer, timeout_s: float) -> None:
    url = f"http://{server.host}:{server.port}/health"
    try:
        wait_http_ok(url, timeout_s, lambda: server.process.poll() is None, "centrifugo")
    except NotReady as error:
        raise CentrifugoError(f"{error}: see its log") from error


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    print(install())
