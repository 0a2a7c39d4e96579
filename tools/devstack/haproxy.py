"""HAProxy in front of several dashboard_api instances (deploy/haproxy/haproxy.cfg): installed
from Debian's package when missing, and run in the foreground for a test or a trial."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tools.devstack.errors import DevstackError
from tools.devstack.paths import ROOT
from tools.devstack.process import apt_install

CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


def ensure_haproxy() -> str:
    """The path of `haproxy`: the system's, else Debian's package. The package's own service is
    left alone: the tests start an HAProxy of their own, on their own port."""
    if shutil.which("haproxy") is None:
        apt_install("haproxy")
    found = shutil.which("haproxy")
    if found is None:
        raise DevstackError("apt-get installed haproxy but no haproxy binary was found")
    return found


def render(backends: Sequence[str]) -> str:
    """The project's configuration with one `server` line per dashboard_api address (host:port),
    in its last section, the backend."""
    if not backends:
        raise ValueError("a load balancer needs at least one dashboard_api instance")
    servers = "".join(
        f"    server dashboard_api-{n} {address} check\n" for n, address in enumerate(backends, 1)
    )
    return CONFIG.read_text().rstrip("\n") + "\n" + servers


class LoadBalancer:
    """One HAProxy process listening on `port` of loopback, in front of `backends`."""

    def __init__(self, port: int, backends: Sequence[str], directory: Path) -> None:
        self.port = port
        self._backends = list(backends)
        self._directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> LoadBalancer:
        binary = ensure_haproxy()
        self._directory.mkdir(parents=True, exist_ok=True)
        config = self._directory / "haproxy.cfg"
        config.write_text(render(self._backends))
        env = dict(os.environ, TAPEWIRE_LB_BIND=f"127.0.0.1:{self.port}")
        check = subprocess.run(
            [binary, "-c", "-q", "-f", str(config)], env=env, capture_output=True, text=True
        )
        if check.returncode != 0:
            raise DevstackError(f"haproxy refused {config}: {check.stdout}{check.stderr}")
        with (self._directory / "haproxy.log").open("ab") as log:
            # -db: in the foreground, so that the process is this one and stops with it.
            self.process = subprocess.Popen(
                [binary, "-db", "-f", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while not self._listening():
            if self.process.poll() is not None:
                raise DevstackError(f"haproxy exited {self.process.returncode}: see {self._directory}")
            if time.monotonic() > deadline:
                raise DevstackError(f"haproxy did not listen on port {self.port} in {timeout_s:g}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False
