"""The relay's subscriptions on a Redis Cluster: one connection per master, SSUBSCRIBE per slot.

cache_updater publishes an update with SPUBLISH on its instrument's channel, which is hash-tagged
like the instrument's keys (tapewire/keys.py), so only the master that owns the slot (and its
replicas) carry it. The relay therefore holds one pubsub.py connection to each master and sends
each channel's SSUBSCRIBE to the master owning its slot, one command per slot (Redis refuses a
SSUBSCRIBE across slots). To the relay the whole looks like one connection:

- the bare channel name, which the relay subscribes to first to learn that the connection works,
  is SUBSCRIBEd (classic pub/sub) on every master, and confirmed to the relay once every master
  has confirmed it: ready means every shard is listening;
- confirmations of SSUBSCRIBE and SUNSUBSCRIBE reach the relay as subscribe and unsubscribe;
- any failure of any master's connection ends `run()`, and so does a SUNSUBSCRIBE nobody asked
  for (Redis sends one when a slot moves to another master), a MOVED answer (the slot map was
  stale), and a node whose slot map differs from the relay's (asked of every node every
  SLOT_CHECK_S: a master cut off by a network partition keeps its subscribers while the others
  promote its replica). The relay then starts over: a new connect() reads the slot map again, from any node it
  has known, and the relay resyncs its sessions from history, so a failover or a resharding costs
  a resync, never a silent gap.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

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
)

Address = tuple[str, int]
Views = Callable[[], Awaitable[list[tuple[Address, "SlotMap"]]]]
# How often every node's slot map is compared with the relay's (ShardedConnection._watch_slots).
SLOT_CHECK_S = 5.0
_AS_CLASSIC = {"ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}


class SlotMoved(PubSubError):
    """A master gave up a slot the relay listens on: its channels must be subscribed elsewhere."""


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


class ShardedConnection:
    """The connections to every master, subscribed as one (module doc)."""

    def __init__(self, slots: SlotMap, bare: str, views: Views | None = None) -> None:
        self._slots = slots
        self._bare = bare
        self._views = views
        self._connections: dict[Address, PubSubConnection] = {}
        self._bare_confirmed = 0
        self._unsubscribing: Counter[str] = Counter()

    def confirmations(self, forward: OnConfirmation) -> OnConfirmation:
        """What each master's connection calls on a confirmation: passed on to `forward` as the
        relay knows them, or raised as SlotMoved (which fails that connection, and run())."""

        def confirmed(kind: str, name: str) -> None:
            if name == self._bare:
                if kind == "subscribe":
                    self._bare_confirmed += 1
                    if self._bare_confirmed == len(self._connections):
                        forward(kind, name)
                return
            if kind == "sunsubscribe":
                if self._unsubscribing[name] == 0:
                    raise SlotMoved(f"redis moved the slot of {name!r}")
                self._unsubscribing[name] -= 1
                if self._unsubscribing[name] == 0:
                    del self._unsubscribing[name]
            forward(_AS_CLASSIC.get(kind, kind), name)

        return confirmed

    def add(self, address: Address, connection: PubSubConnection) -> None:
        self._connections[address] = connection

    def subscribe(self, channels: Collection[str]) -> None:
        self._send(True, [name for name in channels if name != self._bare])
        if self._bare in channels:
            # After the channels: a master answers in order, so its confirmation of the bare
            # channel comes once it has subscribed everything sent before it.
            for connection in self._connections.values():
                connection.subscribe([self._bare])

    def unsubscribe(self, channels: Collection[str]) -> None:
        self._unsubscribing.update(channels)
        self._send(False, list(channels))

    async def run(self, heartbeat_s: float, stall_s: float) -> NoReturn:
        """Until any master's connection fails; raises its failure."""
        tasks = [
            asyncio.create_task(connection.run(heartbeat_s, stall_s), name=f"relay-shard-{host}:{port}")
            for (host, port), connection in self._connections.items()
        ]
        if self._views is not None:
            tasks.append(asyncio.create_task(self._watch_slots(self._views), name="relay-slot-map"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises: a connection's run() ends only by failing
            raise PubSubError("a shard's connection ended")  # pragma: no cover - run() never returns
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _watch_slots(self, views: Views) -> NoReturn:
        """Fail once any node's slot map differs from the one subscribed by. A master cut off
        from the rest by a network partition goes on answering its subscribers while the others
        promote its replica, which then gets the updates: only the other nodes tell."""
        while True:
            await asyncio.sleep(SLOT_CHECK_S)
            for address, seen in await views():
                if seen != self._slots:
                    raise SlotMoved(f"{address[0]}:{address[1]} sees another slot map")

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()

    def _fail(self, exc: PubSubError) -> None:
        for connection in self._connections.values():
            connection.fail(exc)

    def _send(self, subscribe: bool, channels: list[str]) -> None:
        by_slot: dict[int, list[str]] = {}
        for name in channels:
            by_slot.setdefault(channel_slot(name), []).append(name)
        for slot, names in by_slot.items():
            owner = self._slots.owner(slot)
            connection = self._connections.get(owner) if owner is not None else None
            if connection is None:
                # No master serves the slot: start over once the cluster has one again.
                self._fail(SlotMoved(f"no master serves slot {slot}"))
                return
            if subscribe:
                connection.subscribe(names, sharded=True)
            else:
                connection.unsubscribe(names, sharded=True)


class ShardedConnector:
    """Opens a ShardedConnection to the cluster one of whose nodes `url` names; the nodes it
    learns of are asked for the slot map next time, so the first node may go away."""

    def __init__(
        self,
        url: str,
        bare: str,
        client_name: str | None = None,
        connect_timeout_s: float = 2.0,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self._endpoint = Endpoint.from_url(url)
        # redis-py's connection options for the URL (TLS, login): each probe changes the address only.
        self._options: dict[str, Any] = dict(parse_url(url))
        self._bare = bare
        self._client_name = client_name
        self._connect_timeout_s = connect_timeout_s
        self._max_reply_bytes = max_reply_bytes
        self._known: list[Address] = [(self._endpoint.host, self._endpoint.port)]

    async def connect(self, on_message: OnMessage, on_confirmation: OnConfirmation) -> ShardedConnection:
        slots = await self._slot_map()
        self._known = sorted(slots.masters | slots.replicas | set(self._known))
        sharded = ShardedConnection(slots, self._bare, self._views)
        confirmed = sharded.confirmations(on_confirmation)
        try:
            for host, port in sorted(slots.masters):
                connector = PubSubConnector(
                    dataclasses.replace(self._endpoint, host=host, port=port, path=None),
                    self._client_name,
                    self._connect_timeout_s,
                    self._max_reply_bytes,
                )
                sharded.add((host, port), await connector.connect(on_message, confirmed))
        except BaseException:
            sharded.close()
            raise
        return sharded

    async def _slot_map(self) -> SlotMap:
        """CLUSTER SLOTS from the first known node that answers."""
        failures = []
        for address in self._known:
            try:
                slots = await self._ask(address)
                if slots.ranges:
                    return slots
                failures.append(f"{address[0]}:{address[1]}: no slots assigned")
            except Exception as exc:  # whatever it is, the next node may answer
                failures.append(f"{address[0]}:{address[1]}: {exc!r}")
        raise PubSubError("no cluster node gave its slot map: " + "; ".join(failures))

    async def _views(self) -> list[tuple[Address, SlotMap]]:
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
