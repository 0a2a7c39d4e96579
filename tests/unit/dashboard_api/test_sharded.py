"""The relay's subscriptions on a Redis Cluster, with the masters' connections faked: which
master gets which SSUBSCRIBE, what reaches the relay of their confirmations, and one master's
failover while the others go on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from typing import Any, cast

import pytest
from redis.crc import key_slot

import services.dashboard_api.live.sharded as sharded_module
from services.dashboard_api.live.pubsub import PubSubConnection, PubSubError
from services.dashboard_api.live.sharded import ShardedConnection, ShardMoved, SlotMap, SlotMoved

A, B, C, D = ("10.0.0.1", 7000), ("10.0.0.2", 7000), ("10.0.0.3", 7001), ("10.0.0.4", 7001)
SLOTS = SlotMap.of([(10923, 16383, C), (0, 5460, A), (5461, 10922, B)])


class FakeConnection:
    """A master's subscription: records what was sent; `run()` until failed or dropped."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []
        self.failed: BaseException | None = None
        self.closed = False
        self._ended: asyncio.Future[None] | None = None

    def subscribe(self, channels: Collection[str], sharded: bool = False) -> None:
        self.sent.append(("SSUBSCRIBE" if sharded else "SUBSCRIBE", tuple(channels)))

    def unsubscribe(self, channels: Collection[str], sharded: bool = False) -> None:
        self.sent.append(("SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE", tuple(channels)))

    def fail(self, exc: BaseException) -> None:
        self.failed = exc
        if self._ended is not None and not self._ended.done():
            self._ended.set_exception(exc)

    def drop(self) -> None:
        self.fail(ConnectionResetError("the master died"))

    def close(self) -> None:
        self.closed = True

    async def run(self, heartbeat_s: float, stall_s: float) -> None:
        self._ended = asyncio.get_running_loop().create_future()
        if self.failed is not None:
            raise self.failed
        await self._ended


def sharded(
    slots: SlotMap = SLOTS, cluster: Any = None, shards_lost: list[int] | None = None
) -> tuple[ShardedConnection, dict[Any, FakeConnection], list[tuple[str, str]]]:
    heard: list[tuple[str, str]] = []
    connection = ShardedConnection(
        slots,
        "tt_updates",
        lambda channel, payload: None,
        lambda kind, name: heard.append((kind, name)),
        cluster,
        (shards_lost if shards_lost is not None else []).append,
    )
    fakes = {address: FakeConnection() for address in slots.masters}
    for address, fake in fakes.items():
        connection.add(address, cast(PubSubConnection, fake))
    return connection, fakes, heard


def on(slots: SlotMap, address: Any, count: int = 1) -> list[str]:
    """`count` channels whose slots `address` serves in `slots`, each of its own slot."""
    found: dict[int, str] = {}
    for n in range(100_000):
        name = f"tt_updates:{{I{n}}}"
        slot = key_slot(name.encode())
        if slots.owner(slot) == address and slot not in found:
            found[slot] = name
            if len(found) == count:
                return list(found.values())
    raise AssertionError("not enough channels")


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
    connection.confirmations(A)("subscribe", "tt_updates")
    connection.confirmations(B)("subscribe", "tt_updates")
    assert heard == []
    connection.confirmations(C)("subscribe", "tt_updates")
    assert heard == [("subscribe", "tt_updates")]


def test_sharded_confirmations_reach_the_relay_as_classic_ones() -> None:
    connection, _, heard = sharded()
    (x,) = on(SLOTS, B)
    connection.subscribe([x])
    connection.confirmations(B)("ssubscribe", x)
    connection.unsubscribe([x])
    connection.confirmations(B)("sunsubscribe", x)
    assert heard == [("subscribe", x), ("unsubscribe", x)]


def test_a_sunsubscribe_nobody_asked_for_means_the_slot_moved() -> None:
    connection, _, _ = sharded()
    (x,) = on(SLOTS, A)
    confirmed = connection.confirmations(A)
    connection.unsubscribe([x])
    confirmed("sunsubscribe", x)
    with pytest.raises(SlotMoved):
        confirmed("sunsubscribe", x)  # the second one: Redis's own


@pytest.mark.anyio
async def test_a_channel_whose_slot_has_no_master_ends_the_subscription() -> None:
    connection, fakes, _ = sharded(SlotMap.of([(0, 100, A)]))
    name = next(f"c:{{{n}}}" for n in range(1000) if key_slot(str(n).encode()) > 100)
    connection.subscribe([name])
    with pytest.raises(SlotMoved):
        await asyncio.wait_for(connection.run(1.0, 3.0), 5)
    assert fakes[A].sent == []


class FakeCluster:
    """The slot maps the nodes give, in turn (the last one from then on), and masters that
    answer (any other refuses the connection)."""

    def __init__(
        self, maps: list[SlotMap], up: set[Any], views: list[list[tuple[Any, SlotMap]]] | None = None
    ):
        self.maps, self.up, self._views = maps, up, views or []
        self.opened: dict[Any, FakeConnection] = {}
        self.asked_excluding: list[Any] = []
        self.confirmations: dict[Any, Any] = {}

    async def views(self) -> list[tuple[Any, SlotMap]]:
        return self._views.pop(0) if len(self._views) > 1 else self._views[0]

    async def slot_map(self, excluding: Any = None) -> SlotMap:
        self.asked_excluding.append(excluding)
        return self.maps.pop(0) if len(self.maps) > 1 else self.maps[0]

    async def open(self, address: Any, on_message: Any, on_confirmation: Any) -> PubSubConnection:
        if address not in self.up:
            raise ConnectionRefusedError(f"{address} is down")
        self.opened[address] = FakeConnection()
        self.confirmations[address] = on_confirmation
        return cast(PubSubConnection, self.opened[address])


@contextlib.asynccontextmanager
async def running(connection: ShardedConnection) -> AsyncIterator[asyncio.Task[Any]]:
    """`connection.run()` in the background, cancelled when the block ends."""
    task = asyncio.create_task(connection.run(1.0, 3.0))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_a_lost_master_s_shard_waits_for_its_promoted_replica_while_the_others_go_on() -> None:
    promoted = SlotMap.of([(0, 5460, D), (5461, 10922, B), (10923, 16383, C)])
    cluster = FakeCluster([SLOTS, promoted], up={B, C, D})
    lost: list[int] = []
    connection, fakes, heard = sharded(cluster=cluster, shards_lost=lost)
    kept, dropped, asked_while_down, left_while_down = on(SLOTS, A, 4)
    elsewhere = on(SLOTS, B)[0]
    connection.subscribe([kept, dropped, elsewhere, "tt_updates"])
    for name in (kept, dropped):
        connection.confirmations(A)("ssubscribe", name)
    connection.confirmations(B)("ssubscribe", elsewhere)
    for address in (A, B, C):
        connection.confirmations(address)("subscribe", "tt_updates")
    connection.unsubscribe([dropped])  # sent to A, never confirmed: A dies first
    heard.clear()
    async with running(connection) as task:
        await asyncio.sleep(0)
        fakes[A].drop()
        await asyncio.sleep(0)
        connection.subscribe([asked_while_down, left_while_down])  # held for A's successor
        connection.unsubscribe([left_while_down])
        await until(lambda: D in cluster.opened)
        assert cluster.asked_excluding[-1] == A  # the lost master's own view is not asked
        assert fakes[A].closed and not fakes[B].closed and not task.done()
        assert lost == [1, 0]  # the gauge: one shard waited for a master, then none
        sent = cluster.opened[D].sent
        # What A had confirmed, then what it had not (in order), then what was asked meanwhile.
        assert sorted(sent[:2]) == sorted([("SSUBSCRIBE", (kept,)), ("SSUBSCRIBE", (dropped,))])
        assert sent[2:] == [
            ("SUNSUBSCRIBE", (dropped,)),
            ("SSUBSCRIBE", (asked_while_down,)),
            ("SSUBSCRIBE", (left_while_down,)),
            ("SUNSUBSCRIBE", (left_while_down,)),
            ("SUBSCRIBE", ("tt_updates",)),
        ]
        # D answers in order: the shard's own SSUBSCRIBEs are not the relay's; the rest are, and
        # the bare channel last tells the relay to resync.
        confirm = cluster.confirmations[D]
        for kind, names in cluster.opened[D].sent:
            for name in names:
                confirm(kind.lower(), name)
        assert heard == [
            ("unsubscribe", dropped),
            ("subscribe", asked_while_down),
            ("subscribe", left_while_down),
            ("unsubscribe", left_while_down),
            ("subscribe", "tt_updates"),
        ]
        # From now on the slots are D's, and B's shard was never touched.
        connection.subscribe([on(SLOTS, A)[0]])
        assert cluster.opened[D].sent[-1][0] == "SSUBSCRIBE"
        assert fakes[B].sent == [("SSUBSCRIBE", (elsewhere,)), ("SUBSCRIBE", ("tt_updates",))]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("maps", "error", "match"),
    [
        # A's slots went to a master that had others: not a failover.
        ([SlotMap.of([(0, 10922, B), (10923, 16383, C)])], SlotMoved, None),
        # Nobody takes A's slots within RECOVER_S.
        ([SLOTS], PubSubError, r"no master took the slots of 10\.0\.0\.1:7000"),
    ],
)
async def test_a_lost_master_not_replaced_by_one_new_master_ends_the_subscription(
    maps: list[SlotMap], error: type[Exception], match: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sharded_module, "RECOVER_S", 0.3)
    connection, fakes, _ = sharded(cluster=FakeCluster(maps, up={B, C}))
    task = asyncio.create_task(connection.run(1.0, 3.0))
    await asyncio.sleep(0)
    fakes[A].drop()
    with pytest.raises(error, match=match):
        await asyncio.wait_for(task, 5)


@pytest.mark.anyio
async def test_a_node_that_sees_another_slot_map_ends_the_subscription(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sharded_module, "SLOT_CHECK_S", 0.01)
    moved = SlotMap.of([(0, 5460, A), (5461, 10922, C), (10923, 16383, C)])
    views = [[(A, SLOTS), (B, SLOTS)], [(A, SLOTS), (C, moved)]]
    connection, _, _ = sharded(cluster=FakeCluster([SLOTS], up={A, B, C}, views=views))
    with pytest.raises(SlotMoved, match=r"10\.0\.0\.3:7001"):
        await asyncio.wait_for(connection.run(1.0, 3.0), 5)


@pytest.mark.anyio
async def test_a_master_the_others_replaced_is_left_for_its_successor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A master cut off by a partition still answers; the others have promoted its replica."""
    monkeypatch.setattr(sharded_module, "SLOT_CHECK_S", 0.01)
    promoted = SlotMap.of([(0, 5460, D), (5461, 10922, B), (10923, 16383, C)])
    cluster = FakeCluster([promoted], up={A, B, C, D}, views=[[(A, SLOTS), (B, promoted)]])
    connection, fakes, _ = sharded(cluster=cluster)
    async with running(connection) as task:
        await until(lambda: D in cluster.opened)
        assert isinstance(fakes[A].failed, ShardMoved) and fakes[A].closed
        assert fakes[B].failed is None and not task.done()


def test_replicas_are_remembered_but_not_part_of_the_map() -> None:
    reply = [[0, 16383, [b"10.0.0.1", 7000, b"id"], [b"10.0.0.2", 7000, b"id2"]]]
    slots = SlotMap.from_reply(reply, A)
    assert slots.replicas == {B}
    assert slots == SlotMap.of([(0, 16383, A)])
