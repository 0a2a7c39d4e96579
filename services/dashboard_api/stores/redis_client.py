"""dashboard_api's Redis client for snapshots, history and alerts: one server or a cluster."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

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
        # Per node; redis-py's cluster client has no waiting pool: beyond this a command fails
        # at once (503 / 1013) instead of waiting up to `pool_timeout_s`.
        return RedisCluster.from_url(url, max_connections=max_connections, **options)
    # redis-py's default pool refuses a command at once when all its connections are busy, so
    # a crowd of clients failed while Redis was healthy: this one waits for a free connection.
    return Redis.from_pool(
        BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout_s, **options
        )
    )
