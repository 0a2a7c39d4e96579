"""A session end to end without a network: a fake transport that collects frames, a fake state
store with canned states and history, and the real relay fed by hand (no Redis)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest

from services.dashboard_api.live import protocol
from services.dashboard_api.live.encoders import Delta, Encoder, JsonEncoder, updates_frame
from services.dashboard_api.live.outbox import Ladder
from services.dashboard_api.live.pubsub import PubSubConnector
from services.dashboard_api.live.relay import Relay
from services.dashboard_api.live.session import Session, SessionInfo, SessionLimits
from services.dashboard_api.metrics import DashboardApiMetrics
from services.dashboard_api.stores.states import History, StatesRead, StateStore
from tapewire.auth import Principal
from tapewire.errors import StoreUnavailable
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb
from tapewire.v1 import stream_pb2 as spb

from .fakes import KEYS, connect

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000_000_000
WAIT_S = 2.0


class FakeTransport:
    """Collects the JSON frames sent; `writable` cleared makes `send` block (a client not reading)."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.sending = asyncio.Event()
        self._changed = asyncio.Event()

    async def send(self, frame: str | bytes) -> None:
        self.sending.set()
        await self.writable.wait()
        assert isinstance(frame, str)
        self.frames.append(json.loads(frame))
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)

    async def count(self, n: int) -> list[dict[str, Any]]:
        await self.until(lambda: len(self.frames) >= n)
        return self.frames


class FakeDirect:
    """The fast path's writer over the same `FakeTransport`: writes go through when writable."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.writes: list[int] = []  # frames per write

    @property
    def writable(self) -> bool:
        return self.transport.writable.is_set()

    async def wait_writable(self) -> None:
        await self.transport.writable.wait()

    def write_updates(self, batches: Sequence[list[Delta]], encoder: Encoder) -> None:
        self.write([updates_frame(encoder, batch) for batch in batches])

    def write(self, frames: Sequence[str | bytes]) -> None:
        assert self.writable, "the fast path wrote to a socket that pushes back"
        self.writes.append(len(frames))
        for frame in frames:
            assert isinstance(frame, str)
            self.transport.frames.append(json.loads(frame))
        self.transport._changed.set()


@pytest.fixture(params=["asgi", "direct"], autouse=True)
def send_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every session test runs twice: sender-only (ASGI, gRPC), and with the fast path."""
    monkeypatch.setattr(Harness, "DIRECT", request.param == "direct")
    return str(request.param)


class FakeStates:
    """Current versions per instrument, with a history from `oldest` (default 1) to current.

    `gate`, when set up, holds every snapshot (history is read first) until released."""

    def __init__(self, current: dict[str, int] | None = None, oldest: dict[str, int] | None = None) -> None:
        self.current = dict(current or {})
        self.oldest = dict(oldest or {})
        self.gate: asyncio.Event | None = None
        self.reading = asyncio.Event()
        self.fail = False
        self.budgets: list[int] = []

    @staticmethod
    def state(instrument: str, version: int) -> pb.InstrumentState:
        return pb.InstrumentState(
            instrument=instrument,
            version=version,
            last_price=f"{version}.5",
            times=pb.StageTimes(cached_ns=T0),
        )

    async def history(self, since: dict[str, int], budget: int) -> History:
        self.reading.set()
        self.budgets.append(budget)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise StoreUnavailable("redis: down")
        found = History({}, [])
        for name, version in since.items():
            current = self.current.get(name)
            if current is None:
                if version == 0:
                    found.replays[name] = []
                else:
                    found.gaps.append(name)
            elif current < version:
                found.ahead[name] = current
            elif current == version:
                found.replays[name] = []
            elif version + 1 < self.oldest.get(name, 1):
                found.gaps.append(name)
            else:
                found.replays[name] = [self.state(name, v) for v in range(version + 1, current + 1)]
        return found

    async def read(self, instruments: Sequence[str]) -> StatesRead:
        found = StatesRead(states=[], missing=[])
        for name in instruments:
            if name in self.current:
                found.states.append(self.state(name, self.current[name]))
            else:
                found.missing.append(name)
        return found


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeAlerts:
    def __init__(self) -> None:
        self.commands: list[tuple[str, object]] = []
        self.on_failed: Callable[[str, str], None] | None = None

    async def handle(
        self,
        user_id: str,
        command: protocol.CreateAlert | protocol.CancelAlert | protocol.ListAlerts,
        on_failed: Callable[[str, str], None],
    ) -> spb.ServerMessage:
        self.commands.append((user_id, command))
        self.on_failed = on_failed
        return spb.ServerMessage(
            alert_accepted=spb.AlertAccepted(request_id=command.request_id, alert_id="x1")
        )


class Harness:
    DIRECT = False  # see `send_path`

    def __init__(
        self,
        states: FakeStates,
        queue_size: int = 100,
        max_subscriptions: int = 10,
        heartbeat_s: float = 60.0,
        conflation_timeout_s: float = 5.0,
        resync_timeout_s: float = 10.0,
        subscribe_timeout_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        silent_redis: bool = False,
        alerts: FakeAlerts | None = None,
        direct: bool | None = None,
    ) -> None:
        self.states = states
        self.metrics = DashboardApiMetrics()
        self.relay = Relay(cast(PubSubConnector, None), KEYS, self.metrics, clock=lambda: T0 + 1000)
        self.pubsub = connect(self.relay, auto_confirm=not silent_redis)
        self.transport = FakeTransport()
        self.direct = FakeDirect(self.transport) if (self.DIRECT if direct is None else direct) else None
        limits = SessionLimits(
            send_queue_size=queue_size,
            max_subscriptions=max_subscriptions,
            conflation_timeout_s=conflation_timeout_s,
            resync_timeout_s=resync_timeout_s,
            heartbeat_s=heartbeat_s,
            max_replay_updates=1000,
            subscribe_timeout_s=subscribe_timeout_s,
        )
        self.session = Session(
            SessionInfo("c1", "u1", "test", "json", "peer"),
            Principal("u1"),
            self.transport,
            JsonEncoder(),
            self.relay,
            cast(StateStore, states),
            self.metrics,
            limits,
            alerts=alerts,
            clock=lambda: T0 + 2000,
            monotonic=monotonic,
            direct=self.direct,
        )
        self.sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.session.start()
        self.sender = asyncio.create_task(self.session.run_sender())

    async def stop(self) -> None:
        assert self.sender is not None
        self.session.request_close(1000, "bye")
        self.transport.writable.set()
        await asyncio.wait_for(self.sender, WAIT_S)
        self.session.finish()

    def publish(self, instrument: str, version: int) -> None:
        """What the relay receives from Redis for `instrument`."""
        state = FakeStates.state(instrument, version)
        self.relay.handle(KEYS.updates(instrument), pb.Update(state=state).SerializeToString())

    async def subscribe(self, *instruments: str, **options: Any) -> None:
        await self.session.handle(protocol.Subscribe(tuple(instruments), **options))

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def kinds(frames: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    described: list[tuple[str, Any]] = []
    for message in frames:
        kind = message["type"]
        if kind == "update":
            described.append(("update", (message["instrument"], message["version"])))
        elif kind == "snapshot":
            versions = {state["instrument"]: state["version"] for state in message["states"]}
            described.append(("snapshot", (versions, message["missing"])))
        elif kind == "error":
            described.append(("error", message["code"]))
        elif kind == "unsubscribed":
            described.append(("unsubscribed", message["instruments"]))
        elif kind == "conflated":
            described.append(("conflated", (message["dropped"], message["instruments"])))
        else:
            described.append((kind, None))
    return described


def updates(frames: list[dict[str, Any]], instrument: str) -> list[int]:
    return [m["version"] for m in frames if m["type"] == "update" and m["instrument"] == instrument]


# -- subscribe and resume ---------------------------------------------------------------------


async def test_subscribe_sends_the_snapshot_then_only_newer_updates() -> None:
    async with asyncio.timeout(10):
        states = FakeStates({"A": 5})
        states.gate = asyncio.Event()
        h = Harness(states)
        h.start()
        await h.subscribe("A", "NEW", request_id="s1")
        await asyncio.wait_for(states.reading.wait(), WAIT_S)
        # Interest was registered (and confirmed) before the read: these queue behind it.
        assert set(h.relay.instruments.keys_of(h.session)) == {"A", "NEW"}
        assert h.pubsub.commands == [("subscribe", ("chan:A", "chan:NEW"))]
        for version in (4, 5, 6):
            h.publish("A", version)
        h.publish("NEW", 1)
        states.gate.set()
        frames = await h.transport.count(3)
        h.publish("A", 6)  # a repeat
        h.publish("A", 8)
        h.publish("A", 7)  # older than what was sent
        frames = await h.transport.count(4)
        assert kinds(frames) == [
            ("snapshot", ({"A": 5}, ["NEW"])),
            ("update", ("A", 6)),
            ("update", ("NEW", 1)),
            ("update", ("A", 8)),
        ]
        snapshot = frames[0]
        assert (snapshot["id"], snapshot["reason"], snapshot["resumed"], snapshot["gaps"]) == (
            "s1",
            "subscribe",
            {},
            [],
        )
        assert snapshot["states"][0]["times"]["sent_ns"] == T0 + 2000
        assert snapshot["states"][0]["last_price"] == "5.5"
        assert frames[1]["state"]["times"]["sent_ns"] == T0 + 1000  # stamped by the relay
        await h.stop()
        assert list(h.relay.instruments.keys_of(h.session)) == []
        assert h.session.finished.is_set()


async def test_resume_replays_what_was_missed_then_goes_live_without_repeats() -> None:
    async with asyncio.timeout(10):
        states = FakeStates({"A": 10}, oldest={"A": 3})
        states.gate = asyncio.Event()
        h = Harness(states)
        h.start()
        await h.subscribe("A", since={"A": 7}, request_id="s2")
        await asyncio.wait_for(states.reading.wait(), WAIT_S)
        h.publish("A", 9)  # published while the history was read: already in it
        h.publish("A", 10)
        states.gate.set()
        frames = await h.transport.count(4)
        h.publish("A", 11)
        h.publish("A", 12)
        frames = await h.transport.count(6)
        snapshot = frames[0]
        assert snapshot == {
            "type": "snapshot",
            "id": "s2",
            "reason": "subscribe",
            "states": [],
            "missing": [],
            "resumed": {"A": {"from": 8, "to": 10}},
            "gaps": [],
            "ahead": {},
        }
        assert updates(frames, "A") == [8, 9, 10, 11, 12]
        assert frames[1]["state"]["last_price"] == "8.5"  # the replayed state, not a copy of the current
        assert h.sample("dashboard_api_replayed_updates_total") == 3
        assert h.sample("dashboard_api_resumes_total", {"outcome": "replayed"}) == 1
        assert states.budgets == [1000]
        await h.stop()


async def test_resume_at_the_current_version_replays_nothing() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 10}))
        h.start()
        await h.subscribe("A", since={"A": 10})
        frames = await h.transport.count(1)
        assert frames[0]["resumed"] == {"A": {"from": 11, "to": 10}}
        assert frames[0]["states"] == []
        h.publish("A", 10)
        h.publish("A", 11)
        frames = await h.transport.count(2)
        assert kinds(frames[1:]) == [("update", ("A", 11))]
        await h.stop()


async def test_a_resume_from_beyond_the_server_says_so_and_holds_updates_back() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 10, "B": 3}))
        h.start()
        await h.subscribe("A", "B", since={"A": 12, "B": 3}, request_id="s")
        snapshot = (await h.transport.count(1))[0]
        assert snapshot["ahead"] == {"A": 10}
        assert snapshot["resumed"] == {"B": {"from": 4, "to": 3}}  # not A: nothing resumes there
        assert (snapshot["states"], snapshot["missing"], snapshot["gaps"]) == ([], [], [])
        for version in (11, 12, 13):
            h.publish("A", version)  # the client has 11 and 12 already: never sent backwards
        frames = await h.transport.count(2)
        assert kinds(frames[1:]) == [("update", ("A", 13))]
        await h.stop()


async def test_a_gap_sends_the_current_state_and_names_it() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 10, "B": 4}, oldest={"A": 6}))
        h.start()
        await h.subscribe("A", "B", since={"A": 2, "B": 3})
        frames = await h.transport.count(2)
        snapshot = frames[0]
        assert [state["instrument"] for state in snapshot["states"]] == ["A"]
        assert snapshot["states"][0]["version"] == 10
        assert snapshot["gaps"] == ["A"]
        assert snapshot["resumed"] == {"B": {"from": 4, "to": 4}}
        assert kinds(frames[1:]) == [("update", ("B", 4))]
        assert h.sample("dashboard_api_resumes_total", {"outcome": "gap"}) == 1
        h.publish("A", 11)
        frames = await h.transport.count(3)
        assert kinds(frames[2:]) == [("update", ("A", 11))]
        await h.stop()


async def test_subscribing_again_resends_the_state() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 3}))
        h.start()
        await h.subscribe("A")
        await h.transport.count(1)
        await h.subscribe("A", request_id="again")
        frames = await h.transport.count(2)
        assert kinds(frames) == [("snapshot", ({"A": 3}, [])), ("snapshot", ({"A": 3}, []))]
        assert frames[1]["id"] == "again"
        assert h.session.subscriptions == 1
        await h.stop()


async def test_unsubscribe_stops_updates_even_those_already_queued() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 1, "B": 1}))
        h.start()
        await h.subscribe("A", "B")
        await h.transport.count(1)
        h.transport.writable.clear()  # the client stops reading for a moment
        h.publish("A", 2)
        await h.session.handle(protocol.Unsubscribe(("A",), "u1"))
        assert list(h.relay.instruments.keys_of(h.session)) == ["B"]
        h.session.deliver(Delta(FakeStates.state("A", 3), T0))  # a relay that had not heard yet
        h.publish("A", 4)  # the relay has: not delivered
        h.publish("B", 2)
        h.transport.writable.set()
        frames = await h.transport.count(4)
        await asyncio.sleep(0.01)
        assert kinds(h.transport.frames[1:]) == [
            ("update", ("A", 2)),
            ("unsubscribed", ["A"]),
            ("update", ("B", 2)),
        ]
        assert frames[2]["id"] == "u1"
        assert ("unsubscribe", ("chan:A",)) in h.pubsub.commands
        await h.stop()


async def test_too_many_subscriptions() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({}), max_subscriptions=3)
        h.start()
        await h.subscribe("A", "B")
        await h.subscribe("B", "C", "D", request_id="big")  # 2 + 2 new > 3
        await h.subscribe("B", "C")  # 2 + 1 new = 3
        frames = await h.transport.count(3)
        assert kinds(frames) == [
            ("snapshot", ({}, ["A", "B"])),
            ("error", "too_many_subscriptions"),
            ("snapshot", ({}, ["B", "C"])),  # B again: subscribing again re-sends
        ]
        assert frames[1] == {
            "type": "error",
            "id": "big",
            "code": "too_many_subscriptions",
            "reason": "at most 3 subscriptions per connection: 2 active, 2 more asked",
        }
        assert h.sample("dashboard_api_client_errors_total", {"code": "too_many_subscriptions"}) == 1
        assert h.session.subscriptions == 3
        await h.stop()


async def test_ping_is_answered_with_its_id() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({}))
        h.start()
        await h.session.handle(protocol.Ping("p1"))
        await h.session.handle(protocol.Ping())
        frames = await h.transport.count(2)
        assert frames == [
            {"type": "pong", "id": "p1", "server_time_ns": T0 + 2000},
            {"type": "pong", "server_time_ns": T0 + 2000},
        ]
        await h.stop()


async def test_heartbeat_after_heartbeat_s_without_sending() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({}), heartbeat_s=0.05)
        started = time.monotonic()
        h.start()
        frames = await h.transport.count(2)
        assert time.monotonic() - started >= 0.1
        assert frames[:2] == [{"type": "heartbeat", "server_time_ns": T0 + 2000}] * 2
        await h.stop()


async def test_a_confirmation_that_never_comes_is_unavailable() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 1}), silent_redis=True, subscribe_timeout_s=0.05)
        h.start()
        await h.subscribe("A", request_id="s")
        frames = await h.transport.count(1)
        assert frames[0]["code"] == "unavailable"
        assert frames[0]["id"] == "s"
        assert list(h.relay.instruments.keys_of(h.session)) == []
        await h.stop()


async def test_a_store_failure_closes_with_1013() -> None:
    async with asyncio.timeout(10):
        states = FakeStates({"A": 1})
        states.fail = True
        h = Harness(states)
        h.start()
        await h.subscribe("A")
        assert h.sender is not None
        await asyncio.wait_for(h.sender, WAIT_S)
        assert h.session.close_reason == (1013, "state store unavailable")
        assert h.transport.frames == []
        h.session.finish()


async def test_a_relay_resync_resumes_from_what_was_sent() -> None:
    async with asyncio.timeout(10):
        states = FakeStates({"A": 5})
        h = Harness(states)
        h.start()
        await h.subscribe("A", "NEW")
        await h.transport.count(1)
        h.publish("A", 6)
        await h.transport.count(2)
        # Redis failed over; updates 7 to 9 were published while the relay was away.
        states.current["A"] = 9
        connect(h.relay)
        frames = await h.transport.count(6)
        resync = frames[2]
        assert (resync["type"], resync["reason"], "id" in resync) == ("snapshot", "resync", False)
        assert resync["resumed"] == {"A": {"from": 7, "to": 9}}
        assert resync["missing"] == ["NEW"]
        assert updates(frames, "A") == [6, 7, 8, 9]
        h.publish("A", 9)
        h.publish("A", 10)
        await h.transport.count(7)
        assert updates(h.transport.frames, "A") == [6, 7, 8, 9, 10]
        await h.stop()


async def test_max_rate_throttles_an_instrument() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 1, "B": 1}))
        h.start()
        await h.subscribe("A", max_rate=10.0)  # every 0.1 s at most
        await h.subscribe("B")
        await h.transport.count(2)
        started = time.monotonic()
        for version in range(2, 7):
            h.publish("A", version)
            h.publish("B", version)
        frames = await h.transport.count(2 + 5 + 2)
        elapsed = time.monotonic() - started
        assert updates(frames, "A") == [2, 6]  # the first at once, the latest when its slot came
        assert updates(frames, "B") == [2, 3, 4, 5, 6]
        assert elapsed >= 0.09
        await h.stop()


# -- the slow-client ladder --------------------------------------------------------------------


async def test_a_slow_client_gets_conflated_then_the_latest_states(send_path: str) -> None:
    async with asyncio.timeout(10):
        clock = FakeClock()
        h = Harness(FakeStates({"A": 1, "B": 1}), queue_size=3, monotonic=clock)
        h.start()
        await h.subscribe("A", "B")
        await h.transport.count(1)
        h.transport.writable.clear()
        h.transport.sending.clear()
        if send_path == "asgi":
            h.publish("A", 2)
            await asyncio.wait_for(h.transport.sending.wait(), WAIT_S)  # A2 is stuck in send
            queued = (3, 4, 5)
        else:
            # With the socket's own signal the sender takes nothing while it pushes back:
            # A2 waits in the queue, where it could still be conflated.
            await asyncio.sleep(0.01)
            queued = (2, 3, 4)
        for version in queued:
            h.publish("A", version)  # fills the queue
        assert h.session.ladder is Ladder.NORMAL
        h.publish("A", 6)  # overflow
        assert h.session.ladder is Ladder.CONFLATING
        h.publish("B", 2)
        h.publish("A", 7)
        h.publish("B", 3)
        h.publish("A", 8)
        assert h.session.queued == 3 + 2
        h.transport.writable.set()
        sent = sorted({2, *queued})
        frames = await h.transport.count(1 + len(sent) + 1 + 2)
        await asyncio.sleep(0.01)
        assert kinds(h.transport.frames[1 : 2 + len(sent)]) == [("update", ("A", v)) for v in sent] + [
            ("conflated", (3, ["B", "A"]))
        ]
        assert updates(frames, "A") == [*sent, 8]
        assert updates(frames, "B") == [3]
        assert len(h.transport.frames) == 1 + len(sent) + 1 + 2
        assert h.session.ladder is Ladder.NORMAL
        assert h.sample("dashboard_api_slow_client_steps_total", {"step": "conflating"}) == 1
        assert h.sample("dashboard_api_conflated_updates_total") == 3
        await h.stop()


async def test_a_socket_that_takes_nothing_for_stalled_socket_s_conflates_a_roomy_queue(
    send_path: str,
) -> None:
    async with asyncio.timeout(10):
        clock = FakeClock()
        h = Harness(FakeStates({"A": 1}), queue_size=100, monotonic=clock)
        h.start()
        await h.subscribe("A")
        await h.transport.count(1)
        h.transport.writable.clear()  # the client stopped reading at 0.0
        h.publish("A", 2)
        await asyncio.sleep(0.01)
        clock.now = 5.0
        h.publish("A", 3)
        assert h.session.ladder is Ladder.NORMAL  # within stalled_socket_s: a burst, not a stall
        clock.now = 5.5
        h.publish("A", 4)
        h.publish("A", 5)
        # Only the fast path's writer knows the socket's state; the ASGI send has its queue.
        stalled = send_path == "direct"
        assert h.session.ladder is (Ladder.CONFLATING if stalled else Ladder.NORMAL)
        assert h.sample("dashboard_api_slow_client_steps_total", {"step": "conflating"}) == (
            1 if stalled else 0
        )
        h.transport.writable.set()  # reading again: what was queued, the notice, then the latest
        frames = await h.transport.count(5)
        await asyncio.sleep(0.01)
        if stalled:
            assert kinds(h.transport.frames[1:]) == [
                ("update", ("A", 2)),
                ("update", ("A", 3)),
                ("conflated", (1, ["A"])),
                ("update", ("A", 5)),
            ]
        else:
            assert updates(frames, "A") == [2, 3, 4, 5]
        assert h.session.ladder is Ladder.NORMAL
        await h.stop()


async def test_a_slow_client_that_reads_again_gets_a_resync_snapshot(send_path: str) -> None:
    async with asyncio.timeout(10):
        clock = FakeClock()
        states = FakeStates({"A": 1})
        h = Harness(states, queue_size=2, conflation_timeout_s=1.0, resync_timeout_s=2.0, monotonic=clock)
        h.start()
        await h.subscribe("A")
        await h.transport.count(1)
        h.transport.writable.clear()
        h.transport.sending.clear()
        h.publish("A", 2)
        # In flight through the ASGI send; on the fast path still queued, so thrown away.
        in_flight = [("update", ("A", 2))] if send_path == "asgi" else []
        if in_flight:
            await asyncio.wait_for(h.transport.sending.wait(), WAIT_S)
        for version in (3, 4, 5):
            h.publish("A", version)
        assert h.session.ladder is Ladder.CONFLATING
        clock.now = 1.5
        h.publish("A", 6)
        assert h.session.ladder is Ladder.RESYNCING
        await h.session.handle(protocol.Ping("p"))  # replies survive the resync
        h.publish("A", 7)
        states.current["A"] = 7
        clock.now = 2.0
        h.transport.writable.set()
        frames = await h.transport.count(3 + len(in_flight))
        h.publish("A", 8)
        frames = await h.transport.count(4 + len(in_flight))
        assert kinds(frames) == [
            ("snapshot", ({"A": 1}, [])),
            *in_flight,
            ("snapshot", ({"A": 7}, [])),
            ("pong", None),
            ("update", ("A", 8)),
        ]
        assert frames[1 + len(in_flight)]["reason"] == "resync"
        assert h.session.close_reason is None
        assert h.sample("dashboard_api_slow_client_steps_total", {"step": "resyncing"}) == 1
        assert h.sample("dashboard_api_slow_client_steps_total", {"step": "resync_sent"}) == 1
        await h.stop()


async def test_a_client_that_never_reads_is_closed_with_4008() -> None:
    async with asyncio.timeout(10):
        clock = FakeClock()
        h = Harness(
            FakeStates({"A": 1}),
            queue_size=3,
            conflation_timeout_s=1.0,
            resync_timeout_s=2.0,
            monotonic=clock,
        )
        h.start()
        await h.subscribe("A")
        await h.transport.count(1)
        h.transport.writable.clear()  # and never set again: send blocks forever
        version = 1
        accepted: list[bool] = []
        while h.session.close_reason is None and version < 10_000:
            version += 1
            accepted.append(h.session.deliver(Delta(FakeStates.state("A", version), T0)))
            clock.now += 0.01
            await asyncio.sleep(0)
        assert h.session.close_reason is not None
        code, reason = h.session.close_reason
        assert code == 4008
        assert "too slow" in reason
        assert accepted[-1] is False
        assert all(accepted[:-1])
        # Conflating from about the 4th update, resync 1 s later, closed 2 s after that.
        assert 300 <= len(accepted) <= 320
        assert not h.session.deliver(Delta(FakeStates.state("A", version + 1), T0))
        assert h.session.queued <= 3 + 1
        for step in ("conflating", "resyncing", "disconnect"):
            assert h.sample("dashboard_api_slow_client_steps_total", {"step": step}) == 1
        assert h.sample("dashboard_api_slow_consumer_disconnects_total") == 1
        assert h.sample("dashboard_api_session_closes_total", {"code": "4008"}) == 1
        # The transport is still stuck in send: whoever runs the sender cancels it.
        assert h.sender is not None
        assert not h.sender.done()
        h.sender.cancel()
        await asyncio.gather(h.sender, return_exceptions=True)
        h.session.finish()
        assert list(h.relay.instruments.keys_of(h.session)) == []


async def test_the_relay_drops_a_session_that_closes() -> None:
    async with asyncio.timeout(10):
        clock = FakeClock()
        h = Harness(
            FakeStates({"A": 1}),
            queue_size=1,
            conflation_timeout_s=1.0,
            resync_timeout_s=1.0,
            monotonic=clock,
        )
        h.start()
        await h.subscribe("A")
        await h.transport.count(1)
        h.transport.writable.clear()
        for version in range(2, 6):
            h.publish("A", version)
        clock.now = 2.0
        h.publish("A", 6)  # resync
        clock.now = 4.0
        h.publish("A", 7)  # close
        assert h.session.close_reason is not None
        assert h.session.close_reason[0] == 4008
        assert list(h.relay.instruments.keys_of(h.session)) == []
        await asyncio.sleep(0)  # the UNSUBSCRIBE is sent by a task of its own
        assert ("unsubscribe", ("chan:A",)) in h.pubsub.commands
        assert h.sender is not None
        h.sender.cancel()
        await asyncio.gather(h.sender, return_exceptions=True)


# -- alerts and lifecycle ---------------------------------------------------------------------


async def test_alert_commands_without_alerts_are_an_error() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({}))
        h.start()
        await h.session.handle(protocol.ListAlerts("l1"))
        frames = await h.transport.count(1)
        assert frames[0]["code"] == "unknown_type"
        assert frames[0]["id"] == "l1"
        assert list(h.relay.users.keys()) == []
        await h.stop()


async def test_alert_commands_and_events() -> None:
    async with asyncio.timeout(10):
        alerts = FakeAlerts()
        h = Harness(FakeStates({}), alerts=alerts)
        h.start()
        assert list(h.relay.users.keys_of(h.session)) == ["u1"]
        command = protocol.CreateAlert({"instrument": "A", "direction": "above", "price": "1"}, "a1")
        await h.session.handle(command)
        event = apb.AlertEvent(alert=apb.Alert(alert_id="x1", user_id="u1"), status=apb.ALERT_STATUS_ACTIVE)
        h.relay.handle(KEYS.alert_events("u1"), event.SerializeToString())
        assert alerts.on_failed is not None
        alerts.on_failed("x1", "broker down")
        frames = await h.transport.count(3)
        assert alerts.commands == [("u1", command)]
        assert frames[0] == {"type": "alert.accepted", "id": "a1", "alert_id": "x1"}
        assert (frames[1]["type"], frames[1]["status"], frames[1]["alert"]["alert_id"]) == (
            "alert",
            "active",
            "x1",
        )
        assert frames[2]["type"] == "error"
        assert frames[2]["code"] == "alert_failed"
        assert "x1" in frames[2]["reason"]
        await h.stop()
        assert list(h.relay.users.keys()) == []


async def test_request_close_stops_the_sender_and_refuses_more() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 1}))
        h.start()
        await h.subscribe("A")
        await h.transport.count(1)
        h.session.request_close(1001, "server shutting down")
        h.session.request_close(1000, "second")  # the first reason stands
        assert h.sender is not None
        await asyncio.wait_for(h.sender, WAIT_S)
        assert h.session.close_reason == (1001, "server shutting down")
        assert not h.session.deliver(Delta(FakeStates.state("A", 2), T0))
        assert not h.session.resync()
        assert not h.session.finished.is_set()
        h.session.finish()
        assert h.session.finished.is_set()
        assert list(h.relay.instruments.keys()) == []
        assert h.sample("dashboard_api_session_closes_total", {"code": "1001"}) == 1


async def test_replies_piling_up_close_the_session() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({}))
        h.start()
        h.transport.writable.clear()
        for _ in range(200):
            await h.session.handle(protocol.Ping())
        assert h.session.close_reason is not None
        assert h.session.close_reason[0] == 4008
        assert h.sender is not None
        h.sender.cancel()
        await asyncio.gather(h.sender, return_exceptions=True)


# -- the fast path ----------------------------------------------------------------------------


async def test_the_fast_path_writes_one_burst_in_one_write() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 1, "B": 1}), direct=True)
        h.start()
        await h.subscribe("A", "B")
        await h.transport.count(1)
        assert h.direct is not None
        writes_before = len(h.direct.writes)
        for version in (2, 3):
            h.publish("A", version)
            h.publish("B", version)
        frames = await h.transport.count(5)
        assert kinds(frames[1:]) == [
            ("update", ("A", 2)),
            ("update", ("B", 2)),
            ("update", ("A", 3)),
            ("update", ("B", 3)),
        ]
        # One frame per update (this client takes no batches), all in one write.
        assert h.direct.writes[writes_before:] == [4]
        assert h.sample("dashboard_api_ws_messages_sent_total", {"type": "update"}) == 4
        await h.stop()


async def test_the_fast_path_stops_at_a_control_message_and_keeps_the_order() -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 1}))
        h.start()
        await h.subscribe("A")
        await h.transport.count(1)
        h.publish("A", 2)
        await h.session.handle(protocol.Ping("p1"))
        h.publish("A", 3)
        frames = await h.transport.count(4)
        assert kinds(frames[1:]) == [("update", ("A", 2)), ("pong", None), ("update", ("A", 3))]
        await h.stop()


async def test_a_socket_that_pushes_back_leaves_the_updates_to_the_sender(send_path: str) -> None:
    async with asyncio.timeout(10):
        h = Harness(FakeStates({"A": 1}))
        h.start()
        await h.subscribe("A")
        await h.transport.count(1)
        h.transport.writable.clear()  # the kernel's buffer and the transport's are full
        h.transport.sending.clear()
        for version in (2, 3, 4):
            h.publish("A", version)
        if send_path == "asgi":
            await asyncio.wait_for(h.transport.sending.wait(), WAIT_S)  # the sender waits to write
            assert h.session.queued == 2
        else:
            # The sender waits for the socket before taking anything: all three stay queued.
            await asyncio.sleep(0.01)
            assert h.session.queued == 3
        assert len(h.transport.frames) == 1
        h.transport.writable.set()
        frames = await h.transport.count(4)
        assert updates(frames, "A") == [2, 3, 4]
        await h.stop()
