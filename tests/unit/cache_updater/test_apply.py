"""What cache_updater sends to Redis for a state: its bytes with the cache stamp appended, the
Update around them, and the script calls a batch becomes."""

from __future__ import annotations

import pytest

from services.cache_updater.apply import STATES_PER_CALL, Change, cache_stamp, prepare, script_calls
from tapewire.keys import RedisKeys
from tapewire.v1 import market_pb2 as pb

KEYS = RedisKeys(prefix="tt", channel="tt:updates", alerts_channel="tt:alerts")


def state(instrument: str, version: int, padding: int = 0) -> pb.InstrumentState:
    message = pb.InstrumentState(
        instrument=instrument, version=version, venue="X" * padding, last_price="1.5"
    )
    message.times.ingest_ns, message.times.processed_ns = 11, 22
    return message


@pytest.mark.parametrize("padding", [0, 100, 20_000])  # lengths of one, two and three varint bytes
def test_the_stamped_bytes_are_the_state_with_its_cache_time(padding: int) -> None:
    original = state("AAPL", 7, padding)
    change = prepare(original, original.SerializeToString(), KEYS, cache_stamp(33), 100)
    version, payload, channel, update, instrument, history = change.args
    expected = pb.InstrumentState()
    expected.CopyFrom(original)
    expected.times.cached_ns = 33
    assert pb.InstrumentState.FromString(payload) == expected
    assert pb.Update.FromString(update) == pb.Update(state=expected)
    assert (version, channel, instrument, history) == (7, KEYS.updates("AAPL"), "AAPL", 100)
    assert change.keys == (KEYS.state("AAPL"), KEYS.instruments, KEYS.history("AAPL"))


def test_a_batch_becomes_calls_of_whole_states_in_order() -> None:
    stamp = cache_stamp(1)
    changes: list[Change] = []
    for n in range(2 * STATES_PER_CALL + 3):
        s = state(f"I{n}", n + 1)
        changes.append(prepare(s, s.SerializeToString(), KEYS, stamp, 0))
    calls = list(script_calls(changes))
    assert [len(keys) // 3 for keys, _ in calls] == [STATES_PER_CALL, STATES_PER_CALL, 3]
    assert all(len(args) == 2 * len(keys) for keys, args in calls)
    flattened = [arg for _, args in calls for arg in args]
    assert flattened == [arg for change in changes for arg in change.args]


def test_a_sampled_state_s_update_carries_its_trace_context_and_nothing_else_changes() -> None:
    original = state("AAPL", 7)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    plain = prepare(original, original.SerializeToString(), KEYS, cache_stamp(33), 100)
    traced = prepare(original, original.SerializeToString(), KEYS, cache_stamp(33), 100, traceparent)
    update = pb.Update.FromString(traced.args[3])
    assert update.traceparent == traceparent
    assert update.state == pb.Update.FromString(plain.args[3]).state
    assert traced.args[1] == plain.args[1]  # the stored state never holds a trace context
