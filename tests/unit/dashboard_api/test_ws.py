"""The connection's ordering rules, with a fake WebSocket and a fake state store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from fastapi import WebSocket
from redis.asyncio import Redis

from services.dashboard_api import protocol, views
from services.dashboard_api.fanout import Delta, Relay
from services.dashboard_api.metrics import DashboardApiMetrics
from services.dashboard_api.states import StatesRead, StateStore
from services.dashboard_api.ws import Connection, ConnectionLimits
from tapewire.keys import RedisKeys
from tapewire.v1 import market_pb2 as pb

WAIT_S = 2.0


class FakeWebSocket:
    client = None

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self._changed = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_text(self, text: str) -> None:
        await self.writable.wait()
        self.sent.append(json.loads(text))
        self._changed.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._changed.set()

    def client_sends(self, message: dict[str, Any]) -> None:
        self.incoming.put_nowait({"type": "websocket.receive", "text": json.dumps(message)})

    async def until(self, predicate: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)


class FakeStates:
    """Versions per instrument; `gate`, when set up, holds every read until released."""

    def __init__(self, versions: dict[str, int]) -> None:
        self.versions = versions
        self.gate: asyncio.Event | None = None
        self.reading = asyncio.Event()

    async def read(self, instruments: Sequence[str]) -> StatesRead:
        self.reading.set()
        if self.gate is not None:
            await self.gate.wait()
        found = StatesRead(states=[], missing=[])
        for name in instruments:
            if name in self.versions:
                found.states.append(pb.InstrumentState(instrument=name, version=self.versions[name]))
            else:
                found.missing.append(name)
        return found


class Harness:
    def __init__(self, states: FakeStates, queue_size: int = 100, max_subscriptions: int = 10) -> None:
        self.ws = FakeWebSocket()
        self.metrics = DashboardApiMetrics()
        self.relay = Relay(cast(Redis, None), RedisKeys("p:", "chan"), self.metrics)
        limits = ConnectionLimits(
            send_queue_size=queue_size,
            max_subscriptions=max_subscriptions,
            close_timeout_s=1.0,
            frames=protocol.Limits(max_message_bytes=1024, max_instruments=5),
        )
        self.connection = Connection(
            cast(WebSocket, self.ws), self.relay, cast(StateStore, states), self.metrics, limits
        )

    def delta(self, instrument: str, version: int) -> bool:
        state = pb.InstrumentState(instrument=instrument, version=version)
        return self.connection.deliver(Delta(instrument, version, views.update_message(state, 0)))


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def kinds(sent: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    described: list[tuple[str, Any]] = []
    for message in sent:
        if message["type"] == "update":
            described.append(("update", (message["instrument"], message["version"])))
        elif message["type"] == "snapshot":
            versions = {state["instrument"]: state["version"] for state in message["states"]}
            described.append(("snapshot", (versions, message["missing"])))
        elif message["type"] == "error":
            described.append(("error", message["code"]))
        elif message["type"] == "unsubscribed":
            described.append(("unsubscribed", message["instruments"]))
        else:
            described.append((message["type"], None))
    return described


def test_updates_queued_before_the_snapshot_read_are_filtered_by_version() -> None:
    async def scenario() -> None:
        states = FakeStates({"A": 5})
        states.gate = asyncio.Event()
        h = Harness(states)
        task = asyncio.create_task(h.connection.run())
        h.ws.client_sends({"type": "subscribe", "instruments": ["A", "NEW"]})
        await asyncio.wait_for(states.reading.wait(), WAIT_S)
        # Interest was registered before the read: these queue behind the snapshot request.
        assert set(h.relay.index.instruments_of(h.connection)) == {"A", "NEW"}
        for version in (4, 5, 6):
            assert h.delta("A", version)
        assert h.delta("NEW", 1)
        states.gate.set()
        await h.ws.until(lambda: len(h.ws.sent) == 3)
        h.delta("A", 6)  # a repeat
        h.delta("A", 8)
        h.delta("A", 7)  # out of order: older than what was sent
        await h.ws.until(lambda: len(h.ws.sent) == 4)
        assert kinds(h.ws.sent) == [
            ("snapshot", ({"A": 5}, ["NEW"])),
            ("update", ("A", 6)),
            ("update", ("NEW", 1)),
            ("update", ("A", 8)),
        ]
        h.ws.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(task, WAIT_S)
        assert h.ws.closed is None  # the client closed: nothing to say back
        assert list(h.relay.index.instruments_of(h.connection)) == []

    run(scenario)


def test_unsubscribe_stops_updates_even_those_already_queued() -> None:
    async def scenario() -> None:
        h = Harness(FakeStates({"A": 1, "B": 1}))
        task = asyncio.create_task(h.connection.run())
        h.ws.client_sends({"type": "subscribe", "instruments": ["A", "B"]})
        await h.ws.until(lambda: len(h.ws.sent) == 1)
        h.ws.writable.clear()
        h.delta("A", 2)
        h.ws.client_sends({"type": "unsubscribe", "instruments": ["A"]})
        await h.ws.until(lambda: list(h.relay.index.instruments_of(h.connection)) == ["B"])
        h.delta("A", 3)  # a relay that had not heard yet
        h.delta("B", 2)
        h.ws.writable.set()
        await h.ws.until(lambda: len(h.ws.sent) == 4)
        assert kinds(h.ws.sent)[1:] == [("update", ("A", 2)), ("unsubscribed", ["A"]), ("update", ("B", 2))]
        task.cancel()

    run(scenario)


def test_errors_pong_and_the_subscription_limit() -> None:
    async def scenario() -> None:
        h = Harness(FakeStates({}), max_subscriptions=3)
        task = asyncio.create_task(h.connection.run())
        h.ws.incoming.put_nowait({"type": "websocket.receive", "text": "nope"})
        h.ws.incoming.put_nowait({"type": "websocket.receive", "bytes": b"{}"})
        h.ws.client_sends({"type": "subscribe", "instruments": ["A", "B"]})
        h.ws.client_sends({"type": "subscribe", "instruments": ["B", "C", "D"]})  # 2 + 2 new > 3
        h.ws.client_sends({"type": "subscribe", "instruments": ["B", "C"]})  # 2 + 1 new = 3
        h.ws.client_sends({"type": "ping"})
        await h.ws.until(lambda: len(h.ws.sent) == 6)
        assert kinds(h.ws.sent) == [
            ("error", "invalid_json"),
            ("error", "binary_not_supported"),
            ("snapshot", ({}, ["A", "B"])),
            ("error", "too_many_subscriptions"),
            ("snapshot", ({}, ["B", "C"])),
            ("pong", None),
        ]
        assert h.ws.sent[3]["reason"] == "at most 3 subscriptions per connection: 2 active, 2 more asked"
        errors = h.metrics.registry.get_sample_value(
            "dashboard_api_client_errors_total", {"code": "too_many_subscriptions"}
        )
        assert errors == 1
        task.cancel()

    run(scenario)


def test_a_full_queue_closes_with_4008_and_forgets_the_subscriptions() -> None:
    async def scenario() -> None:
        h = Harness(FakeStates({"A": 1}), queue_size=3)
        task = asyncio.create_task(h.connection.run())
        h.ws.client_sends({"type": "subscribe", "instruments": ["A"]})
        await h.ws.until(lambda: len(h.ws.sent) == 1)
        h.ws.writable.clear()  # the client stops reading
        accepted = [h.delta("A", version) for version in range(2, 8)]
        # Three fill the queue, the fourth overflows and closes: the rest are refused.
        assert accepted == [True, True, True, False, False, False]
        await asyncio.wait_for(task, WAIT_S)
        assert h.ws.closed == (4008, "slow consumer")
        assert list(h.relay.index.instruments_of(h.connection)) == []
        assert h.metrics.registry.get_sample_value("dashboard_api_slow_consumer_disconnects_total") == 1

    run(scenario)


def test_request_close_says_goodbye_with_the_code_given() -> None:
    async def scenario() -> None:
        h = Harness(FakeStates({}))
        task = asyncio.create_task(h.connection.run())
        h.connection.request_close(1001, "server shutting down")
        await asyncio.wait_for(task, WAIT_S)
        assert h.ws.closed == (1001, "server shutting down")
        assert h.connection.finished.is_set()

    run(scenario)
