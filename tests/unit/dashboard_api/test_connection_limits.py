from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.dashboard_api.connection_limits import ConnectionGuard, refusal
from services.dashboard_api.metrics import DashboardApiMetrics
from services.dashboard_api.settings import DashboardApiSettings


class FakeTransport(asyncio.Transport):
    pass


def guard(max_connections: int = 3, max_per_address: int = 2) -> ConnectionGuard:
    return ConnectionGuard(max_connections, max_per_address, 1.0, DashboardApiMetrics(CollectorRegistry()))


def test_each_address_gets_its_own_slots_within_the_total() -> None:
    slots = guard()
    a1, a2, a3, b1, c1 = (FakeTransport() for _ in range(5))
    assert [slots.admit(a1, "a"), slots.admit(a2, "a"), slots.admit(a3, "a")] == [None, None, "address"]
    assert slots.admit(b1, "b") is None
    assert slots.admit(c1, "c") == "server"
    assert slots.open == 3


def test_a_released_slot_is_free_again_and_release_is_idempotent() -> None:
    slots = guard()
    first, second, third = FakeTransport(), FakeTransport(), FakeTransport()
    slots.admit(first, "a")
    slots.admit(second, "a")
    slots.release(first)
    slots.release(first)  # the HTTP and the WebSocket protocol may both give it back
    slots.release(FakeTransport())  # refused: it never had one
    assert slots.admit(third, "a") is None
    assert slots.open == 2


def test_refusals_and_open_connections_are_counted() -> None:
    registry = CollectorRegistry()
    slots = ConnectionGuard(1, 1, 1.0, DashboardApiMetrics(registry))
    slots.admit(FakeTransport(), "a")
    slots.admit(FakeTransport(), "a")
    assert registry.get_sample_value("dashboard_api_open_connections") == 1
    assert registry.get_sample_value("dashboard_api_refused_connections_total", {"cap": "server"}) == 1


def test_protocol_classes_are_bound_to_their_own_guard() -> None:
    one, other = guard(), guard()
    assert one.protocols(16_384)[0].guard is one and one.protocols(16_384)[1].guard is one
    assert other.protocols(16_384)[0].guard is other
    assert one.protocols(16_384)[1].write_buffer_bytes == 16_384


def test_the_refusal_is_a_complete_503_in_the_documented_shape() -> None:
    head, _, body = refusal("address").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert f"content-length: {len(body)}".encode() in head
    assert b'"code": "too_many_connections"' in body


@pytest.mark.parametrize(
    "overrides",
    [
        {"handshake_timeout_s": 0},
        {"max_connections": 0},
        {"max_connections_per_ip": 0},
        {"redis_max_connections": 0},
        {"redis_pool_timeout_s": 0},
        {"max_connections": 10, "max_connections_per_ip": 11},
    ],
)
def test_connection_limits_must_be_positive_and_consistent(overrides: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        DashboardApiSettings(**overrides)  # type: ignore[arg-type]
