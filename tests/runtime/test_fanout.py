"""The same behaviour from MemoryFanout and RedisFanout, plus what only Redis can do."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from runtime._clock import SystemClock
from runtime._errors import RedisUnavailable
from runtime._fanout import Fanout, FanoutStatistics, Gap, MemoryFanout, RedisFanout
from runtime._redis import RedisLink
from runtime._redis_server import RedisServer, free_port

# Real sockets are involved, so the real clock with short intervals; every wait is bounded.
FAST: dict[str, Any] = {
    "health_interval_seconds": 0.05,
    "reconnect_base_seconds": 0.01,
    "reconnect_max_seconds": 0.1,
}
WAIT_SECONDS = 10


@contextlib.asynccontextmanager
async def memory_node() -> AsyncIterator[Fanout]:
    fanout = MemoryFanout()
    async with anyio.create_task_group() as tg:
        await tg.start(fanout.run)
        yield fanout
        tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def redis_node(url: str, *, wait_up: bool = True) -> AsyncIterator[RedisFanout]:
    """A link and a fanout running in a task group, as a node runs them."""
    async with (
        RedisLink(url, clock=SystemClock(), **FAST) as link,
        anyio.create_task_group() as tg,
    ):
        await tg.start(link.run)
        fanout = RedisFanout(link)
        await tg.start(fanout.run)
        if wait_up:
            with anyio.fail_after(WAIT_SECONDS):
                await fanout.wait_connected()
        yield fanout
        tg.cancel_scope.cancel()


@dataclass(frozen=True)
class Backend:
    kind: str
    open: Callable[[], AbstractAsyncContextManager[Fanout]]

    def receivers(self, local_subscriptions: int) -> int:
        """What publish() returns: local deliveries (memory) or pub/sub connections (Redis)."""
        if self.kind == "memory":
            return local_subscriptions
        return min(local_subscriptions, 1)


@pytest.fixture(name="backend", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def _backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend("memory", memory_node)
    url: str = request.getfixturevalue("redis_url")
    return Backend("redis", lambda: redis_node(url))


async def receive(subscription: object) -> bytes | Gap:
    with anyio.fail_after(WAIT_SECONDS):
        return await subscription.receive()  # type: ignore[attr-defined, no-any-return]


async def test_publish_reaches_subscriber(backend: Backend) -> None:
    async with backend.open() as fanout:
        assert await fanout.publish("room:1", b"nobody listens") == 0
        async with fanout.subscribe("room:1") as subscription:
            assert subscription.channel == "room:1"
            assert await fanout.publish("room:1", b"hello") == backend.receivers(1)
            assert await receive(subscription) == b"hello"


async def test_two_subscriptions_on_one_channel(backend: Backend) -> None:
    async with (
        backend.open() as fanout,
        fanout.subscribe("room:1") as first,
        fanout.subscribe("room:1") as second,
    ):
        assert await fanout.publish("room:1", b"both") == backend.receivers(2)
        assert await receive(first) == b"both"
        assert await receive(second) == b"both"


async def test_unsubscribe_stops_delivery(backend: Backend) -> None:
    async with backend.open() as fanout, fanout.subscribe("room:1") as stays:
        async with fanout.subscribe("room:1") as leaves:
            await fanout.publish("room:1", b"before")
            assert await receive(stays) == b"before"
            assert await receive(leaves) == b"before"
            await fanout.publish("room:1", b"unread")
            assert await receive(stays) == b"unread"
        assert leaves.closed
        assert await fanout.publish("room:1", b"after") == backend.receivers(1)
        assert await receive(stays) == b"after"
        # What was buffered before leaving is still there; then iteration ends.
        assert [item async for item in leaves] == [b"unread"]
        with pytest.raises(anyio.EndOfStream):
            leaves.receive_nowait()


async def test_channels_are_isolated(backend: Backend) -> None:
    async with (
        backend.open() as fanout,
        fanout.subscribe("room:a") as room_a,
        fanout.subscribe("room:b") as room_b,
    ):
        await fanout.publish("room:a", b"for a")
        await fanout.publish("room:b", b"for b")
        # Published in this order on one connection, so "for a" would have come first.
        assert await receive(room_b) == b"for b"
        assert await receive(room_a) == b"for a"
        with pytest.raises(anyio.WouldBlock):
            room_b.receive_nowait()
        with pytest.raises(anyio.WouldBlock):
            room_a.receive_nowait()


async def test_overflow_drops_oldest_and_yields_one_gap(backend: Backend) -> None:
    async with (
        backend.open() as fanout,
        fanout.subscribe("room:1") as watcher,
        fanout.subscribe("room:1", buffer_size=2) as slow,
    ):
        for number in range(5):
            await fanout.publish("room:1", b"%d" % number)
        # The watcher has room for all five: once it has them, so has the slow one.
        assert [await receive(watcher) for _ in range(5)] == [b"0", b"1", b"2", b"3", b"4"]
        assert slow.dropped == 3
        assert slow.pending == 3
        assert slow.receive_nowait() == Gap("subscriber buffer full (2); dropped 3 oldest messages")
        assert slow.receive_nowait() == b"3"
        assert slow.receive_nowait() == b"4"
        with pytest.raises(anyio.WouldBlock):
            slow.receive_nowait()
        statistics = fanout.statistics()
        assert (statistics.dropped, statistics.gaps) == (3, 1)
        # A later overflow yields a new gap.
        for number in range(5, 8):
            await fanout.publish("room:1", b"%d" % number)
        assert [await receive(watcher) for _ in range(3)] == [b"5", b"6", b"7"]
        assert slow.receive_nowait() == Gap("subscriber buffer full (2); dropped 1 oldest messages")
        assert [slow.receive_nowait(), slow.receive_nowait()] == [b"6", b"7"]
        assert slow.dropped == 4


async def test_statistics(backend: Backend) -> None:
    async with backend.open() as fanout:
        assert fanout.statistics() == FanoutStatistics(
            published=0, delivered=0, dropped=0, gaps=0, subscriptions=0, channels=0
        )
        async with (
            fanout.subscribe("room:a") as a1,
            fanout.subscribe("room:a") as a2,
            fanout.subscribe("room:b") as b1,
        ):
            await fanout.publish("room:a", b"x")
            await fanout.publish("room:a", b"y")
            await fanout.publish("room:b", b"z")
            for subscription, count in ((a1, 2), (a2, 2), (b1, 1)):
                for _ in range(count):
                    await receive(subscription)
            assert fanout.statistics() == FanoutStatistics(
                published=3, delivered=5, dropped=0, gaps=0, subscriptions=3, channels=2
            )
        assert fanout.statistics() == FanoutStatistics(
            published=3, delivered=5, dropped=0, gaps=0, subscriptions=0, channels=0
        )


async def test_subscribe_again_after_leaving(backend: Backend) -> None:
    async with backend.open() as fanout:
        for round_number in range(20):
            async with fanout.subscribe("room:1") as subscription:
                await fanout.publish("room:1", b"%d" % round_number)
                assert await receive(subscription) == b"%d" % round_number
        assert fanout.statistics().channels == 0


async def test_concurrent_subscribers_on_many_channels(backend: Backend) -> None:
    channels = [f"room:{number}" for number in range(20)]
    async with backend.open() as fanout, anyio.create_task_group() as tg:
        ready = anyio.Event()
        subscribed: list[str] = []
        received: dict[str, bytes | Gap] = {}

        async def subscriber(channel: str) -> None:
            async with fanout.subscribe(channel) as subscription:
                subscribed.append(channel)
                if len(subscribed) == len(channels):
                    ready.set()
                received[channel] = await receive(subscription)

        for channel in channels:
            tg.start_soon(subscriber, channel)
        with anyio.fail_after(WAIT_SECONDS):
            await ready.wait()
        for channel in channels:
            await fanout.publish(channel, channel.encode())
    assert received == {channel: channel.encode() for channel in channels}


async def test_buffer_size_must_be_positive(backend: Backend) -> None:
    async with backend.open() as fanout:
        with pytest.raises(ValueError, match="buffer_size must be at least 1, got 0"):
            async with fanout.subscribe("room:1", buffer_size=0):
                pass  # pragma: no cover


@pytest.mark.redis
async def test_two_nodes_see_each_other(redis_url: str) -> None:
    async with (
        redis_node(redis_url) as node_a,
        redis_node(redis_url) as node_b,
        node_a.subscribe("room:1") as on_a,
        node_b.subscribe("room:1") as on_b,
    ):
        assert await node_a.publish("room:1", b"from a") == 2
        assert await receive(on_a) == b"from a"
        assert await receive(on_b) == b"from a"
        assert await node_b.publish("room:1", b"from b") == 2
        assert await receive(on_a) == b"from b"
        assert await receive(on_b) == b"from b"
        assert node_a.statistics().published == 1
        assert node_b.statistics().delivered == 2


@pytest.mark.redis
async def test_redis_restart_yields_gap_then_messages(redis_server: RedisServer) -> None:
    async with redis_node(redis_server.url) as fanout, fanout.subscribe("room:1") as subscription:
        await fanout.publish("room:1", b"before")
        assert await receive(subscription) == b"before"

        redis_server.stop()
        with anyio.fail_after(WAIT_SECONDS):
            await fanout.link.wait_until(False)
        with pytest.raises(RedisUnavailable) as caught:
            await fanout.publish("room:1", b"lost")
        # Known down: not sent at all, it fails at once.
        assert str(caught.value).startswith(
            "redis unavailable during publish to fanout channel 'room:1': RedisLinkClosed: "
        )

        redis_server.restart()
        assert await receive(subscription) == Gap("redis reconnected")
        assert await fanout.publish("room:1", b"after") == 1
        assert await receive(subscription) == b"after"
        assert fanout.statistics().gaps == 1


@pytest.mark.redis
async def test_subscribe_while_redis_is_down_at_boot() -> None:
    port = free_port()
    async with (
        redis_node(f"redis://127.0.0.1:{port}/0", wait_up=False) as fanout,
        fanout.subscribe("room:1") as subscription,
    ):
        # Subscribing works locally; publishing says Redis is unavailable.
        assert not fanout.connected
        with pytest.raises(RedisUnavailable):
            await fanout.publish("room:1", b"lost")
        with RedisServer(port=port):
            assert await receive(subscription) == Gap("redis connected")
            assert await fanout.publish("room:1", b"hello") == 1
            assert await receive(subscription) == b"hello"
