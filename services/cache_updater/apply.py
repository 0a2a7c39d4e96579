"""Applying a processed state to Redis: newer versions only, and a notification for each.

The check, the write, the index update and the PUBLISH run as one Lua script, so Redis does
them atomically: a reader that reads a state and then sees an update on the channel can rely
on the update's version being newer, and two cache_updaters racing on one instrument (during a
rebalance) can never move it backwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import redis
from redis.client import Pipeline

from tapewire.keys import HISTORY_UPDATE_FIELD, STATE_PAYLOAD_FIELD, STATE_VERSION_FIELD, RedisKeys
from tapewire.v1 import market_pb2 as pb
from tapewire.wire import length_delimited

# One call applies a list of states, each exactly as a call of its own would: KEYS and ARGV
# hold, per state, its three keys (state hash, instruments set, history stream) and its six
# arguments (version, state bytes, channel, update bytes, instrument, history length, 0: none).
# Returns, per state, 1 when applied and 0 when the stored version is the same or newer.
# The history entry's id is the version (see tapewire/keys.py). XADD refuses an id at or
# below the stream's last one, which can only happen if someone deleted the state hash but
# not the stream: pcall keeps that from failing the write, and resuming clients then get a
# fresh snapshot because the history shows a gap.
APPLY_STATES = f"""
local applied = {{}}
for i = 0, #KEYS / 3 - 1 do
  local k, a = i * 3, i * 6
  local stored = redis.call('HGET', KEYS[k + 1], '{STATE_VERSION_FIELD}')
  if stored and tonumber(stored) >= tonumber(ARGV[a + 1]) then
    applied[i + 1] = 0
  else
    redis.call('HSET', KEYS[k + 1], '{STATE_VERSION_FIELD}', ARGV[a + 1],
               '{STATE_PAYLOAD_FIELD}', ARGV[a + 2])
    redis.call('SADD', KEYS[k + 2], ARGV[a + 5])
    if tonumber(ARGV[a + 6]) > 0 then
      redis.pcall('XADD', KEYS[k + 3], 'MAXLEN', '~', ARGV[a + 6], ARGV[a + 1] .. '-0',
                  '{HISTORY_UPDATE_FIELD}', ARGV[a + 4])
    end
    redis.call('PUBLISH', ARGV[a + 3], ARGV[a + 4])
    applied[i + 1] = 1
  end
end
return applied
"""
# States per script call. Redis runs a script to its end before anything else, so a call of
# 500 states would hold every reader (snapshots) for milliseconds; 64 keeps that well under
# one, and the client still sends a batch's calls in one pipeline.
STATES_PER_CALL = 64
# Field 1 (state) of tapewire.v1.Update, length-delimited: the tag byte of an Update's bytes.
_UPDATE_STATE_TAG = b"\x0a"
# Field 2 (traceparent), length-delimited: appended to a sampled update only (tapewire.tracing).
_UPDATE_TRACEPARENT_TAG = b"\x12"


@dataclass(frozen=True, slots=True)
class Change:
    """One state ready for the script: its keys and arguments."""

    instrument: str
    version: int
    keys: tuple[str, str, str]
    args: tuple[int, bytes, str, bytes, str, int]


def cache_stamp(cached_ns: int) -> bytes:
    """The bytes that stamp a state's cache time when appended to it: protobuf parses
    concatenated messages as their merge, so `state + cache_stamp(t)` is the state with
    `times.cached_ns = t`, and one batch's states share one stamp instead of each being
    serialized again."""
    return pb.InstrumentState(times=pb.StageTimes(cached_ns=cached_ns)).SerializeToString()


def prepare(
    state: pb.InstrumentState,
    wire: bytes,
    keys: RedisKeys,
    stamp: bytes,
    history_length: int,
    traceparent: str | None = None,
) -> Change:
    """The script's keys and arguments for one state: `wire` is its bytes as the processor
    wrote them (`state` parsed from them), `stamp` its cache time (`cache_stamp`), and
    `traceparent` the trace context of a sampled one."""
    payload = wire + stamp
    update = length_delimited(_UPDATE_STATE_TAG, payload)
    if traceparent:
        update += length_delimited(_UPDATE_TRACEPARENT_TAG, traceparent.encode())
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


def script_calls(changes: Sequence[Change]) -> Iterator[tuple[list[str], list[bytes | str | int]]]:
    """The keys and arguments of each APPLY_STATES call that applies `changes`, in order."""
    for start in range(0, len(changes), STATES_PER_CALL):
        chunk = changes[start : start + STATES_PER_CALL]
        yield (
            [key for change in chunk for key in change.keys],
            [arg for change in chunk for arg in change.args],
        )


class StateScript:
    """APPLY_STATES as registered on a Redis client: queues the calls that apply a list of
    states on a pipeline (sent when the pipeline executes) and reads back their outcome."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(APPLY_STATES)

    def queue(self, changes: Sequence[Change], pipe: Pipeline) -> int:
        """Queue the calls on `pipe`; returns how many (their results come first, in order)."""
        calls = 0
        for keys, args in script_calls(changes):
            self._script(keys=keys, args=args, client=pipe)
            calls += 1
        return calls

    @staticmethod
    def applied(results: Sequence[Sequence[int]]) -> list[int]:
        """Per state, in order: 1 when applied, 0 when Redis held that version or a newer one."""
        return [flag for call in results for flag in call]
