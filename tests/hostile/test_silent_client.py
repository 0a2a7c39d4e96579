"""A client that stops reading: down the slow-client ladder to 4008, and then really gone.

The close frame of a client that reads nothing is never taken either, so a connection closed
the polite way would keep its descriptor, its slot and whatever was buffered for it until the
client itself goes. The server drops it once `close_timeout_s` has passed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from services.dashboard_api.settings import DashboardApiSettings
from tests.integration.dashboard_support import App, Cache, eventually, serving, subscribe

pytestmark = [pytest.mark.hostile, pytest.mark.timeout(120), pytest.mark.anyio]


async def test_a_client_that_never_reads_is_dropped_after_its_4008_and_gives_back_its_slot(
    dashboard_settings: DashboardApiSettings, cache: Cache
) -> None:
    settings = dashboard_settings.model_copy(
        update={
            "send_queue_size": 8,
            "conflation_timeout_s": 0.3,
            "resync_timeout_s": 0.6,
            "close_timeout_s": 0.5,
        }
    )
    cache.put("BIG", 1)
    stop = threading.Event()

    def publish() -> None:
        version = 2
        while not stop.is_set():
            # ~60 kB of incompressible text per update fills the socket buffers within a few.
            cache.put("BIG", version, venue=os.urandom(30_000).hex())
            version += 1

    async with asyncio.timeout(80):
        async with serving(settings) as app:
            # A tiny receive buffer (set before connect: no autotuning) and a one-frame queue:
            # once its snapshot is read, the client takes nothing more off the socket.
            silent_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            silent_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            silent_socket.connect(("127.0.0.1", app.port))
            async with app.ws(sock=silent_socket, max_queue=1) as silent:
                await subscribe(silent, "BIG")
                with_silent = await app.metric("dashboard_api_open_connections")
                publisher = threading.Thread(target=publish, name="publisher")
                publisher.start()
                try:
                    await eventually(
                        lambda: _at_least(app, "dashboard_api_slow_consumer_disconnects_total", 1),
                        "the silent client's 4008",
                    )
                    # Its close frame cannot be written: the server drops the connection.
                    await eventually(
                        lambda: _at_most(app, "dashboard_api_open_connections", with_silent - 1),
                        "the silent client's connection to be dropped",
                        timeout_s=settings.close_timeout_s + 5,
                    )
                finally:
                    stop.set()
                    await asyncio.to_thread(publisher.join, 10)
            for step in ("conflating", "resyncing", "disconnect"):
                assert await app.metric("dashboard_api_slow_client_steps_total", {"step": step}) == 1


async def _at_least(app: App, name: str, value: float) -> bool:
    return await app.metric(name) >= value


async def _at_most(app: App, name: str, value: float) -> bool:
    return await app.metric(name) <= value
