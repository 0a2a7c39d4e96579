"""Reading the states cache_updater keeps in Redis (layout in tapewire/keys.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tapewire.errors import StoreUnavailable
from tapewire.keys import STATE_PAYLOAD_FIELD, STATE_VERSION_FIELD, RedisKeys
from tapewire.v1 import market_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatesRead:
    """The states found (in the order asked) and the instruments without one."""

    states: list[pb.InstrumentState]
    missing: list[str]


class StateStore:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def instruments(self) -> list[str]:
        """Every instrument that has a state, sorted."""
        try:
            members = await self._redis.smembers(self._keys.instruments)
        except RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return sorted(member.decode() if isinstance(member, bytes) else member for member in members)

    async def read(self, instruments: Sequence[str]) -> StatesRead:
        """The current states of `instruments`, in one round trip."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for instrument in instruments:
                    pipe.hmget(self._keys.state(instrument), [STATE_VERSION_FIELD, STATE_PAYLOAD_FIELD])
                replies = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        found = StatesRead(states=[], missing=[])
        for instrument, (version, payload) in zip(instruments, replies, strict=True):
            state = _decode(instrument, version, payload)
            if state is None:
                found.missing.append(instrument)
            else:
                found.states.append(state)
        return found

    async def ping(self, timeout_s: float = 1.0) -> bool:
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), timeout_s))
        except (RedisError, OSError, TimeoutError):
            return False


def _decode(instrument: str, version: bytes | None, payload: bytes | None) -> pb.InstrumentState | None:
    if version is None or payload is None:
        return None
    state = pb.InstrumentState()
    try:
        state.ParseFromString(payload)
        number = int(version)
    except (DecodeError, ValueError):
        log.error("unreadable state in redis, treated as missing", extra={"instrument": instrument})
        return None
    if state.instrument != instrument:
        log.error(
            "state under another instrument's key, treated as missing", extra={"instrument": instrument}
        )
        return None
    # The hash's `v` is what cache_updater compares against; it is written with `s` atomically,
    # so they agree. Trust `v` should they ever not.
    state.version = number
    return state
