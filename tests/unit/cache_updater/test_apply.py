"""What cache_updater sends to Redis for a state: its bytes with the cache stamp appended, the
Update around them, and the script calls a batch becomes."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from services.cache_updater.apply import (
    STATES_PER_CALL,
    Change,
    cache_stamp,
    change_slot,
    prepare,
    script_calls,
)
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
    version, payload, channel, update, history = change.args
    expected = pb.InstrumentState()
    expected.CopyFrom(original)
    expected.times.cached_ns = 33
    assert pb.InstrumentState.FromString(payload) == expected
    assert pb.Update.FromString(update) == pb.Update(state=expected)
    assert (version, channel, history) == (7, KEYS.updates("AAPL"), 100)
    assert change.keys == (KEYS.state("AAPL"), KEYS.history("AAPL"))


def test_a_batch_becomes_calls_of_whole_states_in_order() -> None:
    stamp = cache_stamp(1)
    changes: list[Change] = []
    for n in range(2 * STATES_PER_CALL + 3):
        s = state(f"I{n}", n + 1)
        changes.append(prepare(s, s.SerializeToString(), KEYS, stamp, 0))
    calls = list(script_calls(changes))
    assert [len(keys) // 2 for keys, _ in calls] == [STATES_PER_CALL, STATES_PER_CALL, 3]
    assert all(len(args) == 5 * len(keys) // 2 for keys, args in calls)
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


def test_on_a_cluster_each_call_holds_one_slot_and_an_instrument_keeps_its_order() -> None:
    keys = RedisKeys(prefix="tt:", channel="tt_updates", cluster=True)
    stamp = cache_stamp(1)
    names = [f"I{n % 7}" for n in range(200)]  # 7 instruments, each many times
    changes = [
        prepare(state(name, v + 1), state(name, v + 1).SerializeToString(), keys, stamp, 0)
        for v, name in enumerate(names)
    ]
    calls = list(script_calls(changes, change_slot))
    for call_keys, args in calls:
        assert len({key_slot(key.encode()) for key in call_keys} | {key_slot(str(args[2]).encode())}) == 1
        assert len(call_keys) // 2 <= STATES_PER_CALL
    versions: dict[str, list[int]] = {}
    for _, args in calls:
        for at in range(0, len(args), 5):
            versions.setdefault(keys.instrument_of_channel(str(args[at + 2])), []).append(int(args[at]))
    assert versions == {name: [v + 1 for v, n in enumerate(names) if n == name] for name in set(names)}


def test_cluster_keys_share_the_instrument_s_slot_and_channels_read_back() -> None:
    keys = RedisKeys(prefix="tt:", channel="tt_updates", alerts_channel="tt_alerts", cluster=True)
    for name in ["AAPL", "a{b}c", "}{", "%7D}", "x%"]:
        slots = {key_slot(k.encode()) for k in (keys.state(name), keys.history(name), keys.updates(name))}
        assert len(slots) == 1
        assert keys.instrument_of_channel(keys.updates(name)) == name
        assert keys.user_of_alerts_channel(keys.alert_events(name)) == name
        assert (
            len(
                {
                    key_slot(k.encode())
                    for k in (keys.alerts(name), keys.alerts_terminal(name), keys.alert_events(name))
                }
            )
            == 1
        )
    assert keys.publish == "SPUBLISH" and RedisKeys(prefix="", channel="c").publish == "PUBLISH"
    plain = RedisKeys(prefix="tt:", channel="tt_updates")
    assert (plain.state("AAPL"), plain.updates("AAPL")) == ("tt:state:AAPL", "tt_updates:AAPL")
