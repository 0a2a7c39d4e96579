"""The instrument master end to end on real Kafka and PostgreSQL: a reference file with a bad line
loaded by its command, the processor rolling sessions by each instrument's calendar (a new
instrument's too, without a restart), history_writer keeping the `instruments` table, and
dashboard_api serving the entries with their market status."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import psycopg
import pytest

from services.history_writer.settings import HistoryWriterSettings
from services.processor.settings import ProcessorSettings
from tapewire.db import connect_kwargs
from tapewire.reference.files import read_entries
from tapewire.reference.instrument import Instrument
from tapewire.reference.master import publish
from tapewire.settings import KafkaSettings, PostgresSettings, RedisSettings, TopicSettings
from tapewire.ticks import Trade
from tapewire.v1 import market_pb2 as pb
from tests.integration.dashboard_support import make_settings, serving
from tests.integration.running import running_history_writer, running_processor
from tests.support import consume_all, produce_ticks, wait_for
from tools.suite import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REFERENCE_CSV = """\
# symbol,name,... as documented in the README (Reference data)
symbol,name,asset_class,currency,venue,tick_size,decimals,lot_size,timezone,hours,days,pre_open,holidays
AAPL,Apple Inc.,equity,USD,XNAS,0.01,2,1,America/New_York,09:30-16:00,Mon-Fri,04:00,2026-11-26;2026-12-25
ESZ6,E-mini S&P 500 Dec 2026,future,USD,XCME,0.25,,1,America/Chicago,17:00-16:00,Mon-Fri,,
BAD,Broken Corp,equity,USD,XNAS,0,2,1,America/New_York,09:30-16:00,Mon-Fri,,
BTC-USD,Bitcoin / US Dollar,crypto,USD,COINBASE,0.01,2,0.00001,UTC,24/7,,,
"""


def utc_ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def utc_day(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) // 86_400


def trade(instrument: str, price: str, at: str, sequence: int) -> Trade:
    return Trade(instrument, "XCME", D(price), D("1"), sequence, utc_ns(at), utc_ns(at))


def master_rows(postgres: PostgresSettings) -> dict[str, tuple[str, int]]:
    with psycopg.connect(**connect_kwargs(postgres)) as conn:
        rows = conn.execute("SELECT symbol, name, decimals FROM instruments").fetchall()
    return {symbol: (name, decimals) for symbol, name, decimals in rows}


def last_states(kafka: KafkaSettings, topics: TopicSettings, expected: int) -> dict[str, pb.InstrumentState]:
    states = [
        pb.InstrumentState.FromString(m.value() or b"")
        for m in consume_all(kafka, topics.processed, expected)
    ]
    return {state.instrument: state for state in states}


def entry(line: str) -> Instrument:
    header = REFERENCE_CSV.splitlines()[1]
    (parsed,) = read_entries([header, line], "csv")
    assert isinstance(parsed, Instrument), parsed
    return parsed


def test_a_file_with_a_bad_line_loads_the_rest_and_sessions_follow_each_calendar(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    postgres_settings: PostgresSettings,
    env_for_services: Callable[..., dict[str, str]],
    unique: str,
    tmp_path: Path,
) -> None:
    reference = tmp_path / "instruments.csv"
    reference.write_text(REFERENCE_CSV)
    loaded = subprocess.run(
        [sys.executable, "-m", "tapewire.reference", "load", str(reference)],
        env=env_for_services(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode == 1, loaded.stderr  # some lines rejected, the rest loaded
    assert f"{reference}: line 5: tick_size '0' must be a positive decimal" in loaded.stderr
    assert loaded.stdout.startswith(f"3 published to {topics.instruments}, 1 rejected")

    processor = ProcessorSettings(kafka=kafka_settings, topics=topics, group_id=f"g{unique}", metrics_port=0)
    history = HistoryWriterSettings(
        kafka=kafka_settings, topics=topics, postgres=postgres_settings, group_id=f"h{unique}", metrics_port=0
    )
    with running_processor(processor), running_history_writer(history):
        rows = wait_for(
            lambda: len(master_rows(postgres_settings)) == 3 and master_rows(postgres_settings), 30, "rows"
        )
        assert rows == {
            "AAPL": ("Apple Inc.", 2),
            "ESZ6": ("E-mini S&P 500 Dec 2026", 2),  # decimals from the tick size 0.25
            "BTC-USD": ("Bitcoin / US Dollar", 2),
        }
        # CME Globex, Chicago time (UTC-6 in winter): Monday's session until Monday 17:00.
        produce_ticks(
            kafka_settings,
            topics.raw,
            [
                trade("ESZ6", "6000.25", "2026-11-30 21:00", 1),  # Mon 15:00 CT
                trade("ESZ6", "6001.00", "2026-11-30 22:00", 2),  # Mon 16:00: the close
                trade("ESZ6", "6002.50", "2026-11-30 22:30", 3),  # Mon 16:30: after it
                trade("ESZ6", "6003.75", "2026-11-30 23:00", 4),  # Mon 17:00: Tuesday's session
            ],
        )
        esz6 = last_states(kafka_settings, topics, 4)["ESZ6"]
        assert (esz6.session_day, esz6.session_open, esz6.trade_count) == (
            utc_day("2026-12-01"),
            "6003.75",
            1,
        )
        assert (esz6.previous_close, esz6.change, esz6.change_basis) == (
            "6001",
            "2.75",
            pb.CHANGE_BASIS_PREVIOUS_CLOSE,
        )

        # A new instrument, published while everything runs: 24/7 by Tokyo's day, which rolls
        # at 15:00 UTC; by the UTC day (what an unknown instrument gets) it would not roll.
        tokyo = entry("NK225,Nikkei 225 CFD,index,JPY,XOFF,1,0,1,Asia/Tokyo,24/7,,,")
        publish(kafka_settings, topics.instruments, [tokyo])
        wait_for(lambda: "NK225" in master_rows(postgres_settings), 30, "the new instrument in PostgreSQL")
        time.sleep(1.0)  # the processor takes the master's news between its batches
        produce_ticks(
            kafka_settings,
            topics.raw,
            [
                trade("NK225", "39000", "2026-11-30 14:59", 1),  # Mon 23:59 Tokyo
                trade("NK225", "39010", "2026-11-30 15:00", 2),  # Tue 00:00 Tokyo: a new session
            ],
        )
        nk225 = last_states(kafka_settings, topics, 6)["NK225"]
        assert (nk225.session_day, nk225.previous_close, nk225.change) == (
            utc_day("2026-12-01"),
            "39000",
            "10",
        )

        removed = subprocess.run(
            [sys.executable, "-m", "tapewire.reference", "remove", "NK225"],
            env=env_for_services(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert removed.returncode == 0, removed.stderr
        wait_for(lambda: "NK225" not in master_rows(postgres_settings), 30, "the removal in PostgreSQL")

    # A new processor restores the states from the changelog, previous close and all, and goes
    # on in the same session.
    with running_processor(processor):
        produce_ticks(
            kafka_settings, topics.raw, [trade("ESZ6", "6004.00", "2026-11-30 23:30", 5)]
        )  # Mon 17:30 CT
        esz6 = last_states(kafka_settings, topics, 7)["ESZ6"]
    assert (esz6.version, esz6.session_open, esz6.trade_count) == (5, "6003.75", 2)
    assert (esz6.previous_close, esz6.change, esz6.session_close) == ("6001", "3", "6004")


@pytest.mark.anyio
async def test_dashboard_api_lists_the_master_with_market_status_and_filters(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    postgres_settings: PostgresSettings,
    redis_settings: RedisSettings,
    unique: str,
) -> None:
    entries = [entry(line) for line in REFERENCE_CSV.splitlines()[2:] if not line.startswith("BAD")]
    publish(kafka_settings, topics.instruments, entries)
    history = HistoryWriterSettings(
        kafka=kafka_settings, topics=topics, postgres=postgres_settings, group_id=f"h{unique}", metrics_port=0
    )
    with running_history_writer(history):
        wait_for(lambda: len(master_rows(postgres_settings)) == 3, 30, "the master in PostgreSQL")
    async with asyncio.timeout(60), serving(make_settings(redis_settings, postgres_settings)) as app:
        everything = (await app.http.get("/api/instruments")).json()
        assert everything["instruments"] == ["AAPL", "BTC-USD", "ESZ6"]
        by_symbol = {details["symbol"]: details for details in everything["details"]}
        assert by_symbol["ESZ6"]["tick_size"] == "0.25" and by_symbol["ESZ6"]["decimals"] == 2
        assert by_symbol["ESZ6"]["calendar"] == {
            "timezone": "America/Chicago",
            "hours": "17:00-16:00",
            "days": "Mon-Fri",
            "pre_open": "",
            "holidays": [],
        }
        assert (by_symbol["BTC-USD"]["market_status"], by_symbol["BTC-USD"]["status_until_ns"]) == ("open", 0)
        assert by_symbol["AAPL"]["calendar"]["holidays"] == ["2026-11-26", "2026-12-25"]
        assert by_symbol["AAPL"]["market_status"] in ("open", "pre_open", "closed")
        assert by_symbol["AAPL"]["status_until_ns"] > time.time_ns()

        by_name = (await app.http.get("/api/instruments", params={"q": "e-MINI"})).json()
        assert by_name["instruments"] == ["ESZ6"]
        crypto = (await app.http.get("/api/instruments", params={"asset_class": "crypto"})).json()
        assert [details["symbol"] for details in crypto["details"]] == ["BTC-USD"]
        refused = await app.http.get("/api/instruments", params={"asset_class": "bonds"})
        assert refused.status_code == 400 and "asset_class" in refused.json()["error"]
