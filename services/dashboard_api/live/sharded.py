"""The relay's subscriptions on a Redis Cluster: one connection per master, SSUBSCRIBE per slot.

cache_updater publishes an update with SPUBLISH on its instrument's channel, which is hash-tagged
like the instrument's keys (tapewire/keys.py), so only the master that owns the slot (and its
replicas) carry it. The relay therefore holds one pubsub.py connection to each master and sends
each channel's SSUBSCRIBE to the master owning its slot, one command per slot (Redis refuses a
SSUBSCRIBE across slots). To the relay the whole looks like one connection:

- the bare channel name, which the relay subscribes to first to learn that the connection works,
  is SUBSCRIBEd (classic pub/sub) on every master, and confirmed to the relay once every master
  has confirmed it: ready means every shard is listening;
- confirmations of SSUBSCRIBE and SUNSUBSCRIBE reach the relay as subscribe and unsubscribe.

A master lost (its connection drops or stalls, or the other nodes name another master for its
slots: a master cut off by a network partition keeps its subscribers while the others promote
its replica) is that shard's failover, and only that shard's: the others go on relaying. The
shard waits for the master that serves its slots now (its promoted replica, or itself back),
asked of the other nodes, subscribes it to everything the shard had and everything asked of it
since, and then confirms the bare channel to the relay again, which resyncs its sessions from
history: the updates the shard missed come back from there, never a silent gap. Until then the
relay stays ready, and its sessions' instruments on that shard are quiet.

Anything else ends `run()` and the relay starts over from a new connect(), which reads the slot
map again from any node it has known: a slot moved to a master that already had others (Redis
sends a SUNSUBSCRIBE nobody asked for, or answers MOVED), any other change of the slot map, or
no master for the lost slots within RECOVER_S.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.crc import key_slot

from .pubsub import (
    MAX_REPLY_BYTES,
    Endpoint,
    OnConfirmation,
    OnMessage,
    PubSubConnection,
    PubSubConnector,
    PubSubError,
    Stalled,
)

log = logging.getLogger(__name__)

Address = tuple[str, int]
# How often every node's slot map is compared with the relay's (ShardedConnection._watch_slots).
SLOT_CHECK_S = 5.0
# How long a lost master's slots may go without a master before the relay starts over (and is
# not ready until the cluster covers every slot again). Redis promotes a replica after
# cluster-node-timeout (15 s by default) and an election.
RECOVER_S = 30.0
_AS_CLASSIC = {"ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}


class SlotMoved(PubSubError):
    """A master gave up a slot the relay listens on: its channels must be subscribed elsewhere."""


class ShardMoved(PubSubError):
    """The other nodes name another master for one master's slots (a failover it did not see)."""


# What a shard's confirmation answers (_Shard.confirmed).
RELAYS, OWN, UNASKED = "relays", "own", "unasked"


@dataclass(frozen=True, slots=True)
class SlotMap:
    """Which master serves which slots: ranges sorted by their first slot."""

    starts: tuple[int, ...]
    ranges: tuple[tuple[int, int, Address], ...]
    # The replicas named with the ranges: nodes to ask next time, not part of the map.
    replicas: frozenset[Address] = field(default=frozenset(), compare=False)

    @classmethod
    def of(cls, ranges: Sequence[tuple[int, int, Address]], replicas: Iterable[Address] = ()) -> SlotMap:
        ordered = tuple(sorted(ranges))
        return cls(tuple(first for first, _, _ in ordered), ordered, frozenset(replicas))

    @classmethod
    def from_reply(cls, reply: Sequence[Any], queried: Address) -> SlotMap:
        """From a CLUSTER SLOTS reply, as sent by the node at `queried`: [[first, last, [host,
        port, id, ...], replicas...], ...]. An empty host means the queried node's own."""
        ranges, replicas = [], []
        for entry in reply:
            master, *others = (_address(node, queried) for node in entry[2:])
            ranges.append((int(entry[0]), int(entry[1]), master))
            replicas += others
        return cls.of(ranges, replicas)

    @property
    def masters(self) -> set[Address]:
        return {address for _, _, address in self.ranges}

    def owner(self, slot: int) -> Address | None:
        at = bisect.bisect_right(self.starts, slot) - 1
        if at >= 0:
            first, last, address = self.ranges[at]
            if first <= slot <= last:
                return address
        return None


def _address(node: Sequence[Any], queried: Address) -> Address:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    return (host or queried[0], int(node[1]))


def channel_slot(channel: str) -> int:
    return key_slot(channel.encode())


@dataclass(eq=False)
class _Shard:
    """One master's subscription, and what was asked of it: kept across that master's failover."""

    address: Address
    connection: PubSubConnection | None = None
    # Confirmed the bare channel since it was (re)connected.
    listening: bool = False
    # Commands sent (or held while the shard had no connection) not confirmed yet, per channel
    # in order: True for SSUBSCRIBE. Redis answers in order, so a confirmation is the oldest's.
    unconfirmed: dict[str, deque[bool]] = field(default_factory=dict)
    # Channels whose last confirmed command was SSUBSCRIBE.
    subscribed: set[str] = field(default_factory=set)
    # SSUBSCRIBEs a recovery sent again for `subscribed`: their confirmations are not the relay's.
    resubscribing: Counter[str] = field(default_factory=Counter)

    def asked(self, subscribe: bool, names: Iterable[str]) -> None:
        for name in names:
            self.unconfirmed.setdefault(name, deque()).append(subscribe)

    def confirmed(self, subscribe: bool, name: str) -> str:
        """Book a confirmation: RELAYS (the answer to a command the relay sent), OWN (to a
        recovery's SSUBSCRIBE) or UNASKED (a SUNSUBSCRIBE nobody sent: Redis sends one when it
        gives the slot away)."""
        if subscribe and self.resubscribing[name]:
            self.resubscribing[name] -= 1
            if not self.resubscribing[name]:
                del self.resubscribing[name]
            return OWN
        queue = self.unconfirmed.get(name)
        if not queue or queue[0] != subscribe:
            # An SSUBSCRIBE confirmed twice is harmless (the relay counts its own); a SUNSUBSCRIBE is not.
            return RELAYS if subscribe else UNASKED
        queue.popleft()
        if not queue:
            del self.unconfirmed[name]
        if subscribe:
            self.subscribed.add(name)
        else:
            self.subscribed.discard(name)
        return RELAYS


class Cluster(Protocol):
    """What a ShardedConnection asks of the cluster to replace a master (ShardedConnector)."""

    async def views(self) -> list[tuple[Address, SlotMap]]: ...

    async def slot_map(self, excluding: Address | None = None) -> SlotMap: ...

    async def open(
        self, address: Address, on_message: OnMessage, on_confirmation: OnConfirmation
    ) -> PubSubConnection: ...


class ShardedConnection:
    """The connections to every master, subscribed as one (module doc)."""

    def __init__(
        self,
        slots: SlotMap,
        bare: str,
        on_message: OnMessage,
        on_confirmation: OnConfirmation,
        cluster: Cluster | None = None,
        shards_lost: Callable[[int], None] = lambda count: None,
    ) -> None:
        self._slots = slots
        self._bare = bare
        self._on_message = on_message
        self._forward = on_confirmation
        self._cluster = cluster
        # Told how many shards wait for a master, whenever that changes (a gauge's set).
        self._shards_lost = shards_lost
        self._shards = {address: _Shard(address) for address in sorted(slots.masters)}
        self._failure: PubSubError | None = None
        self._failed: asyncio.Future[NoReturn] | None = None

    async def open_all(self) -> None:
        """Connect to every master (through the cluster given)."""
        assert self._cluster is not None
        for address in list(self._shards):
            self.add(
                address, await self._cluster.open(address, self._on_message, self.confirmations(address))
            )

    def add(self, address: Address, connection: PubSubConnection) -> None:
        self._shards[address].connection = connection

    def confirmations(self, address: Address) -> OnConfirmation:
        """What the master's connection calls on a confirmation: passed on to the relay as the
        relay knows them, or raised as SlotMoved (which fails that connection, and run())."""
        shard = self._shards[address]
        return lambda kind, name: self._confirmed(shard, kind, name)

    def subscribe(self, channels: Collection[str]) -> None:
        self._send(True, [name for name in channels if name != self._bare])
        if self._bare in channels:
            # After the channels: a master answers in order, so its confirmation of the bare
            # channel comes once it has subscribed everything sent before it.
            for shard in self._shards.values():
                if shard.connection is not None:
                    shard.connection.subscribe([self._bare])

    def unsubscribe(self, channels: Collection[str]) -> None:
        self._send(False, list(channels))

    async def run(self, heartbeat_s: float, stall_s: float) -> NoReturn:
        """Until a failure no shard's recovery covers; raises it."""
        if self._failure is not None:
            raise self._failure
        self._failed = asyncio.get_running_loop().create_future()
        tasks: list[asyncio.Future[NoReturn]] = [
            asyncio.create_task(self._serve(shard, heartbeat_s, stall_s), name=f"relay-shard-{host}:{port}")
            for (host, port), shard in self._shards.items()
        ]
        if self._cluster is not None:
            tasks.append(asyncio.create_task(self._watch_slots(self._cluster), name="relay-slot-map"))
        try:
            done, _ = await asyncio.wait([*tasks, self._failed], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises: nothing here ends but by failing
            raise PubSubError("a shard's connection ended")  # pragma: no cover - never returns
        finally:
            self._failed = None
            if self._lost():
                self._shards_lost(0)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def close(self) -> None:
        for shard in self._shards.values():
            if shard.connection is not None:
                shard.connection.close()

    # -- one master's failover --------------------------------------------------------------

    async def _serve(self, shard: _Shard, heartbeat_s: float, stall_s: float) -> NoReturn:
        """Run the shard's connection; when it is lost, wait for its slots' next master."""
        while True:
            connection = shard.connection
            assert connection is not None
            try:
                await connection.run(heartbeat_s, stall_s)
            except (OSError, Stalled, ShardMoved) as exc:
                if self._cluster is None:
                    raise
                await self._recover(shard, self._cluster, exc)

    async def _recover(self, shard: _Shard, cluster: Cluster, lost: Exception) -> None:
        """Connect to the master that serves the lost master's slots now (itself again, or its
        promoted replica), subscribe it to the shard's channels and tell the relay, which
        resyncs its sessions. The other shards go on meanwhile. Raises when the slot map
        changed beyond those slots, or no master took them within RECOVER_S."""
        gone = shard.address
        log.warning("relay lost a redis shard", extra={"shard": f"{gone[0]}:{gone[1]}", "error": repr(lost)})
        assert shard.connection is not None
        shard.connection.close()
        shard.connection, shard.listening = None, False
        self._shards_lost(self._lost())
        deadline = time.monotonic() + RECOVER_S
        delay = 0.05
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            if time.monotonic() > deadline:
                raise PubSubError(
                    f"no master took the slots of {gone[0]}:{gone[1]} in {RECOVER_S:.0f}s"
                ) from lost
            try:
                # Not the lost master's own view: cut off by a partition, it still names itself.
                slots = await cluster.slot_map(excluding=gone)
            except PubSubError:
                continue
            owner = self._successor(slots, gone)
            if owner is None:
                continue  # the node asked does not know yet
            try:
                connection = await cluster.open(owner, self._on_message, self.confirmations(gone))
            except (OSError, PubSubError):
                continue  # not promoted yet, or restarting
            break
        if owner != gone:
            del self._shards[gone]
            shard.address = owner
            self._shards[owner] = shard
        self._slots = slots
        self._resubscribe(shard, connection)
        self._shards_lost(self._lost())
        log.warning(
            "relay has the shard again",
            extra={"shard": f"{owner[0]}:{owner[1]}", "was": f"{gone[0]}:{gone[1]}"},
        )

    def _lost(self) -> int:
        """Shards waiting for a master: those without a connection while run() runs."""
        return sum(1 for shard in self._shards.values() if shard.connection is None)

    def _successor(self, slots: SlotMap, gone: Address) -> Address | None:
        """Who serves `gone`'s slots in `slots` (None: nobody, as yet), if that is the only
        change; else SlotMoved."""
        mine = [first for first, _, address in self._slots.ranges if address == gone]
        owner = slots.owner(mine[0]) if mine else None
        if owner is None:
            return None
        if owner != gone and owner in self._shards:
            raise SlotMoved(f"the slots of {gone[0]}:{gone[1]} went to another shard's master")
        expected = SlotMap.of(
            [(a, b, owner if address == gone else address) for a, b, address in self._slots.ranges]
        )
        if slots != expected:
            raise SlotMoved("the cluster's slot map changed beyond one master's failover")
        return owner

    def _resubscribe(self, shard: _Shard, connection: PubSubConnection) -> None:
        """Everything the shard had confirmed, again (the relay counts none of it), then every
        command not confirmed, in order, then the bare channel: its confirmation tells the relay."""
        shard.connection = connection
        shard.resubscribing = Counter(shard.subscribed)
        for names in _per_slot(shard.subscribed).values():
            connection.subscribe(names, sharded=True)
        for name, queue in shard.unconfirmed.items():
            for subscribe in queue:
                if subscribe:
                    connection.subscribe([name], sharded=True)
                else:
                    connection.unsubscribe([name], sharded=True)
        connection.subscribe([self._bare])

    async def _watch_slots(self, cluster: Cluster) -> NoReturn:
        """Check every node's slot map every SLOT_CHECK_S. A master cut off from the rest by a
        network partition goes on answering its subscribers while the others promote its
        replica, which then gets the updates: only the other nodes tell. One master's slots
        gone to a new master is that shard's failover; any other change ends run()."""
        while True:
            await asyncio.sleep(SLOT_CHECK_S)
            if self._lost():
                continue
            for address, seen in await cluster.views():
                if seen == self._slots or self._lost():
                    continue
                shard = next((s for s in self._shards.values() if self._replaced(s.address, seen)), None)
                if shard is None or shard.connection is None:
                    raise SlotMoved(f"{address[0]}:{address[1]} sees another slot map")
                shard.connection.fail(
                    ShardMoved(f"{address[0]}:{address[1]} names another master for its slots")
                )
                break

    def _replaced(self, gone: Address, seen: SlotMap) -> bool:
        try:
            return self._successor(seen, gone) not in (None, gone)
        except SlotMoved:
            return False

    # -- commands and confirmations -----------------------------------------------------------

    def _confirmed(self, shard: _Shard, kind: str, name: str) -> None:
        if name == self._bare:
            if kind == "subscribe":
                shard.listening = True
                if all(s.listening for s in self._shards.values()):
                    self._forward(kind, name)
            return
        outcome = shard.confirmed(kind == "ssubscribe", name)
        if outcome == UNASKED:
            raise SlotMoved(f"redis moved the slot of {name!r}")
        if outcome == RELAYS:
            self._forward(_AS_CLASSIC.get(kind, kind), name)

    def _send(self, subscribe: bool, channels: list[str]) -> None:
        for slot, names in _per_slot(channels).items():
            owner = self._slots.owner(slot)
            shard = self._shards.get(owner) if owner is not None else None
            if shard is None:
                # No master serves the slot: start over once the cluster has one again.
                self._fail(SlotMoved(f"no master serves slot {slot}"))
                return
            shard.asked(subscribe, names)
            if shard.connection is None:
                continue  # held: sent to the shard's next master by _resubscribe
            if subscribe:
                shard.connection.subscribe(names, sharded=True)
            else:
                shard.connection.unsubscribe(names, sharded=True)

    def _fail(self, exc: PubSubError) -> None:
        if self._failed is None:
            self._failure = exc
        elif not self._failed.done():
            self._failed.set_exception(exc)


def _per_slot(channels: Iterable[str]) -> dict[int, list[str]]:
    by_slot: dict[int, list[str]] = {}
    for name in channels:
        by_slot.setdefault(channel_slot(name), []).append(name)
    return by_slot


class ShardedConnector:
    """Opens a ShardedConnection to the cluster whose nodes `url` and `startup_nodes` name;
    the nodes it learns of are asked for the slot map next time, so those may go away."""

    def __init__(
        self,
        url: str,
        bare: str,
        client_name: str | None = None,
        connect_timeout_s: float = 2.0,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        shards_lost: Callable[[int], None] = lambda count: None,
        startup_nodes: Iterable[Address] = (),
    ) -> None:
        self._endpoint = Endpoint.from_url(url)
        self._shards_lost = shards_lost
        # redis-py's connection options for the URL (TLS, login): each probe changes the address only.
        self._options: dict[str, Any] = dict(parse_url(url))
        self._bare = bare
        self._client_name = client_name
        self._connect_timeout_s = connect_timeout_s
        self._max_reply_bytes = max_reply_bytes
        self._known: list[Address] = [(self._endpoint.host, self._endpoint.port), *startup_nodes]

    async def connect(self, on_message: OnMessage, on_confirmation: OnConfirmation) -> ShardedConnection:
        sharded = ShardedConnection(
            await self.slot_map(), self._bare, on_message, on_confirmation, self, self._shards_lost
        )
        try:
            await sharded.open_all()
        except BaseException:
            sharded.close()
            raise
        return sharded

    async def open(
        self, address: Address, on_message: OnMessage, on_confirmation: OnConfirmation
    ) -> PubSubConnection:
        """A subscription connection to the node at `address`."""
        connector = PubSubConnector(
            dataclasses.replace(self._endpoint, host=address[0], port=address[1], path=None),
            self._client_name,
            self._connect_timeout_s,
            self._max_reply_bytes,
        )
        return await connector.connect(on_message, on_confirmation)

    async def slot_map(self, excluding: Address | None = None) -> SlotMap:
        """CLUSTER SLOTS from the first known node (not `excluding`) that answers; the nodes it
        names are known from then on."""
        failures = []
        for address in self._known:
            if address == excluding:
                continue
            try:
                slots = await self._ask(address)
                if slots.ranges:
                    self._known = sorted(slots.masters | slots.replicas | set(self._known))
                    return slots
                failures.append(f"{address[0]}:{address[1]}: no slots assigned")
            except Exception as exc:  # whatever it is, the next node may answer
                failures.append(f"{address[0]}:{address[1]}: {exc!r}")
        raise PubSubError("no cluster node gave its slot map: " + "; ".join(failures))

    async def views(self) -> list[tuple[Address, SlotMap]]:
        """Every known node's slot map, of those that answer (one that does not is the
        business of its own subscription, if it is a master, and of nobody else otherwise)."""
        views = []
        for address in self._known:
            with contextlib.suppress(Exception):
                views.append((address, await self._ask(address)))
        return views

    async def _ask(self, address: Address) -> SlotMap:
        options: dict[str, Any] = {**self._options, "host": address[0], "port": address[1]}
        client = Redis(
            connection_pool=ConnectionPool(**options, socket_connect_timeout=self._connect_timeout_s)
        )
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                reply = await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            return SlotMap.from_reply(reply, address)
        finally:
            await client.aclose(close_connection_pool=True)
