"""A client process: its share of the connections, steered by the parent over a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

import uvloop

from bench.fanout.clients import CLIENTS, ClientStats, WsClient
from bench.fdlimit import raise_fd_limit


@dataclass(frozen=True)
class ClientSpec:
    contender: str
    host: str
    port: int
    path: str
    subscriptions: list[list[str]]  # one list of instruments per connection
    connect_concurrency: int = 50
    keepalive_s: float = 50.0


def client_process(conn: Connection, spec: ClientSpec) -> None:
    """A client process: its share of the connections, steered by the parent over `conn`."""
    raise_fd_limit()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    uvloop.run(_client_main(conn, spec))


async def _client_main(conn: Connection, spec: ClientSpec) -> None:
    loop = asyncio.get_running_loop()
    stats = ClientStats()
    factory = CLIENTS[spec.contender]
    gate = asyncio.Semaphore(spec.connect_concurrency)
    clients: list[WsClient] = []

    async def open_one(instruments: list[str]) -> bool:
        async with gate:
            for attempt in range(3):
                client = factory(spec.host, spec.port, spec.path, instruments, stats)
                try:
                    async with asyncio.timeout(20):
                        await loop.create_connection(lambda c=client: c, spec.host, spec.port)  # type: ignore[misc]
                        await client.ready
                except (OSError, TimeoutError) as exc:
                    client.abort()
                    stats.error(f"connect attempt {attempt + 1}: {exc!r}")
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                clients.append(client)
                return True
        return False

    connect_started = time.monotonic()
    opened = await asyncio.gather(*(open_one(s) for s in spec.subscriptions))
    connect_s = time.monotonic() - connect_started
    gc.collect()
    gc.freeze()  # what was set up stays; the collector only looks at what the updates allocate
    conn.send(("ready", sum(opened), len(opened) - sum(opened), list(stats.errors), connect_s))
    keepalive = asyncio.create_task(_keepalive(clients, spec.keepalive_s))
    try:
        await _obey(conn, stats)
    finally:
        keepalive.cancel()
        for client in clients:
            client.close()
        await asyncio.sleep(0.2)
        for client in clients:
            client.abort()
    with contextlib.suppress(OSError):
        conn.send(("bye",))


async def _obey(conn: Connection, stats: ClientStats) -> None:
    """The parent's commands: the measuring window, a report, stop (or the parent is gone)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            command = await loop.run_in_executor(None, conn.recv)
        except (EOFError, OSError):
            return
        if command[0] == "window":
            stats.window = (command[1], command[2])
        elif command[0] == "report":
            conn.send(("report", stats))
        elif command[0] == "stop":
            return


async def _keepalive(clients: Sequence[WsClient], every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        for client in clients:
            client.keepalive()
