"""schemathesis against dashboard_api's own OpenAPI: whatever a client sends that the schema
describes (and, in negative mode, what it does not), the answer is never a 5xx, its status is
documented, and its body matches the documented schema (the error shape included).

The server is the real one (uvicorn, Redis and PostgreSQL, a few states and bars stored); the
schema is the one it serves. schemathesis runs pytest-free: each operation's cases come from its
hypothesis strategy, are sent with `requests` from a worker thread while the server runs in the
test's event loop, and every failure is collected and reported at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import jwt
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg import sql
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.dashboard_api.settings import DashboardApiSettings
from tapewire.auth import AuthSettings
from tapewire.db import connect_kwargs
from tapewire.settings import PostgresSettings, RedisSettings
from tapewire.v1 import market_pb2 as pb
from tests.integration.dashboard_support import Cache, make_settings, serving

pytestmark = [pytest.mark.hostile, pytest.mark.timeout(120), pytest.mark.anyio]

# Per operation and generation mode: ~10 operations x 2 modes (+ the seeded ones) stay well
# under a minute against a local server.
MAX_EXAMPLES = 40
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
SECRET = "hostile-test-secret-long-enough-for-hs256"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
INSTRUMENTS = ("AAPL", "MSFT", "BRK.B")
# Every operation but the admin POSTs (see fuzz).
FUZZED = {
    "GET /api/instruments",
    "GET /api/snapshot",
    "GET /api/bars",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /admin/connections",
}


def store_bars(postgres: PostgresSettings, instrument: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(**connect_kwargs(postgres), autocommit=True) as conn:
        for table, step in (("bars_1s", timedelta(seconds=1)), ("bars_1m", timedelta(minutes=1))):
            for number in range(1, 4):
                price = Decimal(100 + number)
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (instrument, start_time, open, high, low, close, volume,"
                        " trade_count, version, vwap) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    ).format(sql.Identifier(table)),
                    (
                        instrument,
                        start + number * step,
                        price,
                        price + 1,
                        price - 1,
                        price,
                        Decimal("12.000"),
                        number,
                        number,
                        None if number == 1 else Decimal("100.250"),  # an unknown VWAP is null
                    ),
                )


@dataclass
class Findings:
    # The first report of each distinct failure, by (operation, failure title).
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    # The statuses each operation answered with: proof that the cases reached the server.
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))


def fuzz(
    raw_schema: dict[str, Any],
    base_url: str,
    headers: dict[str, str] | None = None,
    max_examples: int = MAX_EXAMPLES,
) -> Findings:
    # The admin POSTs change the server's state for every later case: a drain makes it refuse
    # new work (and /readyz answer 503), a pause stops updates, a disconnect closes a session.
    # Fuzzing them would test the fallout, not the endpoints; test_http_edges covers them.
    schema = schemathesis.openapi.from_dict(raw_schema).exclude(method="POST", path_regex="^/admin/")
    findings = Findings()
    with requests.Session() as session:
        session.trust_env = False  # no proxy between the test and 127.0.0.1
        for result in schema.get_all_operations():
            operation = result.ok()
            strategies = [operation.as_strategy()]
            names = {parameter.name for parameter in operation.query}
            if names:  # nothing to get wrong in a request without parameters
                strategies.append(operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE))
            # Random instrument names are almost all refused: also ask for the stored ones.
            if "instrument" in names:
                strategies += [operation.as_strategy(query={"instrument": name}) for name in INSTRUMENTS]
            if "instruments" in names:
                strategies.append(operation.as_strategy(query={"instruments": ",".join(INSTRUMENTS)}))
            for strategy in strategies:
                explore(
                    strategy, max_examples, lambda case: check(case, base_url, session, headers, findings)
                )
    return findings


def explore(strategy: st.SearchStrategy[Any], max_examples: int, probe: Callable[[Any], None]) -> None:
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def explored(case: Any) -> None:
        probe(case)

    explored()


def check(
    case: Any, base_url: str, session: requests.Session, headers: dict[str, str] | None, findings: Findings
) -> None:
    response = case.call(base_url=base_url, session=session, headers=headers, timeout=10)
    findings.statuses[case.operation.label][response.status_code] += 1
    try:
        case.validate_response(
            response, checks=CHECKS, headers=headers, transport_kwargs={"base_url": base_url}
        )
    except FailureGroup as group:
        for failure in group.exceptions:
            findings.failures.setdefault((case.operation.label, failure.title), group.message)


async def test_every_operation_answers_as_its_schema_says(
    dashboard_settings: DashboardApiSettings, postgres_settings: PostgresSettings, cache: Cache
) -> None:
    for version, name in enumerate(INSTRUMENTS, start=1):
        cache.put(name, version, last_price="187.42", bid_price="187.40", spread="0.02", spread_bps=1.07)
    bar = pb.Bar(start_time_ns=T0, open="1.5", high="2", low="1", close="1.75", volume="10", trade_count=3)
    cache.put("BARS", 1, last_price="1.75", bar_1s=bar, bar_1m=bar)
    cache.put("ZERO", 1)  # every decimal unknown: nulls where the schema must allow them
    store_bars(postgres_settings, "AAPL")

    async with asyncio.timeout(80):
        async with serving(dashboard_settings) as app:
            response = await app.http.get("/openapi.json")
            assert response.status_code == 200
            findings = await asyncio.to_thread(fuzz, response.json(), str(app.http.base_url))
        statuses = assert_no_failures(findings)
        never_ok = {label for label, seen in statuses.items() if not any(200 <= s < 300 for s in seen)}
        assert not never_ok, f"no case of {sorted(never_ok)} was accepted: {statuses}"


def assert_no_failures(findings: Findings) -> dict[str, dict[int, int]]:
    """The statuses each operation answered with, once there is no failure to report."""
    failures = findings.failures
    assert not failures, f"{len(failures)} failure(s):\n\n" + "\n\n".join(failures.values())
    statuses = {label: dict(seen) for label, seen in findings.statuses.items()}
    assert set(statuses) == FUZZED, statuses
    return statuses


def bearer(**claims: Any) -> dict[str, str]:
    payload = {"sub": "mallory", "exp": int(time.time()) + 300, **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


async def test_the_refusals_of_who_calls_are_documented_too(
    redis_settings: RedisSettings, postgres_settings: PostgresSettings
) -> None:
    """With auth on: no token (401 everywhere but the probes), an expired one (401), a valid one
    without the admin role (403 on /admin)."""
    settings = make_settings(
        redis_settings, postgres_settings, auth=AuthSettings(hs256_secret=SecretStr(SECRET))
    )

    async with asyncio.timeout(80):
        async with serving(settings) as app:
            response = await app.http.get("/openapi.json", headers=bearer())
            assert response.status_code == 200
            base = str(app.http.base_url)
            for headers, refused in (({}, 401), (bearer(exp=1), 401), (bearer(), 403)):
                findings = await asyncio.to_thread(fuzz, response.json(), base, headers, 10)
                statuses = assert_no_failures(findings)
                assert statuses["GET /admin/connections"].get(refused), (headers, statuses)
