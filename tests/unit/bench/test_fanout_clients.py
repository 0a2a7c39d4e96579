"""The fan-out clients' counting: every update in a frame counts once, with its own latency."""

from __future__ import annotations

import json

import pytest

from bench.fanout.clients import ClientStats, TapewireClient

pytestmark = pytest.mark.anyio


def update(instrument: str, version: int, cached_ns: int) -> dict[str, object]:
    return {
        "type": "update",
        "instrument": instrument,
        "version": version,
        "state": {"instrument": instrument, "version": version, "times": {"cached_ns": cached_ns}},
    }


async def received(frames: list[bytes], now_ns: int) -> ClientStats:
    stats = ClientStats(window=(0, 2**62))
    client = TapewireClient("127.0.0.1", 1, "/ws", ["A", "B"], stats)
    for frame in frames:
        client.on_message(frame, now_ns)
    return stats


async def test_an_updates_frame_counts_each_update_with_its_own_latency() -> None:
    batch = {"type": "updates", "updates": [update("A", 7, 1_000_000), update("B", 3, 3_000_000)]}
    stats = await received([json.dumps(batch, separators=(",", ":")).encode()], now_ns=5_000_000)
    assert stats.in_window == 2
    assert sorted(stats.latencies_ms) == [2.0, 4.0]


async def test_a_lone_update_counts_once() -> None:
    stats = await received([json.dumps(update("A", 8, 4_000_000), separators=(",", ":")).encode()], 5_000_000)
    assert (stats.in_window, list(stats.latencies_ms)) == (1, [1.0])
