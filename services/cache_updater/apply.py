"""Applying a processed state to Redis: newer versions only, and a notification for each.

The check, the write, the history append and the PUBLISH run as one Lua script, so Redis does
them atomically: a reader that reads a state and then sees an update on the channel can rely
on the update's version being newer, and two cache_updaters racing on one instrument (during a
rebalance) can never move it backwards.

The instrument set is added to after the scripts, in the same pipeline (one SADD per batch,
of every instrument in it, applied or not): on a Redis Cluster it lives on one shard and a
script may touch only its own slot. A listing may therefore miss an instrument for the moment
between its first state and the SADD; a SADD lost with a failover is made again by the
instrument's next batch. On a cluster each script call holds the states of one slot only
(`script_calls`), and publishes with SPUBLISH (tapewire/keys.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.crc import key_slot

from tapewire.keys import HISTORY_UPDATE_FIELD, STATE_PAYLOAD_FIELD, STATE_VERSION_FIELD, RedisKeys
from tapewire.v1 import market_pb2 as pb
from tapewire.wire import length_delimited

from .scripts import AnyPipeline, Script


def apply_states(publish: str) -> str:
    """The script that applies a list of states, `publish` being PUBLISH or SPUBLISH.

    One call applies each state exactly as a call of its own would: KEYS and ARGV hold, per
    state, its two keys (state hash, history stream) and its five arguments (version, state
    bytes, channel, update bytes, history length, 0: none). Returns, per state, 1 when applied
    and 0 when the stored version is the same or newer. The history entry's id is the version
    (see tapewire/keys.py). XADD refuses an id at or below the stream's last one, which can only
    happen if someone deleted the state hash but not the stream: pcall keeps that from failing
    the write, and resuming clients then get a fresh snapshot because the history shows a gap.
    """
    return f"""
local applied = {{}}
for i = 0, #KEYS / 2 - 1 do
  local k, a = i * 2, i * 5
  local stored = redis.call('HGET', KEYS[k + 1], '{STATE_VERSION_FIELD}')
  if stored and tonumber(stored) >= tonumber(ARGV[a + 1]) then
    applied[i + 1] = 0
  else
    redis.call('HSET', KEYS[k + 1], '{STATE_VERSION_FIELD}', ARGV[a + 1],
               '{STATE_PAYLOAD_FIELD}', ARGV[a + 2])
    if tonumber(ARGV[a + 5]) > 0 then
      redis.pcall('XADD', KEYS[k + 2], 'MAXLEN', '~', ARGV[a + 5], ARGV[a + 1] .. '-0',
                  '{HISTORY_UPDATE_FIELD}', ARGV[a + 4])
    end
    redis.call('{publish}', ARGV[a + 3], ARGV[a + 4])
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
    keys: tuple[str, str]
    args: tuple[int, bytes, str, bytes, int]


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
        keys=(keys.state(state.instrument), keys.history(state.instrument)),
        args=(state.version, payload, keys.updates(state.instrument), update, history_length),
    )


def script_calls(
    changes: Sequence[Change], slot: Callable[[Change], int] | None = None
) -> Iterator[tuple[list[str], list[bytes | str | int]]]:
    """The keys and arguments of each apply_states call that applies `changes`: in order, or,
    given each change's `slot` (a cluster), per slot in order of first appearance, each call
    within one slot (an instrument's states stay in their order either way)."""
    groups: Sequence[Sequence[Change]] = [changes]
    if slot is not None:
        by_slot: dict[int, list[Change]] = {}
        for change in changes:
            by_slot.setdefault(slot(change), []).append(change)
        groups = list(by_slot.values())
    for group in groups:
        for start in range(0, len(group), STATES_PER_CALL):
            chunk = group[start : start + STATES_PER_CALL]
            yield (
                [key for change in chunk for key in change.keys],
                [arg for change in chunk for arg in change.args],
            )


def change_slot(change: Change) -> int:
    """The cluster slot of a change: its state key's, which its history and channel share."""
    return key_slot(change.keys[0].encode())


class StateScript:
    """The apply_states script for `keys`: queues the calls that apply a list of states, and
    the instrument set's SADD, on a pipeline (sent when the pipeline executes) and reads back
    their outcome."""

    def __init__(self, keys: RedisKeys) -> None:
        self.script = Script(apply_states(keys.publish))
        self._index = keys.instruments
        self._slot = change_slot if keys.cluster else None

    def queue(self, changes: Sequence[Change], pipe: AnyPipeline) -> int:
        """Queue the calls on `pipe`; returns how many replies are theirs (they come first)."""
        if not changes:
            return 0
        calls = 0
        for keys, args in script_calls(changes, self._slot):
            self.script.queue(pipe, keys, args)
            calls += 1
        pipe.sadd(self._index, *{change.instrument: None for change in changes})
        return calls + 1

    @staticmethod
    def applied(results: Sequence[Any]) -> list[int]:
        """Per state, in the order of the calls: 1 when applied, 0 when Redis held that version
        or a newer one (`results`: the replies `queue` counted; the last is the SADD's)."""
        return [flag for call in results[:-1] for flag in call]
