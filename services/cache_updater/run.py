"""cache_updater's loop: processed states in, Redis state plus a pub/sub notification out.

One pipeline per batch carries one script call per state, in order; offsets are committed
after the pipeline returned (tapewire.consume_loop), so a crash replays states that the
version check then ignores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from confluent_kafka import Consumer, Message
from google.protobuf.message import DecodeError

from tapewire.consume_loop import run_batches
from tapewire.errors import StoreUnavailable
from tapewire.keys import RedisKeys
from tapewire.v1 import market_pb2 as pb

from .apply import APPLY_IF_NEWER, Change, prepare
from .metrics import CacheUpdaterMetrics
from .settings import CacheUpdaterSettings

log = logging.getLogger(__name__)


class CacheUpdater:
    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        metrics: CacheUpdaterMetrics,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._client = client
        self._keys = keys
        self._metrics = metrics
        self._clock = clock
        self._script = client.register_script(APPLY_IF_NEWER)

    def handle(self, batch: list[Message]) -> None:
        cached_ns = self._clock()
        changes = [change for message in batch if (change := self._decode(message, cached_ns)) is not None]
        if not changes:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for change in changes:
                self._script(keys=change.keys, args=change.args, client=pipe)
            applied = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        fresh = sum(1 for result in applied if result == 1)
        self._metrics.states.labels("applied").inc(fresh)
        self._metrics.states.labels("stale").inc(len(changes) - fresh)

    def _decode(self, message: Message, cached_ns: int) -> Change | None:
        value = message.value()
        if message.error() is not None or value is None:
            return None
        try:
            state = pb.InstrumentState.FromString(value)
        except DecodeError:
            # Only the processor writes this topic; a record it cannot have written is logged and skipped.
            self._metrics.states.labels("undecodable").inc()
            log.error(
                "undecodable processed state",
                extra={"partition": message.partition(), "offset": message.offset()},
            )
            return None
        if state.times.processed_ns:
            self._metrics.processed_to_cached.observe(max(0, cached_ns - state.times.processed_ns) / 1e9)
        return prepare(state, self._keys, cached_ns)


def run(
    settings: CacheUpdaterSettings,
    consumer: Consumer,
    client: redis.Redis,
    metrics: CacheUpdaterMetrics,
    stop: threading.Event,
) -> None:
    """Consume until `stop` is set, then leave the group cleanly."""
    updater = CacheUpdater(client, RedisKeys.from_settings(settings.redis), metrics)
    consumer.subscribe([settings.topics.processed])
    try:
        run_batches(consumer, updater.handle, stop, settings.loop, metrics.loop)
    finally:
        consumer.close()
        client.close()
