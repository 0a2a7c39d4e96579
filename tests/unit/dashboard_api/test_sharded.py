"""The relay's subscriptions on a Redis Cluster, with the masters' connections faked: which
master gets which SSUBSCRIBE, and what reaches the relay of their confirmations."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, cast

import pytest
from redis.crc import key_slot

import services.dashboard_api.live.sharded as sharded_module
from services.dashboard_api.live.pubsub import PubSubConnection, PubSubError
from services.dashboard_api.live.sharded import ShardedConnection, SlotMap, SlotMoved

A, B, C = ("10.0.0.1", 7000), ("10.0.0.2", 7000), ("10.0.0.3", 7001)
SLOTS = SlotMap.of([(10923, 16383, C), (0, 5460, A), (5461, 10922, B)])


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []
        self.failed: BaseException | None = None

    def subscribe(self, channels: Collection[str], sharded: bool = False) -> None:
        self.sent.append(("SSUBSCRIBE" if sharded else "SUBSCRIBE", tuple(channels)))

    def unsubscribe(self, channels: Collection[str], sharded: bool = False) -> None:
        self.sent.append(("SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE", tuple(channels)))

    def fail(self, exc: PubSubError) -> None:
        self.failed = exc


def sharded() -> tuple[ShardedConnection, dict[Any, FakeConnection], list[tuple[str, str]]]:
    connection = ShardedConnection(SLOTS, "tt_updates")
    fakes = {address: FakeConnection() for address in (A, B, C)}
    for address, fake in fakes.items():
        connection.add(address, cast(PubSubConnection, fake))
    return connection, fakes, []


def test_the_slot_map_finds_each_slot_s_master() -> None:
    assert [SLOTS.owner(slot) for slot in (0, 5460, 5461, 10922, 10923, 16383)] == [A, A, B, B, C, C]
    assert SlotMap.of([(0, 99, A)]).owner(100) is None
    reply = [[0, 99, [b"", 7000, b"id"]], [100, 16383, [b"10.0.0.2", 7000, b"id2"], [b"10.0.0.3", 7001]]]
    assert SlotMap.from_reply(reply, ("10.0.0.1", 7000)) == SlotMap.of([(0, 99, A), (100, 16383, B)])
    assert SLOTS.masters == {A, B, C}


def test_each_channel_goes_to_its_slot_s_master_one_command_per_slot() -> None:
    connection, fakes, _ = sharded()
    channels = [f"tt_updates:{{I{n}}}" for n in range(30)] + ["tt_updates:{I0}"]
    connection.subscribe(["tt_updates", *channels])
    for address, fake in fakes.items():
        # The bare channel: every master, after its channels (its confirmation comes last).
        assert fake.sent[-1] == ("SUBSCRIBE", ("tt_updates",))
        for kind, names in fake.sent[:-1]:
            assert kind == "SSUBSCRIBE"
            assert len({key_slot(name.encode()) for name in names}) == 1
            assert all(SLOTS.owner(key_slot(name.encode())) == address for name in names)
    sent = sorted(name for fake in fakes.values() for _, names in fake.sent[:-1] for name in names)
    assert sent == sorted(channels)


def test_the_relay_hears_of_the_bare_channel_once_every_master_confirmed_it() -> None:
    connection, _, heard = sharded()
    confirmed = connection.confirmations(lambda kind, name: heard.append((kind, name)))
    confirmed("subscribe", "tt_updates")
    confirmed("subscribe", "tt_updates")
    assert heard == []
    confirmed("subscribe", "tt_updates")
    assert heard == [("subscribe", "tt_updates")]


def test_sharded_confirmations_reach_the_relay_as_classic_ones() -> None:
    connection, _, heard = sharded()
    confirmed = connection.confirmations(lambda kind, name: heard.append((kind, name)))
    confirmed("ssubscribe", "tt_updates:{X}")
    connection.unsubscribe(["tt_updates:{X}"])
    confirmed("sunsubscribe", "tt_updates:{X}")
    assert heard == [("subscribe", "tt_updates:{X}"), ("unsubscribe", "tt_updates:{X}")]


def test_a_sunsubscribe_nobody_asked_for_means_the_slot_moved() -> None:
    connection, _, _ = sharded()
    confirmed = connection.confirmations(lambda kind, name: None)
    connection.unsubscribe(["tt_updates:{X}"])
    confirmed("sunsubscribe", "tt_updates:{X}")
    with pytest.raises(SlotMoved):
        confirmed("sunsubscribe", "tt_updates:{X}")  # the second one: Redis's own


def test_a_channel_whose_slot_has_no_master_fails_every_connection() -> None:
    connection = ShardedConnection(SlotMap.of([(0, 100, A)]), "tt_updates")
    fake = FakeConnection()
    connection.add(A, cast(PubSubConnection, fake))
    name = next(f"c:{{{n}}}" for n in range(1000) if key_slot(str(n).encode()) > 100)
    connection.subscribe([name])
    assert isinstance(fake.failed, SlotMoved) and fake.sent == []


class ListeningConnection(FakeConnection):
    async def run(self, heartbeat_s: float, stall_s: float) -> None:
        await asyncio.Event().wait()


@pytest.mark.anyio
async def test_a_node_that_sees_another_slot_map_ends_the_subscription(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sharded_module, "SLOT_CHECK_S", 0.01)
    moved = SlotMap.of([(0, 5460, A), (5461, 10922, C), (10923, 16383, C)])
    views = [[(A, SLOTS), (B, SLOTS)], [(A, SLOTS), (C, moved)]]

    async def every_view() -> list[tuple[Any, SlotMap]]:
        return views.pop(0)

    connection = ShardedConnection(SLOTS, "tt_updates", every_view)
    for address in (A, B, C):
        connection.add(address, cast(PubSubConnection, ListeningConnection()))
    with pytest.raises(SlotMoved, match=r"10\.0\.0\.3:7001"):
        await asyncio.wait_for(connection.run(1.0, 3.0), 5)
    assert views == []  # the first round agreed, the second did not


def test_replicas_are_remembered_but_not_part_of_the_map() -> None:
    reply = [[0, 16383, [b"10.0.0.1", 7000, b"id"], [b"10.0.0.2", 7000, b"id2"]]]
    slots = SlotMap.from_reply(reply, A)
    assert slots.replicas == {B}
    assert slots == SlotMap.of([(0, 16383, A)])
