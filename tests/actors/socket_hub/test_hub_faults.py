"""Room traffic between two nodes while Redis is paused, cut off, or starved of connections.

A sender on node A posts at 40 messages a second to a room with members on
both nodes while the fault lasts about a second and a half, then for a while
after. Judged by the history checker against what was acknowledged and what
the room's Redis stream holds at the end: no member misses an acknowledged
message, none gets one twice or out of order, none gets a message that was
never stored. Sends during the fault either fail or go to node A's members
live (``degraded_sends``); both are allowed, losing an acknowledged one is not.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import redis.asyncio

from actors.socket_hub import HUB, HubKeys, HubSettings
from runtime.testing import FaultProxy, RedisServer

from .nodes_support import Member, check_room, poll_until, serve_nodes, wait_delivered

pytestmark = [pytest.mark.redis, pytest.mark.e2e, pytest.mark.outage]

ROOM = "public:faults"
RATE = 40.0


def _answers(ref: str, frame: dict[str, Any]) -> bool:
    return frame.get("ref") == ref


async def _post(sender: Member, index: int) -> int | None:
    """Send one message; its offset when acknowledged with one, else ``None``."""
    ref = f"f-{index}"
    await sender.send_frame({"type": "send_message", "room": ROOM, "message": ref, "ref": ref})
    try:
        answer = await sender.wait_for(functools.partial(_answers, ref), timeout_seconds=15)
    except TimeoutError:
        return None
    if answer["type"] != "ack":
        return None  # refused while Redis was away (busy, unavailable): never acknowledged
    offset: int | None = answer.get("offset")
    return offset


async def _stored(redis_url: str) -> list[int]:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = await client.xrange(HubKeys("switchyard").history(ROOM)) or []
    finally:
        await client.aclose()
    return [int(str(entry_id).split("-")[1]) for entry_id, _ in entries]


Fault = Callable[[], contextlib.AbstractAsyncContextManager[None]]


async def _run(redis_url: str, server: RedisServer, fault: Fault) -> None:
    hub = HubSettings(gap_wait_seconds=0.1, history_size=10_000)
    nodes = serve_nodes(2, redis_url, hub=hub)
    async with nodes as (a, b), anyio.create_task_group() as tg:
        sender, near, far = Member("sender", a.url), Member("near", a.url), Member("far", b.url)
        for member in (sender, near, far):
            await member.connect()
            tg.start_soon(member.pump)
            await member.join(ROOM, ref=1)
        acked: list[int] = []
        index = 0

        async def post_for(seconds: float) -> None:
            nonlocal index
            with anyio.move_on_after(seconds):
                while True:
                    offset = await _post(sender, index)
                    index += 1
                    if offset is not None:
                        acked.append(offset)
                    await anyio.sleep(1 / RATE)

        await post_for(0.5)
        async with fault():
            await post_for(1.5)
        after = len(acked)

        async def recovered() -> bool:  # the fanout came back, and sends land again
            await post_for(0.3)
            return len(acked) > after + 5

        await poll_until(recovered, timeout_seconds=30)
        await post_for(0.5)
        await wait_delivered([near, far], ROOM, acked)
        stored = await _stored(server.url)
        assert set(acked) <= set(stored)
        report = check_room(ROOM, acked, [near, far], stored=stored)
        assert report.acknowledged >= len(acked) > 40
        stats_a = await a.node.context.get(HUB).statistics()
        stats_b = await b.node.context.get(HUB).statistics()
        assert stats_a.lost == stats_b.lost == 0
        felt = (index - len(acked)) + stats_a.gaps + stats_b.gaps + stats_b.refills
        assert felt > 0, "the fault never reached the hub"
        tg.cancel_scope.cancel()


async def test_room_traffic_survives_a_paused_redis(redis_server: RedisServer) -> None:
    @contextlib.asynccontextmanager
    async def paused() -> AsyncIterator[None]:
        redis_server.pause()
        try:
            yield
        finally:
            redis_server.resume()

    await _run(redis_server.url, redis_server, paused)


async def test_room_traffic_survives_redis_cut_off_by_the_fault_proxy(
    redis_server: RedisServer,
) -> None:
    async with FaultProxy("127.0.0.1", redis_server.port) as proxy:

        @contextlib.asynccontextmanager
        async def blackholed() -> AsyncIterator[None]:
            proxy.blackhole()
            try:
                yield
            finally:
                proxy.heal()

        await _run(proxy.url_for("redis"), redis_server, blackholed)


async def test_room_traffic_survives_redis_starved_of_connections(
    redis_server: RedisServer,
) -> None:
    @contextlib.asynccontextmanager
    async def starved() -> AsyncIterator[None]:
        with redis_server.starve(spare=0):
            redis_server.client_kill("pubsub")  # the fanout must reconnect into the starvation
            yield

    await _run(redis_server.url, redis_server, starved)
