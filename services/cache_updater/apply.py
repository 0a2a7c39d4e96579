"""Applying a processed state to Redis: newer versions only, and a notification for each.

The check, the write, the index update and the PUBLISH run as one Lua script, so Redis does
them atomically: a reader that reads a state and then sees an update on the channel can rely
on the update's version being newer, and two cache_updaters racing on one instrument (during a
rebalance) can never move it backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from tapewire.keys import STATE_PAYLOAD_FIELD, STATE_VERSION_FIELD, RedisKeys
from tapewire.v1 import market_pb2 as pb

# KEYS: state hash, instruments set.  ARGV: version, state bytes, channel, update bytes, instrument.
# Returns 1 when applied, 0 when the stored version is the same or newer.
APPLY_IF_NEWER = f"""
local stored = redis.call('HGET', KEYS[1], '{STATE_VERSION_FIELD}')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], '{STATE_VERSION_FIELD}', ARGV[1], '{STATE_PAYLOAD_FIELD}', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


@dataclass(frozen=True, slots=True)
class Change:
    """One state ready for the script: its keys and arguments."""

    instrument: str
    version: int
    keys: tuple[str, str]
    args: tuple[int, bytes, str, bytes, str]


def prepare(state: pb.InstrumentState, keys: RedisKeys, cached_ns: int) -> Change:
    """Stamp the cache time and build the script's keys and arguments for one state."""
    state.times.cached_ns = cached_ns
    payload = state.SerializeToString()
    update = pb.Update(state=state).SerializeToString()
    return Change(
        instrument=state.instrument,
        version=state.version,
        keys=(keys.state(state.instrument), keys.instruments),
        args=(state.version, payload, keys.updates(state.instrument), update, state.instrument),
    )
