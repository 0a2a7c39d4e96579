"""dashboard_api's Redis client for snapshots, history and alerts: one server or a cluster."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

from tapewire.redis_client import AsyncClient
from tapewire.settings import RedisSettings


def open_redis(settings: RedisSettings, max_connections: int, pool_timeout_s: float) -> AsyncClient:
    """Connects on first use. A pooled connection from before a Redis restart is dead on first
    use: such a command is retried once on a fresh connection instead of failing the snapshot
    (and the client)."""
    url = settings.url.get_secret_value()
    options = {
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "health_check_interval": 30,
        "client_name": "dashboard_api",
        "retry": Retry(NoBackoff(), 1),
        "retry_on_error": [RedisConnectionError],
    }
    if settings.cluster:
        # After a failover the slot map is stale until one command has refreshed it; redis-py
        # refreshes at most once a second, and commands that meet the stale map meanwhile (a
        # crowd of sessions resyncing at once) must wait for that refresh rather than fail:
        # five more attempts, spread over 1.7 s.
        options["retry"] = Retry(ExponentialBackoff(cap=0.5, base=0.05), 5)
        # redis-py gives these the URL's connection options.
        nodes = [ClusterNode(host, port) for host, port in settings.startup_nodes]
        client = cast(
            WaitingRedisCluster,
            WaitingRedisCluster.from_url(
                url, startup_nodes=nodes, max_connections=max_connections, **options
            ),
        )
        client.turns = Turns(max_connections, pool_timeout_s)
        return client
    # redis-py's default pool refuses a command at once when all its connections are busy, so
    # a crowd of clients failed while Redis was healthy: this one waits for a free connection.
    return Redis.from_pool(
        BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout_s, **options
        )
    )


# The task holding a turn: a task it starts inherits the variable, but not the turn.
_IN_TURN: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar(
    "in_redis_turn", default=None
)


class Turns:
    """At most `limit` commands or pipelines in flight; the next waits up to `timeout_s` for a
    turn, then fails as Redis unavailable (503 / 1013)."""

    def __init__(self, limit: int, timeout_s: float) -> None:
        self._free = asyncio.Semaphore(limit)
        self._timeout_s = timeout_s

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        # A pipeline that meets MOVED or ASK sends those commands again through the client
        # within its own turn: a second turn there could wait forever on a full house.
        if _IN_TURN.get() is asyncio.current_task():
            yield
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._free.acquire()
        except TimeoutError:
            raise MaxConnectionsError(f"no free Redis connection within {self._timeout_s:g} s") from None
        token = _IN_TURN.set(asyncio.current_task())
        try:
            yield
        finally:
            _IN_TURN.reset(token)
            self._free.release()


class WaitingRedisCluster(RedisCluster):
    """redis-py's cluster client refuses a command at once when a node's `max_connections` are
    busy, so a crowd of clients connecting together failed their snapshots while Redis was
    healthy (seen in the benchmark: 100 clients, a third closed with 1013). Here a command or a
    pipeline waits for a turn instead, as the one-server pool does; an operation holds at most
    one connection per node, so the turns bound the connections too."""

    turns: Turns

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turns.turn():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def execute_in_turn(*args: Any, **kwargs: Any) -> Any:
            async with self.turns.turn():
                return await execute(*args, **kwargs)

        pipe.execute = execute_in_turn  # type: ignore[method-assign]
        return pipe
