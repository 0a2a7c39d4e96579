"""Redis on 127.0.0.1:16379 (``redis-server`` from PATH, installed with apt when missing and root)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from tools.devstack.errors import DevstackError
from tools.devstack.paths import HOST, REDIS_DIR, port
from tools.devstack.process import (
    CMDLINE_HINT,
    START_TIMEOUT,
    apt_install,
    check_same_port,
    is_root,
    log,
    log_file,
    pid_alive,
    pid_file,
    port_open,
    port_taken_error,
    read_pid,
    spawn_detached,
    started_port,
    stop_pid,
    wait_until,
)


def _redis_ping(p: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, p), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_pid() -> int | None:
    pid = read_pid(pid_file("redis"))
    return pid if pid is not None and pid_alive(pid, CMDLINE_HINT["redis"]) else None


def redis_running() -> bool:
    return redis_pid() is not None and _redis_ping(started_port("redis") or port("redis"))


def redis_server_binary() -> str:
    """``redis-server``'s path (the cluster's nodes too), installed with apt when missing and root."""
    exe = shutil.which("redis-server")
    if exe:
        return exe
    if not is_root():
        raise DevstackError(
            "redis-server is not installed (and devstack is not root, so it cannot apt-get it): "
            "install it, e.g. `sudo apt-get install redis-server`, or set REDIS_URL"
        )
    apt_install("redis-server")
    exe = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not exe:
        raise DevstackError("apt-get installed redis-server but no redis-server binary was found")
    return exe


def redis_up() -> None:
    p = port("redis")
    pid = redis_pid()
    if pid is not None:
        check_same_port("redis", pid)
        if _redis_ping(p):
            return
    else:
        if port_open(p):
            raise port_taken_error("redis")
        exe = redis_server_binary()
        REDIS_DIR.mkdir(parents=True, exist_ok=True)
        log(f"starting redis on {HOST}:{p}")
        cmd = [
            exe,
            "--port",
            str(p),
            "--bind",
            HOST,
            "--dir",
            str(REDIS_DIR),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        pid = spawn_detached("redis", cmd, p, cwd=REDIS_DIR)
    wait_until(
        "redis",
        lambda: _redis_ping(p),
        lambda: pid_alive(pid, CMDLINE_HINT["redis"]),
        log_file("redis"),
        START_TIMEOUT["redis"],
    )


def redis_down(wipe: bool) -> None:
    pid = redis_pid()
    if pid is not None:
        log(f"stopping redis (pid {pid})")
        stop_pid("redis", pid)
    pid_file("redis").unlink(missing_ok=True)
    if wipe and REDIS_DIR.exists():
        shutil.rmtree(REDIS_DIR)
