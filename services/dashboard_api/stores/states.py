"""Reading the states cache_updater keeps in Redis (layout in tapewire/keys.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from tapewire.errors import StoreUnavailable
from tapewire.keys import HISTORY_UPDATE_FIELD, STATE_PAYLOAD_FIELD, STATE_VERSION_FIELD, RedisKeys
from tapewire.redis_client import STORE_ERRORS, AsyncClient
from tapewire.v1 import market_pb2 as pb

log = logging.getLogger(__name__)

_PING_ERRORS: tuple[type[Exception], ...] = (*STORE_ERRORS, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class StatesRead:
    """The states found (in the order asked) and the instruments without one."""

    states: list[pb.InstrumentState]
    missing: list[str]


@dataclass(frozen=True, slots=True)
class History:
    """What a resume can replay: per instrument, every state after the client's version, in
    order (possibly none); the instruments whose history does not reach back; and those the
    client holds a newer version of than Redis (behind after a failover), with Redis's version."""

    replays: dict[str, list[pb.InstrumentState]]
    gaps: list[str]
    ahead: dict[str, int] = field(default_factory=dict)


class StateStore:
    def __init__(self, redis: AsyncClient, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def instruments(self) -> list[str]:
        """Every instrument that has a state, sorted."""
        try:
            members = await self._redis.smembers(self._keys.instruments)
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return sorted(member.decode() if isinstance(member, bytes) else member for member in members)

    async def read(self, instruments: Sequence[str]) -> StatesRead:
        """The current states of `instruments`, in one round trip."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for instrument in instruments:
                    pipe.hmget(self._keys.state(instrument), [STATE_VERSION_FIELD, STATE_PAYLOAD_FIELD])
                replies = await pipe.execute()
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        found = StatesRead(states=[], missing=[])
        for instrument, (version, payload) in zip(instruments, replies, strict=True):
            state = _decode(instrument, version, payload)
            if state is None:
                found.missing.append(instrument)
            else:
                found.states.append(state)
        return found

    async def history(self, since: dict[str, int], budget: int) -> History:
        """The updates after `since[instrument]` from each instrument's history stream.

        At most `budget` states in all: an instrument whose share of it does not reach the
        current version counts as a gap, as does any jump between consecutive versions (Redis
        was rebuilt from the changelog) or a history that starts after `since + 1`. An
        instrument whose current version is below `since` is `ahead`: nothing to replay.
        """
        if not since:
            return History({}, [])
        per_instrument = max(1, budget // len(since))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for instrument, version in since.items():
                    pipe.hget(self._keys.state(instrument), STATE_VERSION_FIELD)
                    pipe.xrange(self._keys.history(instrument), f"{version + 1}-0", "+", count=per_instrument)
                replies = await pipe.execute()
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        found = History({}, [])
        for index, (instrument, version) in enumerate(since.items()):
            stored, entries = replies[2 * index], replies[2 * index + 1]
            current = None if stored is None else int(stored)
            if current is not None and current < version:
                found.ahead[instrument] = current
                continue
            replay = _replay(instrument, version, current, entries)
            if replay is None:
                found.gaps.append(instrument)
            else:
                found.replays[instrument] = replay
        return found

    async def ping(self, timeout_s: float = 1.0) -> bool:
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), timeout_s))
        except _PING_ERRORS:
            return False


def _replay(
    instrument: str, since: int, current: int | None, entries: list[tuple[bytes, dict[bytes, bytes]]]
) -> list[pb.InstrumentState] | None:
    """The states after `since`, or None when the history cannot account for every version."""
    if current is None:
        return [] if since == 0 else None  # no state: nothing to replay, unless Redis lost it
    if current <= since:
        return []  # nothing new (`history` lists a Redis behind the client as ahead)
    states: list[pb.InstrumentState] = []
    expected = since + 1
    for entry_id, fields in entries:
        version = int(entry_id.split(b"-", 1)[0])
        if version != expected:
            return None
        update = pb.Update()
        try:
            update.ParseFromString(fields[HISTORY_UPDATE_FIELD.encode()])
        except (DecodeError, KeyError):
            log.error("unreadable history entry", extra={"instrument": instrument, "version": version})
            return None
        if update.state.instrument != instrument or update.state.version != version:
            return None
        states.append(update.state)
        expected += 1
        if version >= current:
            break
    return states if expected > current else None


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
