"""The three servers together: ``ensure_up``, ``status`` and ``down``.

``up`` and ``down`` hold an flock on ``.local/run/devstack.lock``, so concurrent callers
(several pytest processes) wait for each other.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator

from tools.devstack import process
from tools.devstack.errors import DevstackError
from tools.devstack.kafka import kafka_down, kafka_pid, kafka_running, kafka_up
from tools.devstack.kafka_cluster import cluster_down, cluster_pid, cluster_running, cluster_up
from tools.devstack.paths import (
    LOCK_FILE,
    LOG_DIR,
    RUN_DIR,
    SERVICES,
    env_vars,
    external_value,
    kafka_brokers,
    redis_cluster,
)
from tools.devstack.postgres import pg_down, pg_pid, pg_running, pg_up
from tools.devstack.process import log
from tools.devstack.redis import redis_down, redis_pid, redis_running, redis_up
from tools.devstack.redis_cluster import cluster_down as redis_cluster_down
from tools.devstack.redis_cluster import cluster_pid as redis_cluster_pid
from tools.devstack.redis_cluster import cluster_running as redis_cluster_running
from tools.devstack.redis_cluster import cluster_up as redis_cluster_up


def _kafka_up() -> None:
    (cluster_up if kafka_brokers() > 1 else kafka_up)()


def _kafka_down(wipe: bool) -> None:
    """The single broker and every cluster node, whichever runs."""
    kafka_down(wipe)
    cluster_down(wipe)


def _kafka_running() -> bool:
    return cluster_running() if kafka_brokers() > 1 else kafka_running()


def _kafka_pid() -> int | None:
    return cluster_pid() if kafka_brokers() > 1 else kafka_pid()


def _redis_up() -> None:
    """The cluster or the single server; the latter refuses to start over the cluster's node 1,
    which it would otherwise take for a stranger's server on its port."""
    if redis_cluster():
        redis_cluster_up()
        return
    if redis_cluster_pid() is not None:
        raise DevstackError(
            "devstack's Redis cluster is running on the Redis port: run `python3 -m tools.devstack down` "
            "before starting the single server (DEVSTACK_REDIS_CLUSTER)"
        )
    redis_up()


def _redis_down(wipe: bool) -> None:
    """Every cluster node and the single server, whichever runs. The cluster goes first: wiping
    the single server's data deletes ``.local/redis``, the cluster's directories with it."""
    redis_cluster_down(wipe=wipe)
    redis_down(wipe)


def _redis_running() -> bool:
    return redis_cluster_running() if redis_cluster() else redis_running()


def _redis_pid() -> int | None:
    return redis_cluster_pid() if redis_cluster() else redis_pid()


_UP = {"kafka": _kafka_up, "redis": _redis_up, "postgres": pg_up}
_DOWN = {"kafka": _kafka_down, "redis": _redis_down, "postgres": pg_down}
_RUNNING = {"kafka": _kafka_running, "redis": _redis_running, "postgres": pg_running}
PID = {"kafka": _kafka_pid, "redis": _redis_pid, "postgres": pg_pid}


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise up/down across processes (e.g. two pytest sessions)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another devstack is working; waiting for its lock")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_up(*, quiet: bool = False) -> dict[str, str]:
    """Start whatever local server is missing; return the three variables.

    Servers named by an environment variable (other than our own address) are
    left alone. Idempotent and safe to call from several processes at once.
    Progress goes to stderr unless ``quiet``; the variables are only returned
    (``os.environ`` is not changed). Raises :class:`DevstackError` when a
    server cannot be installed or started.
    """
    previous, process.quiet = process.quiet, quiet
    try:
        with _locked():
            for service in SERVICES:
                if external_value(service) is None:
                    _UP[service]()
    finally:
        process.quiet = previous
    return env_vars()


def status() -> dict[str, str]:
    """``{"kafka": "running" | "stopped" | "external", ...}`` (nothing is started)."""
    out = {}
    for service in SERVICES:
        if external_value(service) is not None:
            out[service] = "external"
        else:
            out[service] = "running" if _RUNNING[service]() else "stopped"
    return out


def down(wipe: bool = False) -> None:
    """Stop the servers devstack started; with ``wipe`` also delete their data.

    The downloaded Kafka jars (.local/kafka/libs) are kept either way.
    """
    with _locked():
        errors = []
        for service in reversed(SERVICES):
            try:
                _DOWN[service](wipe)
            except DevstackError as e:
                errors.append(str(e))
        if errors:
            raise DevstackError("\n".join(errors))
