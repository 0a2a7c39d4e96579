"""WebSocket clients that hold dashboard_api to its ordering guarantees through restarts.

Each client subscribes, reconnects with backoff whenever the connection ends, and subscribes
again. It records a violation whenever an update arrives before its snapshot, an update's version
is not exactly one above the last one seen on that connection (or, where Redis is lost, not above
it), or a snapshot's version is below what the client already saw, `missing` included (versions
never go back, across reconnects too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import websockets

MAX_BACKOFF_S = 2.0


@dataclass
class ClientRecord:
    instruments: list[str]
    # Redis lost and rebuilt: the README lets versions jump forward then (never back).
    allow_jumps: bool = False
    connections: int = 0
    closes: Counter[int] = field(default_factory=Counter)  # close codes the server sent
    snapshots: int = 0
    updates: int = 0
    last: dict[str, int] = field(default_factory=dict)  # the highest version seen per instrument
    violations: list[str] = field(default_factory=list)

    def apply(self, message: dict[str, Any], baseline: set[str]) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            self.snapshots += 1
            for state in message["states"]:
                self._rebase(state["instrument"], int(state["version"]), baseline)
            for name in message["missing"]:
                self._rebase(name, 0, baseline)
        elif kind == "update":
            self.updates += 1
            name, version = message["instrument"], int(message["version"])
            if name not in baseline:
                self.violations.append(f"update {name} v{version} before its snapshot")
            elif version <= self.last[name] or (version > self.last[name] + 1 and not self.allow_jumps):
                self.violations.append(f"update {name} v{version} after v{self.last[name]}")
            self.last[name] = max(version, self.last.get(name, 0))
        elif kind == "error":
            self.violations.append(f"error from the server: {message}")

    def _rebase(self, name: str, version: int, baseline: set[str]) -> None:
        if version < self.last.get(name, 0):
            self.violations.append(f"snapshot {name} v{version} after v{self.last[name]}")
        self.last[name] = max(version, self.last.get(name, 0))
        baseline.add(name)


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
                async with websockets.connect(self.url, open_timeout=5, close_timeout=2) as ws:
                    record.connections += 1
                    backoff = 0.1
                    await ws.send(json.dumps({"type": "subscribe", "instruments": record.instruments}))
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
        while not self._stop.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            record.apply(json.loads(frame), baseline)
