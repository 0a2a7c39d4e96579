"""Applying a processed state to Redis: newer versions only, and a notification for each.

The check, the write, the index update and the PUBLISH run as one Lua script, so Redis does
them atomically: a reader that reads a state and then sees an update on the channel can rely
on the update's version being newer, and two cache_updaters racing on one instrument (during a
rebalance) can never move it backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from tapewire.keys import HISTORY_UPDATE_FIELD, STATE_PAYLOAD_FIELD, STATE_VERSION_FIELD, RedisKeys
from tapewire.v1 import market_pb2 as pb

# KEYS: state hash, instruments set, history stream.
# ARGV: version, state bytes, channel, update bytes, instrument, history length (0: none).
# Returns 1 when applied, 0 when the stored version is the same or newer.
# The history entry's id is the version (see tapewire/keys.py). XADD refuses an id at or
# below the stream's last one, which can only happen if someone deleted the state hash but
# not the stream: pcall keeps that from failing the write, and resuming clients then get a
# fresh snapshot because the history shows a gap.
APPLY_IF_NEWER = f"""
local stored = redis.call('HGET', KEYS[1], '{STATE_VERSION_FIELD}')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], '{STATE_VERSION_FIELD}', ARGV[1], '{STATE_PAYLOAD_FIELD}', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[5])
if tonumber(ARGV[6]) > 0 then
  redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], ARGV[1] .. '-0', '{HISTORY_UPDATE_FIELD}', ARGV[4])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


@dataclass(frozen=True, slots=True)
class Change:
    """One state ready for the script: its keys and arguments."""

    instrument: str
    version: int
    keys: tuple[str, str, str]
    args: tuple[int, bytes, str, bytes, str, int]


def prepare(state: pb.InstrumentState, keys: RedisKeys, cached_ns: int, history_length: int) -> Change:
    """Stamp the cache time and build the script's keys and arguments for one state."""
    state.times.cached_ns = cached_ns
    payload = state.SerializeToString()
    update = pb.Update(state=state).SerializeToString()
    return Change(
        instrument=state.instrument,
        version=state.version,
        keys=(keys.state(state.instrument), keys.instruments, keys.history(state.instrument)),
        args=(
            state.version,
            payload,
            keys.updates(state.instrument),
            update,
            state.instrument,
            history_length,
        ),
    )
