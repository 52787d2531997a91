"""The client's command lane: one connection, a batch per round trip, the client's gate."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio
import redis.exceptions

from runtime._clock import SystemClock
from runtime._redis import RedisLink
from runtime._redis_client import DeadlineCounters, DeadlineRedis, RedisLinkClosed

pytestmark = pytest.mark.redis


async def test_a_lane_sends_a_batch_in_order_and_keeps_refusals_in_place(redis_url: str) -> None:
    async with RedisLink(redis_url, clock=SystemClock()) as link, anyio.create_task_group() as tg:
        await tg.start(link.run)
        with anyio.fail_after(5):
            await link.wait_until(True)
        client = link.client
        assert isinstance(client, DeadlineRedis)
        lane = client.lane()
        replies = await lane.execute(
            [
                ("SET", "lane:k", "1"),
                ("INCR", "lane:k"),
                ("HGET", "lane:k", "f"),
                ("GET", "lane:k"),
            ]
        )
        assert replies[1] == 2
        assert isinstance(replies[2], redis.exceptions.ResponseError)  # WRONGTYPE, in place
        assert replies[3] == b"2"  # the connection is still in step after the refusal
        assert client.in_flight == 0
        assert await lane.execute([("GET", "lane:k")]) == [b"2"]  # the same connection again
        tg.cancel_scope.cancel()


async def test_a_lane_is_not_sent_while_the_gate_is_closed(redis_url: str) -> None:
    counters = DeadlineCounters()
    client = DeadlineRedis(
        redis.asyncio.ConnectionPool.from_url(redis_url, max_connections=2),
        max_connections=2,
        deadline_seconds=1.0,
        counters=counters,
        on_timeout=lambda error: None,
        is_open=lambda: False,
    )
    try:
        with pytest.raises(RedisLinkClosed):
            await client.lane().execute([("PING",)])
        assert counters.closed == 1
        assert client.in_flight == 0
    finally:
        await client.aclose()
