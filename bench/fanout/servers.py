"""The servers: each contender started on a free port with Redis names of its own, and what
a trial reads of the machine (Redis's pid, every core's busy time)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.fanout.publisher import PublisherSpec
from bench.ready import NotReady, wait_http_ok
from tools.isolation import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
LOG_DIR = ROOT / ".local" / "bench" / "logs"
CONTENDERS = ("dashboard_api", "socketio", "centrifugo")
HOST = "127.0.0.1"


@dataclass
class RunningServer:
    contender: str
    pid: int
    port: int
    publisher: PublisherSpec
    stop: Callable[[], object]
    cleanup_pattern: str  # Redis keys to delete afterwards


def _wait_http(url: str, timeout_s: float, alive: Callable[[], bool]) -> None:
    try:
        wait_http_ok(url, timeout_s, alive)
    except NotReady as error:
        raise RuntimeError(f"{error}: see {LOG_DIR}") from error


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from tools.devstack import env_vars

    return env_vars()["DATABASE_URL"]


def start_server(contender: str, redis_url: str, instruments: list[str], rate: int) -> RunningServer:
    unique = uuid.uuid4().hex[:10]
    port = free_port()
    if contender == "dashboard_api":
        from tools.suite import Suite

        prefix, channel = f"bench{unique}:", f"bench{unique}_updates"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        suite = Suite(env={}, log_dir=LOG_DIR, services=())
        process = suite.start_service(
            "dashboard_api",
            {
                "REDIS_URL": redis_url,
                "REDIS_KEY_PREFIX": prefix,
                "REDIS_UPDATES_CHANNEL": channel,
                "REDIS_ALERTS_CHANNEL": f"bench{unique}_alerts",
                "DATABASE_URL": _database_url(),
                "DASHBOARD_API_HOST": HOST,
                "DASHBOARD_API_PORT": str(port),
                # Live updates only: no Kafka (alerts) and no gRPC listener.
                "DASHBOARD_API_ALERTS_ENABLED": "false",
                "DASHBOARD_API_GRPC_ENABLED": "false",
                # Every bench client comes from one address: lift the per-address cap.
                "DASHBOARD_API_MAX_CONNECTIONS": "20000",
                "DASHBOARD_API_MAX_CONNECTIONS_PER_IP": "20000",
            },
        )
        try:
            _wait_http(f"http://{HOST}:{port}/readyz", 30, lambda: process.poll() is None)
        except BaseException:
            suite.stop(timeout_s=5)
            raise
        return RunningServer(
            contender,
            process.pid,
            port,
            PublisherSpec(
                contender, redis_url, instruments, rate, key_prefix=prefix, updates_channel=channel
            ),
            lambda: suite.stop(timeout_s=15),
            f"{prefix}*",
        )
    if contender == "socketio":
        channel = f"bench{unique}_socketio"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = (LOG_DIR / "socketio_server.log").open("ab")
        argv = [sys.executable, "-m", "bench.peers.socketio_server", "--host", HOST, "--port", str(port)]
        sio = subprocess.Popen(
            [*argv, "--redis-url", redis_url, "--channel", channel],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def stop_socketio() -> None:
            _terminate(sio)
            log.close()

        try:
            _wait_http(f"http://{HOST}:{port}/health", 30, lambda: sio.poll() is None)
        except BaseException:
            stop_socketio()
            raise

        return RunningServer(
            contender,
            sio.pid,
            port,
            PublisherSpec(contender, redis_url, instruments, rate, socketio_channel=channel),
            stop_socketio,
            f"bench{unique}*",
        )
    if contender == "centrifugo":
        from bench.peers import centrifugo

        prefix = f"bench{unique}"
        server = centrifugo.start(redis_url, prefix, host=HOST, port=port, log_dir=LOG_DIR)
        return RunningServer(
            contender,
            server.pid,
            port,
            PublisherSpec(
                contender,
                redis_url,
                instruments,
                rate,
                centrifugo_url=server.publish_url,
                centrifugo_headers=server.api_headers,
            ),
            server.stop,
            f"{prefix}*",
        )
    raise ValueError(f"unknown contender {contender!r}: one of {', '.join(CONTENDERS)}")


def _terminate(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def delete_keys(redis_url: str, pattern: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def local_redis_pid(redis_url: str) -> int | None:
    """Redis's pid when it runs on this machine (to sample its CPU too), else None."""
    client = redis.Redis.from_url(redis_url)
    try:
        pid = int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return None
    return pid if "redis" in comm else None


def busy_cores() -> tuple[float, float]:
    """(busy, total) jiffies of every core so far, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    total = sum(fields[:8])
    return total - idle, total
