"""The python-socketio fan-out peer: an AsyncServer on aiohttp with the Redis client manager.

    python -m bench.peers.socketio_server --port 8100 --redis-url redis://127.0.0.1:16379/0 \
        --channel bench1234_socketio

The idiomatic multi-process setup of python-socketio: clients connect (Socket.IO over a
WebSocket), send a `subscribe` event with a list of instruments and are put in one room per
instrument (the event's return value is its acknowledgement); any process publishes with a
write-only `AsyncRedisManager` on the same Redis channel (`publisher()` below), and every server
relays each emit to the sids of that room, encoding the packet once per emit. aiohttp serves it
on uvloop (what uvicorn, and so dashboard_api, runs on too). Nothing else is configured:
default ping interval and timeout, no compression.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from typing import Any

import socketio  # type: ignore[import-untyped]
import uvloop
from aiohttp import web

from bench.fdlimit import raise_fd_limit

EVENT_SUBSCRIBE = "subscribe"
EVENT_UPDATE = "update"


def create_app(redis_url: str, channel: str) -> tuple[web.Application, Any]:
    manager = socketio.AsyncRedisManager(redis_url, channel=channel)
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager, cors_allowed_origins="*")

    @sio.on(EVENT_SUBSCRIBE)  # type: ignore[untyped-decorator]
    async def subscribe(sid: str, instruments: object) -> dict[str, Any]:
        if not isinstance(instruments, list) or not all(isinstance(i, str) for i in instruments):
            return {"error": "instruments: a list of strings"}
        for instrument in instruments:
            await sio.enter_room(sid, instrument)
        return {"subscribed": len(instruments)}

    app = web.Application()
    sio.attach(app)

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/health", health)
    return app, sio


def publisher(redis_url: str, channel: str) -> Any:
    """A write-only manager: `await publisher(...).emit("update", data, room=instrument)`."""
    return socketio.AsyncRedisManager(redis_url, channel=channel, write_only=True)


async def serve(host: str, port: int, redis_url: str, channel: str, backlog: int) -> None:
    app, _sio = create_app(redis_url, channel)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # A connection storm of thousands of clients: the same listen backlog as uvicorn's default.
    site = web.TCPSite(runner, host, port, backlog=backlog)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--backlog", type=int, default=2048)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.redis_url, args.channel, args.backlog))


if __name__ == "__main__":
    main()
