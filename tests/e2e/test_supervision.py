"""`make run`'s supervision on real Kafka, Redis and PostgreSQL: every Python service of the
suite is killed with SIGKILL in turn, under a WebSocket client, and comes back.

The suite runs as `make run` runs it (every service in SERVICES, the simulator feeding them),
supervised by `tools.suite.supervise` on a thread with a short backoff. For each service: a new
pid that answers its health endpoint, exactly one restart counted and reported, and no other
service restarted. The client stays connected while the other services die and keeps getting
updates, never skipping or repeating a version; when dashboard_api itself dies, the client
reconnects and resumes from the versions it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from services.ingester.sources.simulator import instrument_names
from tools.isolation import free_port
from tools.suite import SERVICES, RestartDelays, RestartPolicy, Suite, prepare, supervise

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150), pytest.mark.anyio]

API = "dashboard_api"
INSTRUMENTS = instrument_names(4)
# Short delays, so that the test measures the services' recovery, not the policy's patience.
FAST = RestartDelays(initial_s=0.2, max_s=1.0, reset_after_s=60.0)
# A restarted consumer waits for the broker to drop its dead predecessor from the group (the
# session timeout, 6 s here) and a restarted processor for its dangling transaction to be
# aborted (6 s): the live flow resumes within about 10 s.
RECOVERY_S = 40.0


@pytest.fixture
def suite_env(env_for_services: Callable[..., dict[str, str]]) -> dict[str, str]:
    workers = [name for name in SERVICES if name != API]
    env = env_for_services(
        PROCESSOR_TRANSACTION_TIMEOUT_MS="6000",
        DASHBOARD_API_HOST="127.0.0.1",
        DASHBOARD_API_PORT=str(free_port()),
        INGESTER_INSTRUMENTS=str(len(INSTRUMENTS)),
        INGESTER_RATE="40",
        INGESTER_SEED="11",
        **{f"{name.upper()}_METRICS_HOST": "127.0.0.1" for name in workers},
    )
    # Every worker service serves /healthz on <NAME>_METRICS_PORT; any service added to
    # SERVICES gets one too.
    for name in workers:
        env.setdefault(f"{name.upper()}_METRICS_PORT", str(free_port()))
    prepare(env)
    return env


@dataclass
class Supervised:
    suite: Suite
    policy: RestartPolicy
    reports: list[str] = field(default_factory=list)

    def health_url(self, service: str) -> str:
        port_variable = "DASHBOARD_API_PORT" if service == API else f"{service.upper()}_METRICS_PORT"
        return f"http://127.0.0.1:{self.suite.env[port_variable]}/healthz"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.suite.env['DASHBOARD_API_PORT']}/ws"

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.suite.log_tail(name)}" for name in self.suite.processes)


@pytest.fixture
def supervised(suite_env: dict[str, str], tmp_path: Path) -> Iterator[Supervised]:
    """The whole suite, supervised on a thread until the test ends."""
    running = Supervised(Suite(env=suite_env, log_dir=tmp_path / "logs").start(), RestartPolicy(FAST))
    stop = threading.Event()
    supervisor = threading.Thread(
        target=supervise,
        args=(running.suite, stop, running.policy),
        kwargs={"interval_s": 0.1, "report": running.reports.append},
        name="supervisor",
    )
    supervisor.start()
    try:
        yield running
    finally:
        stop.set()
        supervisor.join(10)
        codes = running.suite.stop()
        print("\n".join(running.reports))
        for name in running.suite.processes:
            print(f"--- {name} log (exit {codes.get(name)}) ---\n{running.suite.log_tail(name)}")
    assert not supervisor.is_alive(), "supervise() did not return once stopped"
    assert codes == dict.fromkeys(running.suite.processes, 0), f"services did not stop cleanly: {codes}"


class Watcher:
    """A WebSocket client of dashboard_api that keeps the last version of each instrument and
    fails on any version skipped or repeated, across connections too."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.versions: dict[str, int] = {}
        self.connections = 0
        self._moved = asyncio.Event()

    async def connect(self) -> ClientConnection:
        """Connect and subscribe; after the first time, resume from the versions held."""
        ws = await websockets.connect(self.url)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        since = dict(self.versions)
        request: dict[str, Any] = {"type": "subscribe", "instruments": INSTRUMENTS}
        await ws.send(json.dumps({**request, "since": since} if since else request))
        self._take_snapshot(json.loads(await asyncio.wait_for(ws.recv(), 10)), since)
        self.connections += 1
        return ws

    def _take_snapshot(self, snapshot: dict[str, Any], since: dict[str, int]) -> None:
        assert snapshot["type"] == "snapshot", snapshot
        assert (snapshot["gaps"], snapshot["ahead"]) == ([], {}), snapshot
        assert {name: span["from"] for name, span in snapshot["resumed"].items()} == {
            name: version + 1 for name, version in since.items()
        }, f"did not resume from {since}: {snapshot}"
        self.versions.update({state["instrument"]: state["version"] for state in snapshot["states"]})
        self.versions.update(dict.fromkeys(snapshot["missing"], 0))

    async def read(self, ws: ClientConnection) -> None:
        """Until the connection ends: each update must be the next version of its instrument."""
        async for frame in ws:
            message = json.loads(frame)
            if message["type"] == "heartbeat":
                continue
            assert message["type"] == "update", message
            name, version = message["instrument"], message["version"]
            assert version == self.versions[name] + 1, (
                f"{name}: version {version} after {self.versions[name]}"
            )
            self.versions[name] = version
            self._moved.set()

    async def all_pass(self, marks: dict[str, int], reader: asyncio.Task[None], timeout_s: float) -> None:
        """Until every instrument's version is beyond `marks`, on the connection `reader` reads."""

        async def passed() -> None:
            while any(self.versions[name] <= mark for name, mark in marks.items()):
                self._moved.clear()
                await self._moved.wait()

        waiting = asyncio.ensure_future(passed())
        done, _ = await asyncio.wait(
            {waiting, reader}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiting not in done:
            waiting.cancel()
            if reader in done:
                reader.result()  # the assertion that ended it, if any
                raise AssertionError(f"the connection closed before every instrument passed {marks}")
            raise AssertionError(f"not every instrument passed {marks} in {timeout_s}s: {self.versions}")


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll `check` (a health endpoint: nothing to await but its answer) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.1)


async def answers(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def kill_and_await_restart(
    run: Supervised, http: httpx.AsyncClient, service: str
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """SIGKILL `service`; return it and the process the supervisor put in its place, healthy."""
    killed = run.suite.processes[service]
    killed.send_signal(signal.SIGKILL)

    async def back() -> bool:
        return run.suite.processes[service] is not killed and await answers(http, run.health_url(service))

    await eventually(back, RECOVERY_S, f"{service} to be restarted and healthy\n{run.logs()}")
    return killed, run.suite.processes[service]


def check_restart_recorded(
    run: Supervised, service: str, killed: subprocess.Popen[bytes], new: subprocess.Popen[bytes]
) -> None:
    assert new.pid != killed.pid
    assert run.policy.restarts(service) == 1, run.policy.counts()
    assert f"suite: {service} (pid {killed.pid}) ended, killed by SIGKILL; restart #1 in 0.2 s" in run.reports
    assert f"suite: {service} restarted (pid {new.pid})" in run.reports


async def test_each_service_killed_comes_back_and_the_client_keeps_its_updates(
    supervised: Supervised,
) -> None:
    run = supervised
    others = [name for name in SERVICES if name != API]

    try:
        async with httpx.AsyncClient(timeout=2) as http:
            for service in SERVICES:
                await eventually(lambda s=service: answers(http, run.health_url(s)), 60, f"{service} healthy")
            api = run.health_url(API).replace("/healthz", "/readyz")
            await eventually(lambda: answers(http, api), 60, "dashboard_api ready")
            watcher = Watcher(run.ws_url)
            ws = await watcher.connect()
            reader = asyncio.create_task(watcher.read(ws))
            await watcher.all_pass(dict.fromkeys(INSTRUMENTS, 0), reader, 60)

            for service in others:
                killed, new = await kill_and_await_restart(run, http, service)
                await watcher.all_pass(dict(watcher.versions), reader, RECOVERY_S)
                check_restart_recorded(run, service, killed, new)
                assert not reader.done() and watcher.connections == 1, (
                    f"the client lost its connection ({service})"
                )

            killed, new = await kill_and_await_restart(run, http, API)
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(reader, 10)  # the connection died with its server
            held = dict(watcher.versions)
            await eventually(lambda: answers(http, api), RECOVERY_S, "the new dashboard_api ready")
            ws = await watcher.connect()  # asserts the resume from `held`
            reader = asyncio.create_task(watcher.read(ws))
            await watcher.all_pass(held, reader, RECOVERY_S)
            check_restart_recorded(run, API, killed, new)
            assert watcher.connections == 2
            await ws.close()
            await reader
    except websockets.ConnectionClosedError:
        pytest.fail("the client's connection broke with an error")
    assert run.policy.counts() == dict.fromkeys(SERVICES, 1), "a service restarted that was not killed"
