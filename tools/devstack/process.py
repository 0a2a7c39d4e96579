"""Running the servers as detached processes: pid files, logs, start, wait, stop.

Servers run detached (own session, output in ``.local/logs/<name>.log``, pid in ``.local/run/``)
and outlive the caller. Stopping sends a signal, waits up to STOP_TIMEOUT, then SIGKILLs.
Also the shared shell-outs: ``run`` (a command that must succeed) and ``apt_install``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tools.devstack.errors import DevstackError
from tools.devstack.paths import HOST, LOG_DIR, PG_DATA, PORT_ENV, ROOT, RUN_DIR, URL_ENV, port

START_TIMEOUT = {"kafka": 90.0, "redis": 30.0, "postgres": 60.0}
STOP_TIMEOUT = 30.0

# What /proc/<pid>/cmdline must contain for a pid file to still be ours.
CMDLINE_HINT = {"kafka": "kafka.Kafka", "redis": "redis-server", "postgres": "postgres"}

# Set by ensure_up(quiet=True) while it runs.
quiet = False


def log(msg: str) -> None:
    if quiet:
        return
    print(f"devstack: {msg}", file=sys.stderr, flush=True)


def port_open(p: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, p), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int, hint: str | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and its command line contains ``hint``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else (e.g. the postgres user)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        if hint is not None:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            # Empty while the process is between fork and exec (a server just launched): alive.
            return not cmdline or hint.encode() in cmdline
    except (OSError, IndexError):
        return hint is None
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def started_port(service: str) -> int | None:
    """The port our running server was started on (may differ from ``port()``)."""
    try:
        if service == "postgres":
            return int((PG_DATA / "postmaster.pid").read_text().splitlines()[3])
        return int(pid_file(service).read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def check_same_port(service: str, pid: int) -> None:
    started, wanted = started_port(service), port(service)
    if started is not None and started != wanted:
        raise DevstackError(
            f"our {service} (pid {pid}) is already running on port {started}, not {wanted}: "
            f"run `python3 -m tools.devstack down` before changing {PORT_ENV[service]}"
        )


def pid_file(service: str) -> Path:
    return RUN_DIR / f"{service}.pid"


def log_file(service: str) -> Path:
    return LOG_DIR / f"{service}.log"


def log_tail(path: Path, lines: int = 40) -> str:
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    try:
        data = path.read_bytes()
    except OSError:
        return f"(no log at {rel})"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return f"--- last {len(text)} lines of {rel} ---\n" + "\n".join(text)


def rotate_log(path: Path) -> None:
    """Keep the previous run's log as ``<name>.log.1``; start a fresh one."""
    if path.exists() and path.stat().st_size > 0:
        path.replace(path.with_name(path.name + ".1"))


def is_root() -> bool:
    return os.geteuid() == 0


def clean_env() -> dict[str, str]:
    """Our environment minus libpq variables that could redirect psql & co."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def run(
    cmd: list[str], what: str, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=cwd, env=env if env is not None else clean_env()
        )
    except FileNotFoundError as e:
        raise DevstackError(f"{what}: {e}") from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        raise DevstackError(f"{what} failed (exit {proc.returncode}): {shlex.join(cmd)}\n{out}")
    return proc


def apt_install(package: str) -> None:
    if not is_root():
        raise DevstackError(f"apt install of {package} needs root")
    if not shutil.which("apt-get"):
        raise DevstackError(f"{package} is missing and apt-get is not available: install it by hand")
    log(f"installing {package} with apt-get (once)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    run(["apt-get", "install", "-y", "-qq", package], f"apt-get install {package}", env=env)


def spawn_detached(
    service: str, cmd: list[str], listen_port: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> int:
    """Start ``cmd`` in its own session, output to .local/logs/<service>.log.

    A throw-away ``sh`` backgrounds the server, writes its pid and exits, so the
    server is re-parented to init rather than being our child: it outlives the
    caller, and a long-lived caller (pytest) never holds a zombie or a
    ``Popen`` object that warns about a still-running process.
    """
    pid_path = pid_file(service)
    pid_path.unlink(missing_ok=True)
    log_path = log_file(service)
    rotate_log(log_path)
    with log_path.open("ab") as log_out:
        launcher = subprocess.Popen(
            ["sh", "-c", '"$@" & echo $! > "$DEVSTACK_PID_FILE"', "sh", *cmd],
            stdin=subprocess.DEVNULL,
            stdout=log_out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env if env is not None else os.environ, DEVSTACK_PID_FILE=str(pid_path)),
            start_new_session=True,
            close_fds=True,
        )
        launcher.wait()
    pid = read_pid(pid_path)
    if launcher.returncode != 0 or pid is None:
        raise DevstackError(f"could not start {service}\n{log_tail(log_path)}")
    pid_path.write_text(f"{pid}\n{listen_port}\n")
    return pid


def wait_until(
    service: str,
    ready: Callable[[], bool],
    alive: Callable[[], bool],
    log_path: Path,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if not alive():
            raise DevstackError(f"{service} exited during start-up\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise DevstackError(
                f"{service} did not accept connections within {timeout:.0f}s "
                f"(it is still running; see the log, or run `down`)\n{log_tail(log_path)}"
            )
        time.sleep(0.25)


def port_taken_error(service: str) -> DevstackError:
    p = port(service)
    return DevstackError(
        f"port {HOST}:{p} is already in use by a process devstack did not start; "
        f"stop it, or set {PORT_ENV[service]} to another port, "
        f"or point {URL_ENV[service]} at that server"
    )


def stop_pid(service: str, pid: int, sig: int = signal.SIGTERM, hint: str | None = None) -> None:
    """Send ``sig``, wait up to STOP_TIMEOUT, then SIGKILL."""
    hint = hint or CMDLINE_HINT[service]
    if not pid_alive(pid, hint):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not pid_alive(pid, hint):
            return
        time.sleep(0.2)
    log(f"{service} (pid {pid}) did not stop within {STOP_TIMEOUT:.0f}s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not pid_alive(pid, hint):
            return
        time.sleep(0.1)
    raise DevstackError(f"{service} (pid {pid}) survived SIGKILL")
