"""WebSocket clients that hold dashboard_api to its ordering guarantees through restarts.

Each client subscribes, reconnects with backoff whenever the connection ends, and resumes: it
subscribes again with `since` = the last version it saw of each instrument, so the server
replays what it missed. It records a violation whenever an update arrives before its snapshot,
an update's version is not exactly one above the last one seen (across reconnects too; where
Redis is lost, only "not above it"), a resumed range does not start right after what it had, a
snapshot's version is below what it already saw, `missing` included, or the server reports
conflation (none of these scenarios is allowed to make a client that slow).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import websockets

MAX_BACKOFF_S = 2.0
PING_EVERY_S = 20.0


@dataclass
class ClientRecord:
    instruments: list[str]
    # Redis lost and rebuilt: the README lets versions jump forward then (never back).
    allow_jumps: bool = False
    connections: int = 0
    closes: Counter[int] = field(default_factory=Counter)  # close codes the server sent
    snapshots: int = 0
    updates: int = 0
    resumed: int = 0  # instruments resumed from history on a reconnect
    gaps: int = 0  # instruments whose history did not reach back (a fresh state instead)
    last: dict[str, int] = field(default_factory=dict)  # the highest version seen per instrument
    violations: list[str] = field(default_factory=list)
    # Every state received (snapshots, replays, live updates) by (instrument, version), as JSON
    # without its stage stamps: checker.audit_seen compares them with the committed states.
    seen: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def apply(self, message: dict[str, Any], baseline: set[str]) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            self._snapshot(message, baseline)
        elif kind == "updates":  # a batch: each element as if it had come alone
            for update in message["updates"]:
                self._update(update, baseline)
        elif kind == "update":
            self._update(message, baseline)
        elif kind in ("error", "conflated"):
            self.violations.append(f"{kind} from the server: {message}")

    def _snapshot(self, message: dict[str, Any], baseline: set[str]) -> None:
        self.snapshots += 1
        for state in message["states"]:
            self._see(state)
            self._rebase(state["instrument"], int(state["version"]), baseline)
        for name in message["missing"]:
            self._rebase(name, 0, baseline)
        for name, span in message["resumed"].items():
            self.resumed += 1
            expected = self.last.get(name, 0) + 1
            if span["from"] != expected and not (self.allow_jumps and span["from"] > expected):
                self.violations.append(f"resumed {name} from v{span['from']}, expected v{expected}")
            baseline.add(name)
        self.gaps += len(message["gaps"])

    def _update(self, message: dict[str, Any], baseline: set[str]) -> None:
        self.updates += 1
        self._see(message["state"])
        name, version = message["instrument"], int(message["version"])
        if name not in baseline:
            self.violations.append(f"update {name} v{version} before its snapshot")
        elif version <= self.last[name] or (version > self.last[name] + 1 and not self.allow_jumps):
            self.violations.append(f"update {name} v{version} after v{self.last[name]}")
        self.last[name] = max(version, self.last.get(name, 0))

    def _see(self, state: dict[str, Any]) -> None:
        self.seen[(state["instrument"], int(state["version"]))] = without_stamps(state)

    def _rebase(self, name: str, version: int, baseline: set[str]) -> None:
        if version < self.last.get(name, 0):
            self.violations.append(f"snapshot {name} v{version} after v{self.last[name]}")
        self.last[name] = max(version, self.last.get(name, 0))
        baseline.add(name)


def without_stamps(state: dict[str, Any]) -> dict[str, Any]:
    """A state's JSON without `times`, the stamps each stage puts on it as it passes."""
    return {name: value for name, value in state.items() if name != "times"}


class WsClients:
    """Several clients on one event loop, on a thread of their own."""

    def __init__(self, url: str, subscriptions: list[list[str]], allow_jumps: bool = False) -> None:
        self.url = url
        self.records = [ClientRecord(sorted(names), allow_jumps) for names in subscriptions]
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="ws-clients", daemon=True)

    def start(self) -> WsClients:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "websocket clients did not stop"

    def caught_up(self, final: dict[str, int]) -> bool:
        return all(
            all(record.last.get(name) == final.get(name) for name in record.instruments)
            for record in self.records
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        await asyncio.gather(*(self._follow(record) for record in self.records))

    async def _follow(self, record: ClientRecord) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                # Batches: a processor failover redoes seconds of ticks at once, a burst that
                # frame-per-update JSON in one Python thread may not read fast enough.
                async with websockets.connect(
                    f"{self.url}?batch=true", open_timeout=5, close_timeout=2
                ) as ws:
                    record.connections += 1
                    backoff = 0.1
                    since = {name: record.last[name] for name in record.instruments if name in record.last}
                    request = {"type": "subscribe", "instruments": record.instruments, "since": since}
                    await ws.send(json.dumps(request))
                    await self._read(ws, record)
            except websockets.ConnectionClosed as closed:
                record.closes[closed.rcvd.code if closed.rcvd else 1006] += 1
            except (OSError, TimeoutError, websockets.WebSocketException):
                pass  # not up (yet): try again after the backoff
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def _read(self, ws: websockets.ClientConnection, record: ClientRecord) -> None:
        baseline: set[str] = set()  # instruments snapshotted on this connection
        last_ping = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_ping > PING_EVERY_S:  # the server's idle timeout
                last_ping = time.monotonic()
                await ws.send('{"type":"ping"}')
            try:
                frame = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            record.apply(json.loads(frame), baseline)
