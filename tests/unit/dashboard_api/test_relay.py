"""The relay without Redis: the indexes, dispatch of published messages, and the channel bookkeeping
(with a fake connection that records SUBSCRIBE/UNSUBSCRIBE and confirms when told)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.dashboard_api.live.encoders import Delta
from services.dashboard_api.live.pubsub import PubSubConnector
from services.dashboard_api.live.relay import Relay, SubscriptionIndex, confirmed, parse_update
from services.dashboard_api.metrics import DashboardApiMetrics
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb
from tests.support import in_memory_tracer

from .fakes import KEYS, FakeConnection, connect

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000_000_000


class FakeSubscriber:
    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.deltas: list[Delta] = []
        self.alerts: list[apb.AlertEvent] = []
        self.resyncs = 0

    def deliver(self, delta: Delta) -> bool:
        self.deltas.append(delta)
        return self.accept

    def deliver_alert(self, event: apb.AlertEvent) -> bool:
        self.alerts.append(event)
        return self.accept

    def resync(self) -> bool:
        self.resyncs += 1
        return self.accept


def payload(instrument: str, version: int, cached_ns: int = T0, ingest_ns: int = 0) -> bytes:
    state = pb.InstrumentState(
        instrument=instrument, version=version, times=pb.StageTimes(cached_ns=cached_ns, ingest_ns=ingest_ns)
    )
    return pb.Update(state=state).SerializeToString()


def alert_payload(user: str, status: int = apb.ALERT_STATUS_ACTIVE) -> bytes:
    event = apb.AlertEvent(alert=apb.Alert(alert_id="a", user_id=user, instrument="A"), status=status)
    return event.SerializeToString()


def make_relay() -> tuple[Relay, DashboardApiMetrics]:
    metrics = DashboardApiMetrics()
    relay = Relay(cast(PubSubConnector, None), KEYS, metrics, clock=lambda: T0 + 2_000_000)
    return relay, metrics


def sample(metrics: DashboardApiMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


# -- SubscriptionIndex -----------------------------------------------------------------------


def test_index_reports_the_first_and_last_watchers() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    assert index.add("c1", ["A", "B"]) == ["A", "B"]
    assert index.add("c2", ["B", "C"]) == ["C"]
    assert index.add("c2", ["B"]) == []
    assert set(index.subscribers("B")) == {"c1", "c2"}
    assert set(index.keys_of("c1")) == {"A", "B"}
    assert set(index.keys()) == {"A", "B", "C"}
    assert index.remove("c1", ["B", "Z"]) == []  # c2 still watches B; Z was never watched
    assert set(index.subscribers("B")) == {"c2"}
    assert set(index.keys_of("c1")) == {"A"}
    assert sorted(index.remove_all("c2")) == ["B", "C"]
    assert list(index.subscribers("B")) == []
    assert dict(index.items()) == {"c1": frozenset({"A"})}
    assert index.remove("c1", ["A"]) == ["A"]
    assert dict(index.items()) == {}
    assert list(index.keys()) == []
    assert list(index.keys_of("c1")) == []


def test_index_remove_of_an_unknown_subscriber() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    assert index.remove("nobody", ["A"]) == []
    assert index.remove_all("nobody") == []


def test_index_remove_takes_any_iterable_and_duplicates() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("c1", ["A", "B", "C"])
    assert index.remove("c1", (key for key in ["A"])) == ["A"]
    assert set(index.keys_of("c1")) == {"B", "C"}
    assert index.remove("c1", ["B", "B"]) == ["B"]
    assert set(index.keys()) == {"C"}


# -- parsing and dispatch --------------------------------------------------------------------


def test_parse_update_refuses_garbage_another_instrument_and_version_zero() -> None:
    update = parse_update("A", payload("A", 7))
    assert update is not None
    state = update.state
    assert state is not None
    assert (state.instrument, state.version) == ("A", 7)
    assert parse_update("A", b"\xff\xff\xff") is None
    assert parse_update("A", payload("B", 1)) is None
    assert parse_update("A", payload("A", 0)) is None


def test_one_delta_for_every_watcher() -> None:
    relay, metrics = make_relay()
    first, second, other = FakeSubscriber(), FakeSubscriber(), FakeSubscriber()
    relay.watch(first, ["A"])
    relay.watch(second, ["A", "B"])
    relay.watch(other, ["B"])
    relay.handle("chan:A", payload("A", 3, ingest_ns=T0 - 1_000_000))
    assert [d.version for d in first.deltas] == [3]
    assert first.deltas[0] is second.deltas[0]  # rendered once, shared by every client
    assert first.deltas[0].state.times.sent_ns == T0 + 2_000_000  # stamped with the relay's clock
    assert other.deltas == []
    assert sample(metrics, "dashboard_api_updates_received_total") == 1
    assert sample(metrics, "dashboard_api_updates_relayed_total") == 1
    assert sample(metrics, "dashboard_api_cached_to_sent_seconds_count") == 1
    assert sample(metrics, "dashboard_api_cached_to_sent_seconds_sum") == 0.002
    assert sample(metrics, "dashboard_api_ingest_to_sent_seconds_sum") == 0.003


def test_a_sampled_update_is_relayed_in_a_span_continuing_its_trace() -> None:
    exporter = InMemorySpanExporter()
    relay = Relay(
        cast(PubSubConnector, None),
        KEYS,
        DashboardApiMetrics(),
        clock=lambda: T0 + 2_000_000,
        tracer=in_memory_tracer(exporter),
    )
    watchers = [FakeSubscriber(), FakeSubscriber()]
    for watcher in watchers:
        relay.watch(watcher, ["A"])
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    update = pb.Update.FromString(payload("A", 3))
    update.traceparent = parent
    relay.handle("chan:A", update.SerializeToString())
    relay.handle("chan:A", payload("A", 4))  # not sampled: no span
    assert [[d.version for d in w.deltas] for w in watchers] == [[3, 4], [3, 4]]
    (span,) = exporter.get_finished_spans()
    assert span.name == "dashboard_api relay"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert span.attributes is not None and span.attributes["sessions"] == 2


def test_unwatched_instruments_are_not_even_parsed() -> None:
    relay, metrics = make_relay()
    relay.handle("chan:NOBODY", b"not a protobuf")
    assert sample(metrics, "dashboard_api_updates_received_total") == 1
    assert sample(metrics, "dashboard_api_invalid_updates_total") == 0
    assert sample(metrics, "dashboard_api_updates_relayed_total") == 0


def test_invalid_updates_are_counted_and_skipped() -> None:
    relay, metrics = make_relay()
    subscriber = FakeSubscriber()
    relay.watch(subscriber, ["A"])
    relay.handle("chan:A", payload("B", 1))  # another instrument's update on A's channel
    relay.handle("chan:A", b"\xff\xff\xff")
    relay.handle("chan:A", payload("A", 0))
    assert subscriber.deltas == []
    assert sample(metrics, "dashboard_api_invalid_updates_total") == 3
    assert sample(metrics, "dashboard_api_updates_relayed_total") == 0


def test_messages_on_other_channels_are_ignored() -> None:
    relay, metrics = make_relay()
    subscriber = FakeSubscriber()
    relay.watch(subscriber, ["A"])
    relay.handle("elsewhere:A", payload("A", 1))
    relay.handle("chan", payload("A", 1))
    assert subscriber.deltas == []
    assert sample(metrics, "dashboard_api_updates_received_total") == 0


def test_a_subscriber_that_refuses_is_forgotten() -> None:
    relay, _ = make_relay()
    slow, fine = FakeSubscriber(accept=False), FakeSubscriber()
    relay.watch(slow, ["A", "B"])
    relay.watch_alerts(slow, "u1")
    relay.watch(fine, ["A"])
    relay.handle("chan:A", payload("A", 1))
    relay.handle("chan:A", payload("A", 2))
    assert [d.version for d in slow.deltas] == [1]
    assert [d.version for d in fine.deltas] == [1, 2]
    assert list(relay.instruments.keys_of(slow)) == []
    assert list(relay.instruments.subscribers("B")) == []
    assert list(relay.users.keys_of(slow)) == []


def test_a_paused_relay_delivers_nothing_and_resyncs_everyone_on_resume() -> None:
    relay, metrics = make_relay()
    subscriber, refusing = FakeSubscriber(), FakeSubscriber()
    relay.watch(subscriber, ["A"])
    relay.watch(refusing, ["B"])
    relay.pause()
    assert relay.paused
    relay.handle("chan:A", payload("A", 1))
    assert subscriber.deltas == []
    assert sample(metrics, "dashboard_api_updates_relayed_total") == 0
    refusing.accept = False
    relay.resume()
    assert not relay.paused
    assert (subscriber.resyncs, refusing.resyncs) == (1, 1)
    assert list(relay.instruments.keys_of(refusing)) == []  # refused the resync: forgotten
    relay.resume()  # not paused: nothing to catch up on
    assert subscriber.resyncs == 1
    relay.handle("chan:A", payload("A", 2))
    assert [d.version for d in subscriber.deltas] == [2]


def test_alert_events_go_to_the_users_sessions_only() -> None:
    relay, _ = make_relay()
    mine, also_mine, theirs = FakeSubscriber(), FakeSubscriber(), FakeSubscriber()
    relay.watch_alerts(mine, "u1")
    relay.watch_alerts(also_mine, "u1")
    relay.watch_alerts(theirs, "u2")
    relay.handle("alerts:u1", alert_payload("u1"))
    assert [event.alert.user_id for event in mine.alerts] == ["u1"]
    assert mine.alerts == also_mine.alerts
    assert theirs.alerts == []
    assert mine.deltas == []


def test_invalid_alert_events_are_counted() -> None:
    relay, metrics = make_relay()
    subscriber = FakeSubscriber()
    relay.watch_alerts(subscriber, "u1")
    relay.handle("alerts:u1", alert_payload("u2"))  # someone else's event on u1's channel
    relay.handle("alerts:u1", b"\xff\xff\xff")
    relay.handle("alerts:nobody", b"\xff\xff\xff")  # nobody watches: not even parsed
    assert subscriber.alerts == []
    assert sample(metrics, "dashboard_api_invalid_updates_total") == 2


def test_a_subscriber_refusing_an_alert_is_forgotten() -> None:
    relay, _ = make_relay()
    subscriber = FakeSubscriber(accept=False)
    relay.watch(subscriber, ["A"])
    relay.watch_alerts(subscriber, "u1")
    relay.handle("alerts:u1", alert_payload("u1"))
    assert list(relay.users.subscribers("u1")) == []
    assert list(relay.instruments.subscribers("A")) == []


# -- channels and confirmations --------------------------------------------------------------


def test_watch_before_any_connection_returns_events_not_set() -> None:
    relay, _ = make_relay()
    subscriber = FakeSubscriber()
    events = relay.watch(subscriber, ["A", "B"])
    assert len(events) == 2
    assert not any(event.is_set() for event in events)
    assert relay.channels == 2
    assert not relay.ready
    relay.unwatch(subscriber, ["A"])
    assert relay.channels == 1
    relay.forget(subscriber)
    assert relay.channels == 0
    assert list(relay.instruments.keys()) == []


async def test_subscribe_on_first_watcher_unsubscribe_on_last() -> None:
    async with asyncio.timeout(10):
        relay, metrics = make_relay()
        pubsub = connect(relay)
        assert relay.ready
        assert sample(metrics, "dashboard_api_relay_ready") == 1
        first, second = FakeSubscriber(), FakeSubscriber()
        events = relay.watch(first, ["A", "B"])
        assert pubsub.commands == [("subscribe", ("chan:A", "chan:B"))]
        assert all(event.is_set() for event in events)
        await asyncio.wait_for(confirmed(events), 1)
        again = relay.watch(second, ["B", "C"])
        assert pubsub.commands[1:] == [("subscribe", ("chan:C",))]  # B is already subscribed
        assert all(event.is_set() for event in again)
        relay.unwatch(first, ["A", "B"])
        assert pubsub.commands[2:] == [("unsubscribe", ("chan:A",))]  # second still watches B
        relay.forget(second)
        assert sorted(pubsub.commands[3][1]) == ["chan:B", "chan:C"]
        assert pubsub.commands[3][0] == "unsubscribe"
        assert relay.channels == 0
        events = relay.watch_alerts(first, "u1")
        assert pubsub.commands[4:] == [("subscribe", ("alerts:u1",))]
        assert all(event.is_set() for event in events)


async def test_confirmation_is_awaited_before_the_event_is_set() -> None:
    async with asyncio.timeout(10):
        relay, _ = make_relay()
        pubsub = connect(relay, auto_confirm=False)
        events = relay.watch(FakeSubscriber(), ["A"])
        assert pubsub.commands == [("subscribe", ("chan:A",))]
        assert not events[0].is_set()
        waiting = asyncio.create_task(confirmed(events))
        assert not waiting.done()
        pubsub.confirm()
        await asyncio.wait_for(waiting, 1)


async def test_watching_again_while_an_unsubscribe_is_in_flight() -> None:
    async with asyncio.timeout(10):
        relay, _ = make_relay()
        pubsub = connect(relay, auto_confirm=False)
        subscriber = FakeSubscriber()
        relay.watch(subscriber, ["A"])
        pubsub.confirm()
        relay.unwatch(subscriber, ["A"])
        events = relay.watch(subscriber, ["A"])
        assert [command for command, _ in pubsub.commands] == ["subscribe", "unsubscribe", "subscribe"]
        assert not events[0].is_set()  # the unsubscribe's confirmation must not count
        pending = pubsub.unconfirmed
        pubsub.unconfirmed = pending[:1]
        pubsub.confirm()  # the unsubscribe comes back first
        assert not events[0].is_set()
        pubsub.unconfirmed = pending[1:]
        pubsub.confirm()
        assert events[0].is_set()
        assert relay.channels == 1


async def test_resubscription_asks_every_session_to_resync() -> None:
    async with asyncio.timeout(10):
        relay, metrics = make_relay()
        subscriber = FakeSubscriber()
        relay.watch(subscriber, ["A"])
        connect(relay)
        assert relay.ready
        assert subscriber.resyncs == 0  # the first subscription has nothing to catch up on
        relay._set_ready(False)
        assert sample(metrics, "dashboard_api_relay_ready") == 0
        connect(relay)
        assert subscriber.resyncs == 1
        assert sample(metrics, "dashboard_api_relay_ready") == 1


# -- run(): connections, reconnection, resync ------------------------------------------------


class ScriptedConnection:
    """A connection that confirms every command at once and fails when the test says so."""

    def __init__(self, on_message: Callable[[str, bytes], None], on_confirmation: Callable[[str, str], None]):
        self.on_message = on_message
        self.on_confirmation = on_confirmation
        self.commands: list[tuple[str, tuple[str, ...]]] = []
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False

    def subscribe(self, names: list[str]) -> None:
        self._answer("subscribe", names)

    def unsubscribe(self, names: list[str]) -> None:
        self._answer("unsubscribe", names)

    def _answer(self, command: str, names: list[str]) -> None:
        self.commands.append((command, tuple(names)))
        for name in names:
            self.on_confirmation(command, name)

    async def run(self, heartbeat_s: float, stall_s: float) -> None:
        await self.lost
        raise ConnectionResetError("redis closed the connection")

    def close(self) -> None:
        self.closed = True


class FakeConnector:
    """Refuses the first `refusals` attempts, then hands out ScriptedConnections."""

    def __init__(self, refusals: int = 0) -> None:
        self.refusals = refusals
        self.attempts = 0
        self.connections: list[ScriptedConnection] = []

    async def connect(
        self, on_message: Callable[[str, bytes], None], on_confirmation: Callable[[str, str], None]
    ) -> ScriptedConnection:
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise ConnectionRefusedError("redis is down")
        self.connections.append(ScriptedConnection(on_message, on_confirmation))
        return self.connections[-1]


async def until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.005)


async def test_run_connects_subscribes_reconnects_and_resyncs() -> None:
    async with asyncio.timeout(10):
        metrics = DashboardApiMetrics()
        connector = FakeConnector(refusals=1)
        relay = Relay(cast(PubSubConnector, connector), KEYS, metrics, max_backoff_s=0.01)
        subscriber = FakeSubscriber()
        events = relay.watch(subscriber, ["A"])
        relay.start()
        await asyncio.wait_for(confirmed(events), 2)  # after one refusal and a backoff
        first = connector.connections[0]
        assert (connector.attempts, relay.ready, subscriber.resyncs) == (2, True, 0)
        assert first.commands == [("subscribe", ("chan", "chan:A"))]
        assert sample(metrics, "dashboard_api_relay_reconnects_total") == 1
        first.on_message("chan:A", payload("A", 4))
        assert [delta.version for delta in subscriber.deltas] == [4]

        first.lost.set_result(None)
        await until(lambda: len(connector.connections) == 2 and relay.ready)
        second = connector.connections[1]
        assert first.closed and not second.closed
        assert second.commands == [("subscribe", ("chan", "chan:A"))]
        assert subscriber.resyncs == 1  # updates may have been lost in between
        assert events[0].is_set()
        assert sample(metrics, "dashboard_api_relay_reconnects_total") == 2
        relay.unwatch(subscriber, ["A"])
        assert second.commands[1:] == [("unsubscribe", ("chan:A",))]
        await relay.stop()
        assert second.closed


async def test_watches_while_disconnected_are_subscribed_on_the_next_connection() -> None:
    async with asyncio.timeout(10):
        relay, _ = make_relay()
        subscriber = FakeSubscriber()
        connect(relay, auto_confirm=False)
        relay._connection = None  # the connection dropped: nothing sent until the next one
        events = relay.watch(subscriber, ["A", "B"])
        relay.unwatch(subscriber, ["B"])
        assert relay.channels == 1
        fresh = FakeConnection(relay, auto_confirm=False)
        relay._attach(cast(Any, fresh))
        assert fresh.commands == [("subscribe", ("chan", "chan:A"))]
        assert not events[0].is_set()
        fresh.confirm()
        assert events[0].is_set()


async def test_flushes_asked_for_during_a_read_run_together_in_the_next_turn() -> None:
    relay, _ = make_relay()
    ran: list[str] = []

    def failing() -> None:
        ran.append("failing")
        raise RuntimeError("a session's bug")

    relay.flush_soon(lambda: ran.append("first"))
    relay.flush_soon(failing)
    relay.flush_soon(lambda: ran.append("last"))
    assert ran == []  # not before the rest of the read has been offered
    await asyncio.sleep(0)
    assert ran == ["first", "failing", "last"]
    relay.flush_soon(lambda: ran.append("again"))
    await asyncio.sleep(0)
    assert ran[-1] == "again"
