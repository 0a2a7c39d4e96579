from __future__ import annotations

import json
from typing import cast

from redis.asyncio import Redis

from services.dashboard_api.fanout import Delta, Relay, SubscriptionIndex, render_update
from services.dashboard_api.metrics import DashboardApiMetrics
from tapewire.keys import RedisKeys
from tapewire.v1 import market_pb2 as pb

KEYS = RedisKeys(prefix="p:", channel="chan")
T0 = 1_767_225_600_000_000_000


class FakeSubscriber:
    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.deltas: list[Delta] = []
        self.resyncs: list[tuple[str, ...]] = []

    def deliver(self, delta: Delta) -> bool:
        self.deltas.append(delta)
        return self.accept

    def resync(self, instruments: tuple[str, ...]) -> bool:
        self.resyncs.append(instruments)
        return self.accept


def payload(instrument: str, version: int, cached_ns: int = T0) -> bytes:
    state = pb.InstrumentState(
        instrument=instrument, version=version, times=pb.StageTimes(cached_ns=cached_ns)
    )
    return pb.Update(state=state).SerializeToString()


def make_relay() -> tuple[Relay, DashboardApiMetrics]:
    metrics = DashboardApiMetrics()
    relay = Relay(cast(Redis, None), KEYS, metrics, clock=lambda: T0 + 2_000_000)
    return relay, metrics


def sample(metrics: DashboardApiMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


def test_index_both_ways() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("c1", ["A", "B"])
    index.add("c2", ["B"])
    assert set(index.subscribers("B")) == {"c1", "c2"}
    assert set(index.instruments_of("c1")) == {"A", "B"}
    index.remove("c1", ["B", "Z"])
    assert set(index.subscribers("B")) == {"c2"}
    assert set(index.instruments_of("c1")) == {"A"}
    index.remove_all("c2")
    assert list(index.subscribers("B")) == []
    assert dict(index.items()) == {"c1": frozenset({"A"})}
    index.remove("c1", ["A"])
    assert dict(index.items()) == {}
    assert list(index.subscribers("A")) == []


def test_render_update() -> None:
    rendered = render_update("A", payload("A", 7), sent_ns=T0 + 1)
    assert rendered is not None
    delta, state = rendered
    assert (delta.instrument, delta.version, state.version) == ("A", 7, 7)
    message = json.loads(delta.text)
    assert (message["type"], message["instrument"], message["version"]) == ("update", "A", 7)
    assert message["state"]["times"] == {
        "exchange_ns": 0,
        "ingest_ns": 0,
        "processed_ns": 0,
        "cached_ns": T0,
        "sent_ns": T0 + 1,
    }


def test_render_refuses_garbage_another_instrument_and_version_zero() -> None:
    assert render_update("A", b"\xff\xff\xff", T0) is None
    assert render_update("A", payload("B", 1), T0) is None
    assert render_update("A", payload("A", 0), T0) is None


def test_one_render_for_every_watcher() -> None:
    relay, metrics = make_relay()
    first, second, other = FakeSubscriber(), FakeSubscriber(), FakeSubscriber()
    relay.index.add(first, ["A"])
    relay.index.add(second, ["A", "B"])
    relay.index.add(other, ["B"])
    relay.handle("chan:A", payload("A", 3))
    assert [d.version for d in first.deltas] == [3]
    assert first.deltas[0] is second.deltas[0]  # the same rendered text, not a copy per client
    assert other.deltas == []
    assert sample(metrics, "dashboard_api_updates_relayed_total") == 1
    assert sample(metrics, "dashboard_api_cached_to_sent_seconds_count") == 1
    assert sample(metrics, "dashboard_api_cached_to_sent_seconds_sum") == 0.002


def test_unwatched_instruments_are_not_even_parsed() -> None:
    relay, metrics = make_relay()
    relay.handle("chan:NOBODY", b"not a protobuf")
    assert sample(metrics, "dashboard_api_updates_received_total") == 1
    assert sample(metrics, "dashboard_api_invalid_updates_total") == 0
    assert sample(metrics, "dashboard_api_updates_relayed_total") == 0


def test_invalid_update_is_counted_and_skipped() -> None:
    relay, metrics = make_relay()
    subscriber = FakeSubscriber()
    relay.index.add(subscriber, ["A"])
    relay.handle("chan:A", payload("B", 1))
    assert subscriber.deltas == []
    assert sample(metrics, "dashboard_api_invalid_updates_total") == 1


def test_a_subscriber_that_refuses_is_forgotten() -> None:
    relay, _ = make_relay()
    slow, fine = FakeSubscriber(accept=False), FakeSubscriber()
    relay.index.add(slow, ["A", "B"])
    relay.index.add(fine, ["A"])
    relay.handle("chan:A", payload("A", 1))
    relay.handle("chan:A", payload("A", 2))
    assert [d.version for d in slow.deltas] == [1]
    assert [d.version for d in fine.deltas] == [1, 2]
    assert list(relay.index.instruments_of(slow)) == []
    assert list(relay.index.subscribers("B")) == []


def test_resubscription_asks_every_connection_to_resync() -> None:
    relay, metrics = make_relay()
    subscriber = FakeSubscriber()
    relay.index.add(subscriber, ["A"])
    confirmation = {"type": "psubscribe", "pattern": None, "channel": b"chan:*", "data": 1}
    relay._on_message(confirmation)
    assert relay.ready
    assert subscriber.resyncs == []  # the first subscription has nothing to catch up on
    relay._set_ready(False)
    assert sample(metrics, "dashboard_api_relay_ready") == 0
    relay._on_message(confirmation)
    assert subscriber.resyncs == [("A",)]
    assert sample(metrics, "dashboard_api_relay_ready") == 1
