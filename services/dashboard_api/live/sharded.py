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
  for (Redis sends one when a slot moves to another master) and a MOVED answer (the slot map was
  stale). The relay then starts over: a new connect() reads the slot map again, from any node it
  has known, and the relay resyncs its sessions from history, so a failover or a resharding costs
  a resync, never a silent gap.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
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
_AS_CLASSIC = {"ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}


class SlotMoved(PubSubError):
    """A master gave up a slot the relay listens on: its channels must be subscribed elsewhere."""


@dataclass(frozen=True, slots=True)
class SlotMap:
    """Which master serves which slots: ranges sorted by their first slot."""

    starts: tuple[int, ...]
    ranges: tuple[tuple[int, int, Address], ...]

    @classmethod
    def of(cls, ranges: Sequence[tuple[int, int, Address]]) -> SlotMap:
        ordered = tuple(sorted(ranges))
        return cls(tuple(first for first, _, _ in ordered), ordered)

    @classmethod
    def from_reply(cls, reply: Sequence[Any], queried: Address) -> SlotMap:
        """From a CLUSTER SLOTS reply, as sent by the node at `queried`: [[first, last, [host,
        port, id, ...], replicas...], ...]. An empty host means the queried node's own."""
        ranges = []
        for entry in reply:
            host = entry[2][0].decode() if isinstance(entry[2][0], bytes) else str(entry[2][0])
            ranges.append((int(entry[0]), int(entry[1]), (host or queried[0], int(entry[2][1]))))
        return cls.of(ranges)

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


def channel_slot(channel: str) -> int:
    return key_slot(channel.encode())


class ShardedConnection:
    """The connections to every master, subscribed as one (module doc)."""

    def __init__(self, slots: SlotMap, bare: str) -> None:
        self._slots = slots
        self._bare = bare
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
        if self._bare in channels:
            for connection in self._connections.values():
                connection.subscribe([self._bare])
        self._send(True, [name for name in channels if name != self._bare])

    def unsubscribe(self, channels: Collection[str]) -> None:
        self._unsubscribing.update(channels)
        self._send(False, list(channels))

    async def run(self, heartbeat_s: float, stall_s: float) -> NoReturn:
        """Until any master's connection fails; raises its failure."""
        tasks = [
            asyncio.create_task(connection.run(heartbeat_s, stall_s), name=f"relay-shard-{host}:{port}")
            for (host, port), connection in self._connections.items()
        ]
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
        self._url = url
        self._endpoint = Endpoint.from_url(url)
        self._bare = bare
        self._client_name = client_name
        self._connect_timeout_s = connect_timeout_s
        self._max_reply_bytes = max_reply_bytes
        self._known: list[Address] = [(self._endpoint.host, self._endpoint.port)]

    async def connect(self, on_message: OnMessage, on_confirmation: OnConfirmation) -> ShardedConnection:
        slots = await self._slot_map()
        self._known = sorted(slots.masters | set(self._known))
        sharded = ShardedConnection(slots, self._bare)
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
        for host, port in self._known:
            options: dict[str, Any] = {**parse_url(self._url), "host": host, "port": port}
            client = Redis(
                connection_pool=ConnectionPool(**options, socket_connect_timeout=self._connect_timeout_s)
            )
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    reply = await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
                slots = SlotMap.from_reply(reply, (host, port))
                if slots.ranges:
                    return slots
                failures.append(f"{host}:{port}: no slots assigned")
            except Exception as exc:  # whatever it is, the next node may answer
                failures.append(f"{host}:{port}: {exc!r}")
            finally:
                await client.aclose()
        raise PubSubError("no cluster node gave its slot map: " + "; ".join(failures))
