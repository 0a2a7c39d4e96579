"""The moving parts a fault test drives: service processes, a private Redis, a private database."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import redis
from psycopg import sql

from tests.faults.checker import Stores, versions_in_redis
from tests.support import wait_for
from tools.isolation import free_port
from tools.suite import Suite

ASSIGNED = re.compile(r'"msg": "partitions assigned", "partitions": \[\d')


class Pipeline:
    """The services of one test as processes, each restartable under its instance name."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.suite = Suite(env=env, log_dir=log_dir, services=())
        self._specs: dict[str, tuple[str, dict[str, str]]] = {}
        self.stopped: dict[str, int] | None = None

    def start(self, instance: str, extra_env: Mapping[str, str] | None = None) -> None:
        """Start `instance` (`processor-2` runs services.processor); a restart reuses its env."""
        service = instance.split("-", 1)[0]
        env = dict(extra_env or {})
        if service in ("processor", "cache_updater"):
            env.setdefault(f"{service.upper()}_METRICS_PORT", str(free_port()))
        self._specs[instance] = (service, env)
        self.suite.start_service(service, env, instance=instance)

    def restart(self, instance: str) -> None:
        service, env = self._specs[instance]
        self.suite.start_service(service, env, instance=instance)

    def kill9(self, instance: str) -> None:
        process = self.suite.processes[instance]
        process.kill()
        process.wait(10)

    def terminate(self, instance: str, timeout_s: float) -> int | None:
        """SIGTERM `instance` and wait for it; None (and SIGKILL) when it outlives `timeout_s`."""
        process = self.suite.processes[instance]
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            return None

    def exited(self) -> dict[str, int]:
        return self.suite.exited()

    def assigned(self, instance: str) -> bool:
        """Whether `instance` (a processor) has logged an assignment of at least one partition."""
        path = self.suite.log_dir / f"{instance}.log"
        return path.exists() and ASSIGNED.search(path.read_text(errors="replace")) is not None

    def log_count(self, instance: str, needle: str) -> int:
        """Lines of `instance`'s log (every run of it) that contain `needle`."""
        path = self.suite.log_dir / f"{instance}.log"
        return (
            sum(needle in line for line in path.read_text(errors="replace").splitlines())
            if path.exists()
            else 0
        )

    def stop(self) -> dict[str, int]:
        if self.stopped is None:
            self.stopped = self.suite.stop()
        return self.stopped

    def logs(self, lines: int = 25) -> str:
        return "\n".join(
            f"--- {name} (last {lines} lines) ---\n{self.suite.log_tail(name, lines)}"
            for name in self.suite.processes
        )


def wait_flowing(stores: Stores, instruments: list[str], pipeline: Pipeline, timeout_s: float = 60.0) -> None:
    """Until every instrument has a state in Redis: the whole pipeline moves."""

    def flowing() -> bool:
        assert not pipeline.exited(), f"a service ended: {pipeline.exited()}\n{pipeline.logs()}"
        try:
            return len(versions_in_redis(stores, instruments)) == len(instruments)
        except redis.RedisError:
            return False

    wait_for(flowing, timeout_s, "the pipeline to carry every instrument to Redis", interval_s=0.2)


def wait_ready(base_url: str, pipeline: Pipeline, timeout_s: float = 60.0) -> None:
    def ready() -> bool:
        assert not pipeline.exited(), f"a service ended: {pipeline.exited()}\n{pipeline.logs()}"
        try:
            return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout_s, f"{base_url} to be ready", interval_s=0.2)


class RedisServer:
    """A redis-server of the test's own, without persistence, so a restart comes back empty."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self._binary = binary
        self._directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self._directory.mkdir(parents=True, exist_ok=True)
        command = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self._directory)]
        log = (self._directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            wait_for(lambda: self._pings(client), 15, f"redis-server on port {self.port}")
        finally:
            client.close()
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def _pings(self, client: redis.Redis) -> bool:
        assert self.process is not None and self.process.poll() is None, "redis-server exited"
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False


def database_url(server_url: str, database: str) -> str:
    return urlsplit(server_url)._replace(path=f"/{database}").geturl()


@contextmanager
def private_database(server_url: str, database: str) -> Iterator[str]:
    """A database of the test's own on the shared server (its URL), dropped afterwards."""
    name = sql.Identifier(database)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield database_url(server_url, database)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def set_connections_allowed(server_url: str, database: str, allowed: bool) -> int:
    """Open or close `database` to connections; closing also ends every open one. Returns how many."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.Literal(allowed)
            )
        )
        if allowed:
            return 0
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
        return int(ended[0]) if ended else 0


def pace(until: float) -> None:
    """The deliberate spacing between faults (monotonic deadline): not an awaitable event."""
    time.sleep(max(0.0, until - time.monotonic()))
