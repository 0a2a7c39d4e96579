"""The turns that make dashboard_api's Redis Cluster client wait for a connection instead of
refusing at once (stores/redis_client.py)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import MaxConnectionsError

from services.dashboard_api.stores.redis_client import Turns

pytestmark = pytest.mark.anyio


async def test_a_crowd_waits_its_turn_and_never_exceeds_the_limit() -> None:
    turns = Turns(limit=3, timeout_s=5)
    busy, most = 0, 0

    async def command() -> None:
        nonlocal busy, most
        async with turns.turn():
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.01)
            busy -= 1

    await asyncio.gather(*(command() for _ in range(30)))
    assert most == 3


async def test_a_turn_not_free_in_time_fails_as_redis_unavailable() -> None:
    turns = Turns(limit=1, timeout_s=0.05)
    async with turns.turn():
        other = asyncio.create_task(turns.turn().__aenter__())
        with pytest.raises(MaxConnectionsError):
            await other


async def test_a_command_resent_within_a_pipeline_s_turn_takes_no_second_one() -> None:
    turns = Turns(limit=1, timeout_s=0.05)
    async with turns.turn(), turns.turn():  # a MOVED command sent again by the pipeline: no deadlock
        pass
    async with turns.turn():  # and the turn was given back once
        pass
