"""Fault injection: the real services as processes, under load, while things break.

Each test feeds sequence-numbered ticks at a fixed rate, breaks something on a schedule (kill -9,
SIGTERM, an empty Redis, PostgreSQL refusing connections), then lets the pipeline catch up and
has the checker compare every store with what the broker acknowledged. README "Guarantees" is
the specification: nothing lost, nothing counted twice, order kept, live prices independent of
PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import httpx
import psycopg
import pytest
import redis
from pydantic import SecretStr

from tapewire.db.migrate import migrate
from tapewire.settings import KafkaSettings, PostgresSettings, TopicSettings
from tests.faults.checker import Stores, Summary, audit_seen, report, verify, versions_in_redis
from tests.faults.harness import (
    Pipeline,
    RedisServer,
    pace,
    private_database,
    set_connections_allowed,
    wait_flowing,
    wait_ready,
)
from tests.faults.loadgen import LoadGen, LoadProfile
from tests.faults.wsclients import WsClients
from tests.support import wait_for

pytestmark = pytest.mark.faults

Pipelines = Callable[[Mapping[str, str]], Pipeline]
NAMES = LoadProfile().names()
PROCESSORS = ("processor", "processor-2")
LOAD_END_TIMEOUT_S = 120.0


def start_load(kafka: KafkaSettings, topics: TopicSettings, rate: float, duration_s: float) -> LoadGen:
    return LoadGen(kafka, topics.raw, LoadProfile(rate=rate, duration_s=duration_s)).start()


def conclude(pipeline: Pipeline, summary: Summary) -> None:
    """Stop the services (each must exit 0), report, and fail with their logs if anything is wrong."""
    running_before = set(pipeline.suite.processes) - set(pipeline.exited())
    codes = pipeline.stop()
    unclean = {name: code for name, code in codes.items() if code != 0 or name not in running_before}
    if unclean:
        summary.problems.append(f"services that had ended or did not stop cleanly: {unclean}")
    text = report(summary)
    assert summary.ok, f"{text}\n{pipeline.logs()}"


def eventually(condition: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until `condition` held, or None when it did not within `timeout_s`."""
    started = time.monotonic()
    try:
        wait_for(condition, timeout_s, "condition")
    except AssertionError:
        return None
    return time.monotonic() - started


def assert_running(pipeline: Pipeline) -> None:
    assert not pipeline.exited(), f"a service ended: {pipeline.exited()}\n{pipeline.logs()}"


def test_processor_kill9_repeatedly(
    pipelines: Pipelines, fault_env: dict[str, str], stores: Stores, kafka_settings: KafkaSettings
) -> None:
    """Two processors, one of them killed with SIGKILL every 4 s in turn and restarted at once,
    under WebSocket clients: the live path reads uncommitted states, and every state a client
    saw must be the committed one of its version."""
    kills, interval_s = 10, 4.0
    # A kill every 4 s under a 6 s session timeout: a rebalance releases up to ~6 s of ticks
    # (~2,400 versions) at once to the client that watches everything, more than the default
    # send queue; this test is about what clients see, not the slow-client ladder.
    pipeline = pipelines({**fault_env, "DASHBOARD_API_SEND_QUEUE_SIZE": "16384"})
    for instance in (*PROCESSORS, "history_writer", "cache_updater", "dashboard_api"):
        pipeline.start(instance)
    port = fault_env["DASHBOARD_API_PORT"]
    wait_ready(f"http://127.0.0.1:{port}", pipeline)
    clients = WsClients(f"ws://127.0.0.1:{port}/ws", [NAMES, NAMES[:10], NAMES[8:]]).start()
    load = start_load(kafka_settings, stores.topics, rate=400, duration_s=50)
    wait_flowing(stores, NAMES, pipeline)
    wait_for(lambda: all(map(pipeline.assigned, PROCESSORS)), 60, "both processors to own partitions")
    started = time.monotonic()
    for n in range(kills):
        pace(started + (n + 1) * interval_s)
        assert_running(pipeline)
        victim = PROCESSORS[n % 2]
        pipeline.kill9(victim)
        pipeline.restart(victim)
    since = max(time.monotonic(), load.finish(LOAD_END_TIMEOUT_S))
    final = {name: load.acked_count(name) for name in NAMES}
    # The clients' thread shares this process's interpreter: let them take the last failover's
    # burst before the checker's reading holds it.
    caught_up = eventually(lambda: clients.caught_up(final), 60)
    summary = verify(stores, load, Summary(f"processor kill -9 x{kills} (2 instances)", kills), since)
    restores = sum(pipeline.log_count(name, '"msg": "states restored"') for name in PROCESSORS)
    summary.notes.append(f"partitions restored from the changelog {restores} times")
    summary.notes.append(
        "ws clients never caught up"
        if caught_up is None
        else f"ws clients caught up {caught_up:.1f} s after the load"
    )
    audit_clients(clients, final, summary, restarted=False)
    audit_seen(stores, [record.seen for record in clients.records], summary)
    conclude(pipeline, summary)


def test_cache_updater_kill9_and_dashboard_restart(
    pipelines: Pipelines, fault_env: dict[str, str], stores: Stores, kafka_settings: KafkaSettings
) -> None:
    """cache_updater and history_writer killed twice each, dashboard_api restarted under three
    subscribed WebSocket clients."""
    pipeline = pipelines(fault_env)
    for instance in ("processor", "history_writer", "cache_updater", "dashboard_api"):
        pipeline.start(instance)
    port = fault_env["DASHBOARD_API_PORT"]
    wait_ready(f"http://127.0.0.1:{port}", pipeline)
    clients = WsClients(f"ws://127.0.0.1:{port}/ws", [NAMES, NAMES[:10], NAMES[8:]]).start()
    load = start_load(kafka_settings, stores.topics, rate=300, duration_s=28)
    wait_flowing(stores, NAMES, pipeline)
    started = time.monotonic()
    for at in (3.0, 11.0):
        pace(started + at)
        assert_running(pipeline)
        for instance in ("cache_updater", "history_writer"):
            pipeline.kill9(instance)
            pipeline.restart(instance)
    pace(started + 16.0)
    code = pipeline.terminate("dashboard_api", 30)
    pipeline.restart("dashboard_api")
    wait_ready(f"http://127.0.0.1:{port}", pipeline)
    since = max(time.monotonic(), load.finish(LOAD_END_TIMEOUT_S))
    title = "cache_updater and history_writer kill -9 x2, dashboard_api restart"
    summary = verify(stores, load, Summary(title, 5), since)
    if code != 0:
        summary.problems.append(f"dashboard_api exited {code} on SIGTERM")
    final = {name: load.acked_count(name) for name in NAMES}
    audit_clients(clients, final, summary)
    audit_seen(stores, [record.seen for record in clients.records], summary)
    conclude(pipeline, summary)


def audit_clients(
    clients: WsClients, final: dict[str, int], summary: Summary, restarted: bool = True
) -> None:
    if eventually(lambda: clients.caught_up(final), 30) is None:
        summary.problems.append("a WebSocket client never saw the final versions")
    clients.stop()
    for n, record in enumerate(clients.records):
        summary.notes.append(
            f"ws client {n}: {len(record.instruments)} instruments, {record.connections} connections,"
            f" {record.snapshots} snapshots, {record.updates} updates, {len(record.violations)} violations,"
            f" closed by the server {dict(record.closes) or 'never'}"
        )
        summary.problems += [f"ws client {n}: {violation}" for violation in record.violations[:5]]
        if restarted and record.connections < 2:
            summary.problems.append(f"ws client {n} never reconnected: the restart did not reach it")


def test_redis_restarted_empty(
    private_redis: RedisServer,
    pipelines: Pipelines,
    fault_env: dict[str, str],
    stores: Stores,
    kafka_settings: KafkaSettings,
) -> None:
    """Redis dies and comes back empty; the cache rebuilds itself, quiet instruments included."""
    env = {**fault_env, "REDIS_URL": private_redis.url}
    stores = replace(
        stores, redis_settings=stores.redis_settings.model_copy(update={"url": SecretStr(private_redis.url)})
    )
    pipeline = pipelines(env)
    for instance in ("processor", "history_writer", "cache_updater", "dashboard_api"):
        pipeline.start(instance)
    base = f"http://127.0.0.1:{env['DASHBOARD_API_PORT']}"
    wait_ready(base, pipeline)
    ws_url = f"ws://127.0.0.1:{env['DASHBOARD_API_PORT']}/ws"
    clients = WsClients(ws_url, [NAMES, NAMES[:10], NAMES[8:]], allow_jumps=True).start()
    load = start_load(kafka_settings, stores.topics, rate=300, duration_s=22)
    wait_flowing(stores, NAMES, pipeline)
    quiet, quiet_settled = silence_some(stores, load)
    private_redis.kill()
    private_redis.start()
    restarted = time.monotonic()
    summary = Summary("Redis killed and restarted empty", 1)
    rebuilt = eventually(quiet_settled, 30)
    if rebuilt is None:
        summary.problems.append(f"the quiet instruments {quiet} never came back to Redis after the restart")
    else:
        summary.notes.append(f"quiet instruments back in Redis {rebuilt:.1f} s after the restart")
    audit_after_redis_loss(pipeline, stores, load, restarted, base, clients, summary)
    conclude(pipeline, summary)


def silence_some(stores: Stores, load: LoadGen) -> tuple[list[str], Callable[[], bool]]:
    """Five instruments stop trading 3 s from now; returns them once their last states are in
    Redis, and the check of that. After a loss of Redis they come back only if the cache is
    rebuilt: no tick of theirs will write them again."""
    quiet = NAMES[:5]
    pace(time.monotonic() + 3.0)
    load.silence(quiet)

    def quiet_settled() -> bool:
        try:
            return versions_in_redis(stores, quiet) == {name: load.acked_count(name) for name in quiet}
        except (redis.RedisError, redis.exceptions.RedisClusterException):
            return False

    wait_for(quiet_settled, 30, "the quiet instruments' last states to reach Redis")
    return quiet, quiet_settled


def audit_after_redis_loss(
    pipeline: Pipeline,
    stores: Stores,
    load: LoadGen,
    lost: float,
    base: str,
    clients: WsClients,
    summary: Summary,
    catch_up_timeout_s: float = 30,
) -> None:
    """Redis lost data at `lost` (monotonic) under load, and no service restarted: every store
    complete once the load ends, `/api/snapshot` complete, and what the clients (which did not
    reconnect for it) saw consistent with the committed stream."""
    assert_running(pipeline)
    since = max(lost, load.finish(LOAD_END_TIMEOUT_S))
    verify(stores, load, summary, since, catch_up_timeout_s=catch_up_timeout_s)
    final = {name: load.acked_count(name) for name in NAMES}
    audit_snapshot(base, final, summary)
    audit_clients(clients, final, summary, restarted=False)
    audit_seen(stores, [record.seen for record in clients.records], summary)


def audit_snapshot(base: str, final: dict[str, int], summary: Summary) -> None:
    answer = httpx.get(f"{base}/api/snapshot", timeout=10)
    if answer.status_code != 200:
        summary.problems.append(f"/api/snapshot answered {answer.status_code}: {answer.text[:200]}")
        answer = httpx.get(f"{base}/api/snapshot", timeout=10)  # the data itself, for the report
        if answer.status_code != 200:
            return
    body = answer.json()
    summary.notes.append(f"/api/snapshot: {len(body['states'])} states, {len(body['missing'])} missing")
    versions = {state["instrument"]: state["version"] for state in body["states"]}
    if versions != final or body["missing"]:
        wrong = {name: versions.get(name) for name, v in final.items() if versions.get(name) != v}
        summary.problems.append(f"/api/snapshot is incomplete or stale: {wrong}, missing {body['missing']}")


def test_postgres_unavailable(
    pipelines: Pipelines,
    fault_env: dict[str, str],
    stores: Stores,
    kafka_settings: KafkaSettings,
    stack_env: dict[str, str],
    unique: str,
) -> None:
    """PostgreSQL refuses connections for 10 s: live prices keep flowing, history catches up."""
    server, database = stack_env["DATABASE_URL"], f"t{unique}"
    with private_database(server, database) as url:
        postgres = PostgresSettings(url=SecretStr(url), schema_name=stores.postgres.schema_name)
        migrate(postgres)
        stores = replace(stores, postgres=postgres)
        pipeline = pipelines({**fault_env, "DATABASE_URL": url})
        for instance in ("processor", "history_writer", "cache_updater"):
            pipeline.start(instance)
        load = start_load(kafka_settings, stores.topics, rate=300, duration_s=22)
        wait_flowing(stores, NAMES, pipeline)
        pace(time.monotonic() + 3.0)
        summary = Summary("PostgreSQL refusing connections for 10 s", 1)
        before = versions_in_redis(stores, NAMES)
        ended = set_connections_allowed(server, database, allowed=False)
        closed = time.monotonic()
        try:
            confirm_refused(url, summary)
            pace(closed + 10.0)
            during = versions_in_redis(stores, NAMES)
        finally:
            set_connections_allowed(server, database, allowed=True)
        reopened = time.monotonic()
        assert_running(pipeline)
        advanced = [name for name in NAMES if during.get(name, 0) > before.get(name, 0)]
        summary.notes.append(
            f"closed {reopened - closed:.1f} s, {ended} connections ended; Redis advanced on"
            f" {len(advanced)}/{len(NAMES)} instruments meanwhile"
            f" (+{sum(during.values()) - sum(before.values())} versions)"
        )
        failures = pipeline.log_count("history_writer", '"error": "PostgreSQL')
        summary.notes.append(f"history writer batches failed and retried: {failures}")
        if not failures:
            summary.problems.append("the history writer never met the outage: nothing was tested")
        if len(advanced) < len(NAMES):
            summary.problems.append(
                f"live prices stalled while PostgreSQL was away: {sorted(set(NAMES) - set(advanced))}"
            )
        since = max(reopened, load.finish(LOAD_END_TIMEOUT_S))
        verify(stores, load, summary, since)
        conclude(pipeline, summary)


def confirm_refused(url: str, summary: Summary) -> None:
    """The fault is real: a new connection to the database fails."""
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        return
    summary.problems.append("the database still accepted connections: the outage was not injected")


def test_rolling_restart_sigterm(
    pipelines: Pipelines, fault_env: dict[str, str], stores: Stores, kafka_settings: KafkaSettings
) -> None:
    """Each service in turn gets SIGTERM, must exit 0 in time, and is started again. Two
    cache_updaters split the processed partitions, so scale-in and scale-out happen for both
    consumer stages."""
    order = (*PROCESSORS, "history_writer", "cache_updater", "cache_updater-2", "dashboard_api")
    pipeline = pipelines(fault_env)
    for instance in order:
        pipeline.start(instance)
    base = f"http://127.0.0.1:{fault_env['DASHBOARD_API_PORT']}"
    wait_ready(base, pipeline)
    load = start_load(kafka_settings, stores.topics, rate=300, duration_s=26)
    wait_flowing(stores, NAMES, pipeline)
    wait_for(lambda: all(map(pipeline.assigned, PROCESSORS)), 60, "both processors to own partitions")
    codes: dict[str, int | None] = {}
    for instance in order:
        pace(time.monotonic() + 2.5)
        assert_running(pipeline)
        codes[instance] = pipeline.terminate(instance, 30)
        pipeline.restart(instance)
    wait_ready(base, pipeline)
    since = max(time.monotonic(), load.finish(LOAD_END_TIMEOUT_S))
    summary = verify(
        stores, load, Summary(f"rolling restart with SIGTERM ({', '.join(order)})", len(order)), since
    )
    summary.notes.append(f"exit codes on SIGTERM: {codes}")
    if any(code != 0 for code in codes.values()):
        summary.problems.append(f"a service did not exit 0 within 30 s of SIGTERM: {codes}")
    conclude(pipeline, summary)
