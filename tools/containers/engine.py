"""podman from Debian's packages, configured for this kind of machine, and its Docker API socket.

Three things differ from a stock install, each for a reason found on these machines:
- runc and cgroupfs: crun refuses cgroups in hybrid mode ("cgroups in hybrid mode not
  supported") and there is no systemd to manage cgroups;
- default rlimits: podman's defaults exceed the machine's hard limits and every container fails
  to start, so containers get ``CONTAINER_ULIMITS`` instead;
- events to a file: there is no journald.
Without systemd podman cannot schedule health checks either: ``tools.containers.health`` runs
them instead.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tools.devstack.errors import DevstackError
from tools.devstack.paths import LOCAL
from tools.devstack.process import apt_install, is_root, log_file, log_tail, pid_alive, spawn_detached

# podman and what it runs with; mmdebstrap builds the base image (tools.containers.images).
PACKAGES = ("podman", "runc", "netavark", "aardvark-dns", "uidmap", "slirp4netns", "mmdebstrap")
SOCKET = Path(os.environ.get("TAPEWIRE_PODMAN_SOCKET", "/run/podman/podman.sock"))
DOCKER_HOST = f"unix://{SOCKET}"
CONF_DROPIN = Path("/etc/containers/containers.conf.d/tapewire.conf")
CONTAINER_ULIMITS = ("nofile=4096:4096", "nproc=4096:4096")
CONF = (
    "# Written by tapewire's tools/containers (see engine.py there for why).\n"
    "[containers]\n"
    # A JSON list of strings is a TOML array as well.
    f"default_ulimits = {json.dumps(list(CONTAINER_ULIMITS))}\n"
    "[engine]\n"
    'runtime = "runc"\n'
    'cgroup_manager = "cgroupfs"\n'
    'events_logger = "file"\n'
)
SERVICE_LOG = "podman"
STATE = LOCAL / "containers"
API_PID = STATE / "api.pid"


def log(msg: str) -> None:
    print(f"containers: {msg}", file=sys.stderr, flush=True)


def ensure_engine() -> None:
    """Install podman & co. when missing and write the configuration (idempotent; root)."""
    missing = [p for p in ("podman", "runc", "mmdebstrap") if not shutil.which(p, path=_sbin_path())]
    if missing:
        if not is_root():
            raise DevstackError(
                f"{', '.join(missing)} not installed, and installing needs root: "
                f"apt-get install {' '.join(PACKAGES)}"
            )
        for package in PACKAGES:
            apt_install(package)
    if not CONF_DROPIN.exists() or CONF_DROPIN.read_text() != CONF:
        if not is_root():
            raise DevstackError(f"{CONF_DROPIN} must hold tapewire's podman settings; writing it needs root")
        CONF_DROPIN.parent.mkdir(parents=True, exist_ok=True)
        CONF_DROPIN.write_text(CONF)
        log(f"wrote {CONF_DROPIN}")


def _sbin_path() -> str:
    return os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def api_answers(timeout: float = 2.0) -> bool:
    """True when the Docker-compatible API answers ``/_ping`` on SOCKET."""
    conn = _UnixHTTPConnection(str(SOCKET), timeout)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def ensure_api() -> str:
    """Start ``podman system service`` on SOCKET unless it answers; return DOCKER_HOST's value.

    Under a lock: two callers at once (make and a test session) would otherwise both start one,
    and the first, its socket unlinked by the second, would run for ever unreachable."""
    if api_answers():
        return DOCKER_HOST
    ensure_engine()
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "api.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if api_answers():
            return DOCKER_HOST
        stop_api()  # one that no longer answers
        SOCKET.parent.mkdir(parents=True, exist_ok=True)
        SOCKET.unlink(missing_ok=True)
        # Detached like devstack's servers, so that it outlives the caller (make, pytest); in `/`,
        # the directory the containers' conmon inherits: started in a checkout that is later
        # deleted, the service answers but starts nothing ("write child: broken pipe").
        pid = spawn_detached(
            SERVICE_LOG, ["podman", "system", "service", "--time=0", DOCKER_HOST], 0, cwd=Path("/")
        )
        API_PID.write_text(f"{pid}\n")
        path = log_file(SERVICE_LOG)
        for _ in range(100):
            if api_answers(0.5):
                log(f"podman's Docker API is on {SOCKET} (pid {pid})")
                return DOCKER_HOST
            time.sleep(0.1)
    raise DevstackError(f"podman system service did not answer on {SOCKET}\n{log_tail(path)}")


def stop_api() -> None:
    """Stop the API service ensure_api started, if it runs (containers keep running)."""
    try:
        pid = int(API_PID.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if pid_alive(pid, "podman"):
        os.kill(pid, signal.SIGTERM)
        log(f"stopped podman's Docker API (pid {pid})")
    API_PID.unlink(missing_ok=True)


def podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``podman args`` (errors name the command and carry its output)."""
    proc = subprocess.run(["podman", *args], capture_output=capture, text=True)
    if check and proc.returncode != 0:
        out = ((proc.stdout or "") + (proc.stderr or "")).strip()
        raise DevstackError(f"podman {' '.join(args[:3])}... failed (exit {proc.returncode})\n{out[-4000:]}")
    return proc


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()  # not ours to close later: `self.sock` is set only once connected
            raise
        self.sock = sock
