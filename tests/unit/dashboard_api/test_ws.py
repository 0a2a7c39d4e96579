"""The /ws endpoint with a fake WebSocket: negotiation, authentication, the client's limits and the
close codes. What a session does with commands is in test_session.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import jwt
import pytest
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from services.dashboard_api.live import protocol
from services.dashboard_api.live.pubsub import PubSubConnector
from services.dashboard_api.live.registry import Sessions
from services.dashboard_api.live.relay import Relay
from services.dashboard_api.live.ws import websocket_endpoint
from services.dashboard_api.metrics import DashboardApiMetrics
from services.dashboard_api.rest.deps import AppContext
from services.dashboard_api.settings import DashboardApiSettings
from services.dashboard_api.stores.bars import BarStore
from services.dashboard_api.stores.instruments import InstrumentStore
from services.dashboard_api.stores.states import History, StatesRead, StateStore
from tapewire.auth import AuthSettings, TokenVerifier
from tapewire.v1 import market_pb2 as pb
from tapewire.v1 import stream_pb2 as spb

from .fakes import KEYS, FakeConnection

pytestmark = pytest.mark.anyio

SECRET = "s" * 32
WAIT_S = 2.0


class FakeWebSocket:
    def __init__(
        self,
        query: dict[str, str] | None = None,
        subprotocols: Sequence[str] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        self.client = None
        self.scope: dict[str, Any] = {"subprotocols": list(subprotocols)}
        self.query_params = dict(query or {})
        self.headers = dict(headers or {})
        self.accepted: list[str | None] = []
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None
        self.broken = False
        self._changed = asyncio.Event()

    async def accept(self, subprotocol: str | None = None) -> None:
        self.accepted.append(subprotocol)

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_text(self, text: str) -> None:
        self._send(text)

    async def send_bytes(self, data: bytes) -> None:
        self._send(data)

    def _send(self, frame: str | bytes) -> None:
        if self.broken:
            raise WebSocketDisconnect(1006)
        self.sent.append(frame)
        self._changed.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._changed.set()

    def client_sends(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, bytes):
            self.incoming.put_nowait({"type": "websocket.receive", "bytes": message})
        else:
            text = message if isinstance(message, str) else json.dumps(message)
            self.incoming.put_nowait({"type": "websocket.receive", "text": text})

    def client_leaves(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(frame) for frame in self.sent if isinstance(frame, str)]

    async def until(self, predicate: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)


class FakeStates:
    def __init__(self, versions: dict[str, int]) -> None:
        self.versions = versions

    async def history(self, since: dict[str, int], budget: int) -> History:
        return History({name: [] for name in since}, [])

    async def read(self, instruments: Sequence[str]) -> StatesRead:
        found = StatesRead(states=[], missing=[])
        for name in instruments:
            if name in self.versions:
                found.states.append(pb.InstrumentState(instrument=name, version=self.versions[name]))
            else:
                found.missing.append(name)
        return found


def make_services(verifier: TokenVerifier | None = None, **settings: Any) -> AppContext:
    metrics = DashboardApiMetrics()
    relay = Relay(cast(PubSubConnector, None), KEYS, metrics)
    relay._connection = cast(Any, FakeConnection(relay))
    defaults: dict[str, Any] = {
        "max_client_message_bytes": 256,
        "max_instruments_per_request": 5,
        "heartbeat_s": 60.0,
        "idle_timeout_s": 0.0,
        "close_timeout_s": 1.0,
    }
    return AppContext(
        settings=DashboardApiSettings(**(defaults | settings)),
        states=cast(StateStore, FakeStates({"A": 3})),
        bars=cast(BarStore, None),
        instruments=cast(InstrumentStore, None),
        relay=relay,
        metrics=metrics,
        sessions=Sessions(metrics),
        verifier=verifier,
        alerts=None,
    )


def sample(services: AppContext, name: str, labels: dict[str, str] | None = None) -> float:
    return services.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def connected(ws: FakeWebSocket, services: AppContext) -> asyncio.Task[None]:
    """Run the endpoint until the welcome is out."""
    task = asyncio.create_task(websocket_endpoint(cast(WebSocket, ws), services))
    await ws.until(lambda: len(ws.sent) >= 1 or ws.closed is not None)
    return task


async def test_welcome_then_subscribe_then_a_clean_goodbye() -> None:
    async with asyncio.timeout(10):
        services = make_services(send_queue_size=64, max_subscriptions_per_connection=7)
        ws = FakeWebSocket()
        task = await connected(ws, services)
        welcome = ws.messages[0]
        assert welcome["type"] == "welcome"
        assert len(welcome["connection_id"]) == 16
        assert {k: v for k, v in welcome.items() if k != "connection_id"} == {
            "type": "welcome",
            "protocol": 1,
            "user_id": "anonymous",
            "heartbeat_s": 60.0,
            "idle_timeout_s": 0.0,
            "encoding": "json",
            "max_batch": 1,
            "limits": {
                "max_subscriptions": 7,
                "max_message_bytes": 256,
                "max_messages_per_second": 50.0,
                "send_queue_size": 64,
            },
        }
        assert ws.accepted == [None]
        assert len(services.sessions) == 1
        assert sample(services, "dashboard_api_ws_connections") == 1
        ws.client_sends({"type": "subscribe", "id": "s1", "instruments": ["A", "B"]})
        await ws.until(lambda: len(ws.sent) == 2)
        snapshot = ws.messages[1]
        assert (snapshot["type"], snapshot["id"], snapshot["missing"]) == ("snapshot", "s1", ["B"])
        state = pb.InstrumentState(instrument="A", version=4)
        services.relay.handle("chan:A", pb.Update(state=state).SerializeToString())
        await ws.until(lambda: len(ws.sent) == 3)
        assert (ws.messages[2]["type"], ws.messages[2]["version"]) == ("update", 4)
        ws.client_leaves()
        await asyncio.wait_for(task, WAIT_S)
        assert ws.closed is None  # the client closed: nothing to say back
        assert len(services.sessions) == 0
        assert sample(services, "dashboard_api_ws_connections") == 0
        assert list(services.relay.instruments.keys()) == []


async def test_protobuf_encoding_from_the_query() -> None:
    async with asyncio.timeout(10):
        services = make_services()
        ws = FakeWebSocket(query={"encoding": "protobuf"})
        task = await connected(ws, services)
        assert isinstance(ws.sent[0], bytes)
        welcome = spb.ServerMessage.FromString(ws.sent[0])
        assert (welcome.WhichOneof("kind"), welcome.welcome.encoding) == ("welcome", "protobuf")
        # Client frames may be JSON or protobuf whatever the encoding.
        ws.client_sends({"type": "ping", "id": "j"})
        ws.client_sends(spb.ClientMessage(request_id="b", ping=spb.PingRequest()).SerializeToString())
        await ws.until(lambda: len(ws.sent) == 3)
        pongs = [spb.ServerMessage.FromString(cast(bytes, frame)) for frame in ws.sent[1:]]
        assert [message.pong.request_id for message in pongs] == ["j", "b"]
        ws.client_leaves()
        await asyncio.wait_for(task, WAIT_S)


async def test_a_subprotocol_picks_the_encoding_and_is_echoed() -> None:
    async with asyncio.timeout(10):
        services = make_services()
        ws = FakeWebSocket(subprotocols=["chat", "tapewire.v1.protobuf", "tapewire.v1.json"])
        task = await connected(ws, services)
        assert ws.accepted == ["tapewire.v1.protobuf"]
        assert isinstance(ws.sent[0], bytes)
        ws.client_leaves()
        await asyncio.wait_for(task, WAIT_S)


async def test_an_unknown_encoding_is_refused_with_1008() -> None:
    async with asyncio.timeout(10):
        services = make_services()
        ws = FakeWebSocket(query={"encoding": "xml"})
        await asyncio.wait_for(websocket_endpoint(cast(WebSocket, ws), services), WAIT_S)
        assert ws.closed == (1008, "unknown encoding 'xml': use json or protobuf")
        assert ws.sent == []
        assert sample(services, "dashboard_api_session_closes_total", {"code": "1008"}) == 1


def publish(services: AppContext, instrument: str, version: int) -> None:
    state = pb.InstrumentState(instrument=instrument, version=version)
    services.relay.handle(f"chan:{instrument}", pb.Update(state=state).SerializeToString())


async def subscribed_to_a(ws: FakeWebSocket, services: AppContext) -> asyncio.Task[None]:
    """Connected, subscribed to A (at version 3) and its snapshot received."""
    task = await connected(ws, services)
    ws.client_sends({"type": "subscribe", "id": "s", "instruments": ["A"]})
    await ws.until(lambda: len(ws.sent) == 2)
    return task


async def test_with_batch_the_updates_waiting_go_out_together_and_a_lone_one_alone() -> None:
    async with asyncio.timeout(10):
        services = make_services(max_batch=3)
        ws = FakeWebSocket(query={"batch": "true"})
        task = await subscribed_to_a(ws, services)
        assert ws.messages[0]["max_batch"] == 3
        # Five updates arrive before the sender runs: frames of at most max_batch, in order.
        for version in range(4, 9):
            publish(services, "A", version)
        await ws.until(lambda: len(ws.sent) == 4)
        first, second = ws.messages[2:4]
        assert first["type"] == "updates"
        assert [update["version"] for update in first["updates"]] == [4, 5, 6]
        assert {update["type"] for update in first["updates"]} == {"update"}
        assert [update["version"] for update in second["updates"]] == [7, 8]
        # Nothing waits for company: one update on its own is a plain update, at once.
        publish(services, "A", 9)
        await ws.until(lambda: len(ws.sent) == 5)
        assert (ws.messages[4]["type"], ws.messages[4]["version"]) == ("update", 9)
        assert sample(services, "dashboard_api_ws_messages_sent_total", {"type": "update"}) == 6
        ws.client_leaves()
        await asyncio.wait_for(task, WAIT_S)


async def test_a_reply_queued_between_updates_keeps_its_place() -> None:
    async with asyncio.timeout(10):
        services = make_services(max_batch=64)
        ws = FakeWebSocket(query={"batch": "1", "encoding": "protobuf"})
        task = await subscribed_to_a(ws, services)
        publish(services, "A", 4)
        publish(services, "A", 5)
        await services.sessions.all()[0].handle(protocol.Ping("p"))
        publish(services, "A", 6)
        await ws.until(lambda: len(ws.sent) == 5)
        frames = [spb.ServerMessage.FromString(cast(bytes, frame)) for frame in ws.sent[2:]]
        assert [frame.WhichOneof("kind") for frame in frames] == ["updates", "pong", "update"]
        assert [u.state.version for u in frames[0].updates.updates] == [4, 5]
        assert frames[2].update.state.version == 6
        ws.client_leaves()
        await asyncio.wait_for(task, WAIT_S)


async def test_without_batch_every_update_is_a_frame_of_its_own() -> None:
    async with asyncio.timeout(10):
        services = make_services(max_batch=64)
        ws = FakeWebSocket()
        task = await subscribed_to_a(ws, services)
        for version in (4, 5, 6):
            publish(services, "A", version)
        await ws.until(lambda: len(ws.sent) == 5)
        assert [(m["type"], m["version"]) for m in ws.messages[2:]] == [("update", v) for v in (4, 5, 6)]
        ws.client_leaves()
        await asyncio.wait_for(task, WAIT_S)


async def test_a_bad_batch_flag_is_refused_with_1008() -> None:
    async with asyncio.timeout(10):
        services = make_services()
        ws = FakeWebSocket(query={"batch": "yes please"})
        await asyncio.wait_for(websocket_endpoint(cast(WebSocket, ws), services), WAIT_S)
        assert ws.closed == (1008, "batch must be true or false")


async def test_a_draining_instance_refuses_with_1013() -> None:
    async with asyncio.timeout(10):
        services = make_services()
        services.sessions.draining = True
        ws = FakeWebSocket()
        await asyncio.wait_for(websocket_endpoint(cast(WebSocket, ws), services), WAIT_S)
        assert ws.closed is not None
        assert ws.closed[0] == 1013
        assert len(services.sessions) == 0


async def test_without_auth_a_client_may_name_itself() -> None:
    async with asyncio.timeout(10):
        services = make_services()
        ws = FakeWebSocket(query={"user": "alice"})
        task = await connected(ws, services)
        assert ws.messages[0]["user_id"] == "alice"
        ws.client_leaves()
        await asyncio.wait_for(task, WAIT_S)
        bad = FakeWebSocket(query={"user": "has space"})
        await asyncio.wait_for(websocket_endpoint(cast(WebSocket, bad), services), WAIT_S)
        assert bad.closed is not None
        assert bad.closed[0] == 4001
        assert sample(services, "dashboard_api_auth_failures_total", {"transport": "ws"}) == 1


def token(subject: str, expires_in_s: float = 60.0) -> str:
    return jwt.encode({"sub": subject, "exp": int(time.time() + expires_in_s)}, SECRET, algorithm="HS256")


async def test_with_auth_the_token_names_the_user() -> None:
    async with asyncio.timeout(10):
        verifier = TokenVerifier.from_settings(AuthSettings(hs256_secret=SECRET))
        services = make_services(verifier)
        for ws in (
            FakeWebSocket(headers={"authorization": f"Bearer {token('bob')}"}),
            FakeWebSocket(query={"token": token("bob"), "user": "mallory"}),
        ):
            task = await connected(ws, services)
            assert ws.messages[0]["user_id"] == "bob"
            ws.client_leaves()
            await asyncio.wait_for(task, WAIT_S)


async def test_with_auth_a_missing_or_expired_token_is_closed_with_4001() -> None:
    async with asyncio.timeout(10):
        verifier = TokenVerifier.from_settings(AuthSettings(hs256_secret=SECRET))
        services = make_services(verifier)
        for ws in (
            FakeWebSocket(),
            FakeWebSocket(query={"user": "bob"}),
            FakeWebSocket(query={"token": token("bob", expires_in_s=-3600)}),
            FakeWebSocket(headers={"authorization": "Basic abc"}),
        ):
            await asyncio.wait_for(websocket_endpoint(cast(WebSocket, ws), services), WAIT_S)
            assert ws.closed is not None
            assert ws.closed[0] == 4001
            assert ws.closed[1].startswith("unauthorized: ")
            assert ws.sent == []
        assert sample(services, "dashboard_api_auth_failures_total", {"transport": "ws"}) == 4


async def test_bad_frames_earn_errors_and_the_connection_stays_open() -> None:
    async with asyncio.timeout(10):
        services = make_services()
        ws = FakeWebSocket()
        task = await connected(ws, services)
        ws.client_sends("nope")
        ws.client_sends(b"\xff\xff\xff")
        ws.client_sends({"type": "ping", "pad": "x" * 300})
        ws.client_sends({"type": "subscribe", "id": "s", "instruments": ["A"], "max_rate": -1})
        ws.client_sends({"type": "ping", "id": "still here"})
        await ws.until(lambda: len(ws.sent) == 6)
        codes = [(m["type"], m.get("code"), m.get("id")) for m in ws.messages[1:]]
        assert codes == [
            ("error", "invalid_json", None),
            ("error", "invalid_protobuf", None),
            ("error", "message_too_large", None),
            ("error", "invalid_max_rate", "s"),
            ("pong", None, "still here"),
        ]
        assert sample(services, "dashboard_api_client_errors_total", {"code": "invalid_json"}) == 1
        ws.client_leaves()
        await asyncio.wait_for(task, WAIT_S)
        assert ws.closed is None


async def test_too_many_messages_are_rate_limited() -> None:
    async with asyncio.timeout(10):
        services = make_services(max_messages_per_second=1.0)  # bursts of 2
        ws = FakeWebSocket()
        task = await connected(ws, services)
        for n in range(3):
            ws.client_sends({"type": "ping", "id": str(n)})
        await ws.until(lambda: len(ws.sent) == 4)
        assert [(m["type"], m.get("code")) for m in ws.messages[1:]] == [
            ("pong", None),
            ("pong", None),
            ("error", "rate_limited"),
        ]
        assert ws.messages[3]["reason"] == "more than 1 messages per second"
        ws.client_leaves()
        await asyncio.wait_for(task, WAIT_S)


async def test_too_many_errors_close_with_1008() -> None:
    async with asyncio.timeout(10):
        services = make_services(max_errors_per_minute=2)
        ws = FakeWebSocket()
        task = await connected(ws, services)
        for _ in range(3):
            ws.client_sends("nope")
        await asyncio.wait_for(task, WAIT_S)
        assert ws.closed == (1008, "more than 2 errors in a minute")
        assert len(services.sessions) == 0


async def test_an_idle_client_is_closed_with_4009() -> None:
    async with asyncio.timeout(10):
        services = make_services(idle_timeout_s=0.05)
        ws = FakeWebSocket()
        task = await connected(ws, services)
        await asyncio.wait_for(task, WAIT_S)
        assert ws.closed == (4009, "idle: nothing received for 0.05s")
        assert sample(services, "dashboard_api_session_closes_total", {"code": "4009"}) == 1


async def test_an_operator_close_says_goodbye_with_the_code_given() -> None:
    async with asyncio.timeout(10):
        services = make_services()
        ws = FakeWebSocket()
        task = await connected(ws, services)
        await services.sessions.close_all(1001, "server shutting down", timeout_s=WAIT_S)
        await asyncio.wait_for(task, WAIT_S)
        assert ws.closed == (1001, "server shutting down")
        assert len(services.sessions) == 0


async def test_a_client_gone_while_sending_is_not_sent_a_close() -> None:
    async with asyncio.timeout(10):
        services = make_services()
        ws = FakeWebSocket()
        task = await connected(ws, services)
        ws.broken = True
        ws.client_sends({"type": "ping"})
        await asyncio.wait_for(task, WAIT_S)
        assert ws.closed is None
        assert len(services.sessions) == 0
