"""Two of everything behind a real load balancer: HAProxy, started from the project's own
configuration (deploy/haproxy/haproxy.cfg), in front of two dashboard_api instances, with two
processors and two cache_updaters behind them, under load.

WebSocket clients connect through HAProxy only. One dashboard_api is killed with SIGKILL: its
clients reconnect through HAProxy to the other instance and resume from the versions they hold.
That instance is stopped later (SIGTERM: it drains), and every client moves back to the first,
restarted meanwhile. A processor and a cache_updater are killed in between. The clients'
records must show no gap, no repeat and no update before its snapshot, and the checker must
find nothing lost or counted twice in any store (README "Guarantees").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tapewire.settings import KafkaSettings
from tests.faults.checker import Stores, Summary, audit_seen, verify
from tests.faults.harness import Pipeline, pace, wait_flowing, wait_ready
from tests.faults.test_faults import (
    LOAD_END_TIMEOUT_S,
    NAMES,
    PROCESSORS,
    Pipelines,
    audit_clients,
    conclude,
    eventually,
    start_load,
)
from tests.faults.wsclients import WsClients
from tools.devstack.haproxy import LoadBalancer
from tools.isolation import free_port

pytestmark = pytest.mark.faults

DASHBOARDS = ("dashboard_api", "dashboard_api-2")
SUBSCRIPTIONS = [NAMES, NAMES[:10], NAMES[8:], NAMES[:5], NAMES[5:15], NAMES[15:]]


def live_sessions(port: str) -> int | None:
    """WebSocket sessions open on the dashboard_api instance at `port`; None when it does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "dashboard_api_sessions":
            return int(sum(s.value for s in family.samples if s.labels.get("transport") == "ws"))
    return 0


def all_on(port: str) -> Callable[[], bool]:
    return lambda: live_sessions(port) == len(SUBSCRIPTIONS)


def test_two_of_everything_behind_haproxy(
    pipelines: Pipelines,
    fault_env: dict[str, str],
    stores: Stores,
    kafka_settings: KafkaSettings,
    tmp_path: Path,
) -> None:
    ports = {"dashboard_api": fault_env["DASHBOARD_API_PORT"], "dashboard_api-2": str(free_port())}
    # A failover releases seconds of ticks at once to the client that watches everything.
    pipeline: Pipeline = pipelines({**fault_env, "DASHBOARD_API_SEND_QUEUE_SIZE": "16384"})
    for instance in (*PROCESSORS, "history_writer", "cache_updater", "cache_updater-2"):
        pipeline.start(instance)
    for instance, port in ports.items():
        pipeline.start(instance, {"DASHBOARD_API_PORT": port})
    for port in ports.values():
        wait_ready(f"http://127.0.0.1:{port}", pipeline)
    balancer = LoadBalancer(free_port(), [f"127.0.0.1:{port}" for port in ports.values()], tmp_path / "lb")
    balancer.start()
    try:
        # Both instances are up for HAProxy once a health check has passed on each.
        wait_ready(balancer.url, pipeline)
        clients = WsClients(f"ws://127.0.0.1:{balancer.port}/ws", SUBSCRIPTIONS).start()
        spread = eventually(
            lambda: sum(live_sessions(port) or 0 for port in ports.values()) == len(SUBSCRIPTIONS), 30
        )
        assert spread is not None, "the clients did not all connect through HAProxy"
        counts = {instance: live_sessions(port) for instance, port in ports.items()}
        # leastconn: the clients are shared out, none of the instances idles.
        assert all(counts.values()), f"HAProxy did not spread the clients: {counts}"

        load = start_load(kafka_settings, stores.topics, rate=300, duration_s=34)
        wait_flowing(stores, NAMES, pipeline)
        wait_for_all = 20.0
        started = time.monotonic()

        pace(started + 4.0)
        pipeline.kill9("dashboard_api")
        moved_after_kill = eventually(all_on(ports["dashboard_api-2"]), wait_for_all)
        pipeline.restart("dashboard_api")
        wait_ready(f"http://127.0.0.1:{ports['dashboard_api']}", pipeline)

        pace(started + 12.0)
        for instance in ("processor-2", "cache_updater-2"):
            pipeline.kill9(instance)
            pipeline.restart(instance)

        pace(started + 18.0)
        code = pipeline.terminate("dashboard_api-2", 30)
        moved_after_stop = eventually(all_on(ports["dashboard_api"]), wait_for_all)
        pipeline.restart("dashboard_api-2")
        wait_ready(f"http://127.0.0.1:{ports['dashboard_api-2']}", pipeline)

        since = max(time.monotonic(), load.finish(LOAD_END_TIMEOUT_S))
        title = (
            "2 of each behind HAProxy: dashboard_api kill -9 and stop, processor and cache_updater kill -9"
        )
        summary = verify(stores, load, Summary(title, 4), since)
        summary.notes.append(f"clients per instance before the faults: {counts}")
        for what, moved in (("its kill", moved_after_kill), ("its drain ended", moved_after_stop)):
            if moved is None:
                summary.problems.append(
                    f"the clients of a dashboard_api did not all reach the other after {what}"
                )
            else:
                summary.notes.append(f"every client on the other dashboard_api {moved:.1f} s after {what}")
        if code != 0:
            summary.problems.append(f"dashboard_api-2 exited {code} on SIGTERM")
        final = {name: load.acked_count(name) for name in NAMES}
        audit_clients(clients, final, summary)
        for n, record in enumerate(clients.records):
            # Each reconnection went through HAProxy to another instance, and resumed from history.
            if record.resumed < len(record.instruments) or record.gaps:
                summary.problems.append(
                    f"ws client {n}: {record.resumed} instruments resumed, {record.gaps} gaps, "
                    f"over {record.connections} connections"
                )
        audit_seen(stores, [record.seen for record in clients.records], summary)
    finally:
        balancer.stop()
    conclude(pipeline, summary)
