"""The services as separate processes, on real Kafka, Redis and PostgreSQL.

A replay file feeds the ingester; a WebSocket client, the REST API, PostgreSQL and the DLQ
are then checked against values worked out by hand from that file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import websockets
from confluent_kafka import Producer

from tapewire.db import connect_kwargs
from tapewire.settings import KafkaSettings, PostgresSettings, TopicSettings
from tests.support import consume_all, produce_raw, wait_for
from tools.isolation import free_port
from tools.suite import Suite, prepare

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

T0_S = 1_763_649_000  # 2025-11-20 14:30:00 UTC
SUBSCRIBED = ["AAPL", "MSFT"]


def replay_lines() -> list[str]:
    """AAPL: 30 trades at 100..129 (size 10), one per second; MSFT: 30 quotes; NVDA: 10 trades."""
    lines = []
    for i in range(30):
        ts = f"{T0_S + i}000000000"
        lines.append(
            json.dumps(
                {
                    "instrument": "AAPL",
                    "venue": "XNAS",
                    "kind": "trade",
                    "price": f"{100 + i}",
                    "size": "10",
                    "seq": i + 1,
                    "ts_ns": int(ts),
                }
            )
        )
        lines.append(
            json.dumps(
                {
                    "instrument": "MSFT",
                    "venue": "XNAS",
                    "kind": "quote",
                    "bid": f"{400 + i}.10",
                    "bid_size": "5",
                    "ask": f"{400 + i}.30",
                    "ask_size": "7",
                    "seq": i + 1,
                    "ts_ns": int(ts),
                }
            )
        )
        if i % 3 == 0:
            lines.append(
                json.dumps(
                    {
                        "instrument": "NVDA",
                        "kind": "trade",
                        "price": "150.5",
                        "size": "2",
                        "seq": i // 3 + 1,
                        "ts_ns": int(ts),
                    }
                )
            )
        if i == 15:
            lines.append(
                '{"instrument": "AAPL", "kind": "trade", "price": "-3", "size": "1"}'
            )  # rejected by the ingester
    return lines


@pytest.fixture
def suite_env(env_for_services: Callable[..., dict[str, str]]) -> dict[str, str]:
    env = env_for_services(
        DASHBOARD_API_PORT=str(free_port()),
    )
    prepare(env)
    return env


@pytest.fixture
def suite(suite_env: dict[str, str], tmp_path: Path) -> Iterator[Suite]:
    running = Suite(
        env=suite_env,
        log_dir=tmp_path / "logs",
        services=("processor", "history_writer", "cache_updater", "dashboard_api"),
    ).start()
    yield running
    codes = running.stop()
    for name in running.processes:
        print(f"--- {name} log (exit {codes.get(name)}) ---\n{running.log_tail(name)}")
    assert codes == dict.fromkeys(running.processes, 0), f"services did not stop cleanly: {codes}"


async def collect_until(
    ws: Any, final_versions: dict[str, int], timeout_s: float, alerts: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Read updates until each instrument reached its final version (alert events go to `alerts`)."""
    updates: list[dict[str, Any]] = []
    seen = dict.fromkeys(final_versions, 0)

    async def read() -> None:
        while any(seen[name] < version for name, version in final_versions.items()):
            message = json.loads(await ws.recv())
            if message["type"] == "heartbeat":
                continue
            if message["type"] == "alert" and alerts is not None:
                alerts.append(message)
                continue
            assert message["type"] == "update", message
            updates.append(message)
            seen[message["instrument"]] = message["version"]

    await asyncio.wait_for(read(), timeout_s)
    return updates


async def test_replay_flows_to_websocket_rest_postgres_and_dlq(
    suite: Suite,
    suite_env: dict[str, str],
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    postgres_settings: PostgresSettings,
    tmp_path: Path,
) -> None:
    base = f"http://127.0.0.1:{suite_env['DASHBOARD_API_PORT']}"
    wait_for(lambda: _ready(base, suite), 60, "dashboard_api to be ready")

    # A record no ingester would write, on AAPL's partition ahead of its ticks: it must go to the
    # DLQ while AAPL keeps flowing behind it.
    produce_raw(
        Producer(kafka_settings.as_librdkafka_dict()), [(topics.raw, b"AAPL", b"\x08\x96\x01garbage")]
    )

    replay = tmp_path / "ticks.ndjson"
    replay.write_text("\n".join(replay_lines()) + "\n")

    async with websockets.connect(f"ws://127.0.0.1:{suite_env['DASHBOARD_API_PORT']}/ws") as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome" and welcome["protocol"] == 1
        await ws.send(json.dumps({"type": "subscribe", "instruments": SUBSCRIBED}))
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send("not json")
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error" and error["reason"]
        # A price alert through Kafka and the processor, back to this connection: it must be
        # ACTIVE in the processor before the trades start, or they could pass it by.
        create = {"type": "alert.create", "id": "a", "instrument": "AAPL", "direction": "above"}
        await ws.send(json.dumps({**create, "price": "119.5"}))
        accepted = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert accepted["type"] == "alert.accepted" and accepted["id"] == "a", accepted
        active = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert (active["type"], active["status"]) == ("alert", "active"), active
        assert active["alert"]["alert_id"] == accepted["alert_id"]
        ingester = suite.start_service(
            "ingester",
            {
                "INGESTER_SOURCE": "replay",
                "INGESTER_REPLAY_PATH": str(replay),
                "INGESTER_REPLAY_SPEED": "0",
            },
        )
        alerts: list[dict[str, Any]] = []
        updates = await collect_until(ws, {"AAPL": 30, "MSFT": 30}, timeout_s=60, alerts=alerts)
        while not alerts:
            alerts.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        (triggered,) = alerts
        assert (triggered["type"], triggered["status"]) == ("alert", "triggered"), triggered
        assert (triggered["trigger_price"], triggered["trigger_version"]) == ("120", 21)
        assert triggered["times"]["ingest_ns"] > 0 and triggered["times"]["processed_ns"] > 0
        await ws.send(json.dumps({"type": "alert.list", "id": "l"}))
        listing = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert [a["status"] for a in listing["alerts"]] == ["triggered"], listing
        assert await asyncio.to_thread(ingester.wait, 60) == 0, suite.log_tail("ingester")

    assert snapshot["type"] == "snapshot"
    assert snapshot["states"] == [] and sorted(snapshot["missing"]) == SUBSCRIBED
    assert {u["instrument"] for u in updates} <= set(SUBSCRIBED), (
        "got updates for an instrument not subscribed"
    )
    for name in SUBSCRIBED:
        versions = [u["version"] for u in updates if u["instrument"] == name]
        assert versions == list(range(1, 31)), f"{name}: versions {versions}"

    aapl = [u for u in updates if u["instrument"] == "AAPL"][-1]["state"]
    # Trades at 100..129, size 10 each: VWAP 114.5, volume 300, change 29.
    assert (aapl["last_price"], aapl["vwap"], aapl["session_volume"], aapl["change"]) == (
        "129",
        "114.5",
        "300",
        "29",
    )
    assert (aapl["session_high"], aapl["session_low"], aapl["trade_count"]) == ("129", "100", 30)
    for stage in ("exchange_ns", "ingest_ns", "processed_ns", "cached_ns", "sent_ns"):
        assert aapl["times"][stage] > 0, stage
    msft = [u for u in updates if u["instrument"] == "MSFT"][-1]["state"]
    assert (msft["bid_price"], msft["ask_price"], msft["mid"], msft["spread"]) == (
        "429.1",
        "429.3",
        "429.2",
        "0.2",
    )

    snapshot_api = httpx.get(f"{base}/api/snapshot", timeout=10).json()
    by_name = {s["instrument"]: s for s in snapshot_api["states"]}
    assert sorted(by_name) == ["AAPL", "MSFT", "NVDA"]
    assert (by_name["AAPL"]["version"], by_name["AAPL"]["vwap"]) == (30, "114.5")
    assert (by_name["NVDA"]["version"], by_name["NVDA"]["session_volume"]) == (10, "20")
    assert httpx.get(f"{base}/api/instruments", timeout=10).json()["instruments"] == ["AAPL", "MSFT", "NVDA"]

    # History is written by history_writer, a consumer of the processed topic:
    # it may trail the WebSocket by a batch, so wait for it (bounded) rather than race it.
    def minute_bars() -> list[tuple[str, str, str, int, str | None]]:
        answer = httpx.get(
            f"{base}/api/bars", params={"instrument": "AAPL", "interval": "1m", "limit": 10}, timeout=10
        )
        return [
            (b["open"], b["close"], b["volume"], b["trade_count"], b["vwap"]) for b in answer.json()["bars"]
        ]

    # The bar's VWAP is the session's as of its last trade, the 30th: 114.5, as in the states.
    wait_for(lambda: minute_bars() == [("100", "129", "300", 30, "114.5")], 30, "the 1m bar in /api/bars")
    wait_for(lambda: _stored_version(postgres_settings, "MSFT") == 30, 30, "MSFT's history to be written")
    with psycopg.connect(**connect_kwargs(postgres_settings)) as conn:
        assert conn.execute(
            "SELECT count(*), sum(volume) FROM bars_1s WHERE instrument = 'AAPL'"
        ).fetchone() == (30, D(300))
        assert conn.execute("SELECT version FROM instrument_state WHERE instrument = 'MSFT'").fetchone() == (
            30,
        )

    dead = consume_all(kafka_settings, topics.raw_dlq, expected=1)
    assert dict(dead[0].headers() or [])["tapewire-error-code"] == b"undecodable"


def _ready(base: str, suite: Suite) -> bool:
    assert not suite.exited(), f"a service died: {suite.exited()}"
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stored_version(postgres: PostgresSettings, instrument: str) -> int | None:
    with psycopg.connect(**connect_kwargs(postgres)) as conn:
        row = conn.execute(
            "SELECT version FROM instrument_state WHERE instrument = %s", (instrument,)
        ).fetchone()
    return int(row[0]) if row else None
