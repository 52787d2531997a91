"""Typed channels: the same behaviour over MemoryFanout and RedisFanout, plus Redis's own."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
import pytest
import redis.asyncio

from runtime import (
    Channel,
    ChannelSpec,
    ChannelStatistics,
    ChannelSubscription,
    Fanout,
    Gap,
    RedisUnavailable,
    Subscription,
)
from runtime._redis_server import free_port

from .test_fanout import WAIT_SECONDS, memory_node, redis_node


class RoomEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    room: str


class RoomJoined(RoomEvent, tag="room.joined", frozen=True, kw_only=True):
    user: str


class RoomSaid(RoomEvent, tag="room.said", frozen=True, kw_only=True):
    user: str
    text: str


class RoomLeft(RoomEvent, tag="room.left", frozen=True, kw_only=True):
    user: str
    reason: str | None = None


RoomEvents = RoomJoined | RoomSaid | RoomLeft

ROOM: ChannelSpec[RoomEvents] = ChannelSpec("test.room.{room}", RoomEvents)
EVENTS: ChannelSpec[RoomEvents] = ChannelSpec("test.events", RoomEvents)


@dataclass(frozen=True)
class Backend:
    kind: str
    open: Callable[[], AbstractAsyncContextManager[Fanout]]


@pytest.fixture(name="backend", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def _backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend("memory", memory_node)
    url: str = request.getfixturevalue("redis_url")
    return Backend("redis", lambda: redis_node(url))


async def receive(events: ChannelSubscription[RoomEvents]) -> RoomEvents | Gap:
    with anyio.fail_after(WAIT_SECONDS):
        return await events.receive()


async def receive_raw(subscription: Subscription) -> bytes | Gap:
    with anyio.fail_after(WAIT_SECONDS):
        return await subscription.receive()


def statistics(name: str = "test.events", **counts: int) -> ChannelStatistics:
    zero = dict.fromkeys(("published", "publish_failures", "received", "undecodable", "gaps"), 0)
    return ChannelStatistics(name=name, **(zero | counts))


class CountingFanout:
    """A fanout that records every publish and passes it on to the real one."""

    def __init__(self, fanout: Fanout) -> None:
        self.inner = fanout
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, channel: str, data: bytes) -> int:
        self.published.append((channel, data))
        return await self.inner.publish(channel, data)

    def subscribe(
        self, channel: str, *, buffer_size: int = 1024, skip_prefix: bytes = b""
    ) -> AbstractAsyncContextManager[Subscription]:
        return self.inner.subscribe(channel, buffer_size=buffer_size, skip_prefix=skip_prefix)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await self.inner.run(task_status=task_status)

    def statistics(self) -> Any:
        return self.inner.statistics()


# -- the same behaviour on both fanouts ----------------------------------------------------------


async def test_tagged_union_round_trip(backend: Backend) -> None:
    sent: list[RoomEvents] = [
        RoomJoined(room="42", user="ada"),
        RoomSaid(room="42", user="ada", text="hello"),
        RoomLeft(room="42", user="ada", reason="bye"),
        RoomLeft(room="42", user="bob"),
    ]
    async with backend.open() as fanout:
        channel = ROOM.bind(fanout, room="42")
        assert channel.name == "test.room.42"
        async with channel.subscribe() as first, channel.subscribe() as second:
            for event in sent:
                assert await channel.publish(event) >= 1
            assert [await receive(first) for _ in sent] == sent
            assert [await receive(second) for _ in sent] == sent
            assert [type(event) for event in sent] == [RoomJoined, RoomSaid, RoomLeft, RoomLeft]
        assert channel.statistics() == statistics("test.room.42", published=4, received=8)


async def test_rooms_are_separate_channels(backend: Backend) -> None:
    async with backend.open() as fanout:
        room_a, room_b = ROOM.bind(fanout, room="a"), ROOM.bind(fanout, room="b")
        async with room_a.subscribe() as on_a, room_b.subscribe() as on_b:
            await room_a.publish(RoomJoined(room="a", user="ada"))
            await room_b.publish(RoomJoined(room="b", user="bob"))
            assert await receive(on_b) == RoomJoined(room="b", user="bob")
            assert await receive(on_a) == RoomJoined(room="a", user="ada")
            with pytest.raises(anyio.WouldBlock):
                on_a.receive_nowait()


async def test_publish_encodes_once_for_every_subscriber(backend: Backend) -> None:
    event = RoomSaid(room="1", user="ada", text="x" * 1000)
    async with backend.open() as real:
        fanout = CountingFanout(real)
        channel = EVENTS.bind(fanout)
        async with contextlib.AsyncExitStack() as stack:
            typed = [await stack.enter_async_context(channel.subscribe()) for _ in range(3)]
            raw = [await stack.enter_async_context(real.subscribe(channel.name)) for _ in range(2)]
            await channel.publish(event)
            # One encode, one publish of the bytes, however many subscribe.
            assert fanout.published == [("test.events", msgspec.msgpack.encode(event))]
            data = fanout.published[0][1]
            received = [await receive_raw(subscription) for subscription in raw]
            assert received == [data, data]
            if backend.kind == "memory":
                # The very bytes object published reached every local subscriber.
                assert all(item is data for item in received)
            assert [await receive(events) for events in typed] == [event] * 3
        assert channel.statistics() == statistics(published=1, received=3)


async def test_undecodable_payloads_are_counted_and_skipped(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "hunter2-do-not-log"
    bad_payloads = [
        b"\xc1",  # never valid msgpack
        msgspec.msgpack.encode({"type": "room.said", "room": 5, "text": secret}),
        msgspec.msgpack.encode({"room": "1", "user": secret}),  # no tag
        msgspec.msgpack.encode([secret]),
    ]
    caplog.set_level(logging.WARNING, logger="runtime.channel")
    async with backend.open() as fanout:
        channel = EVENTS.bind(fanout)
        async with channel.subscribe() as events:
            for payload in bad_payloads:
                await fanout.publish(channel.name, payload)
            await channel.publish(RoomJoined(room="1", user="ada"))
            await fanout.publish(channel.name, b"\xc1")
            await channel.publish(RoomLeft(room="1", user="ada"))
            assert await receive(events) == RoomJoined(room="1", user="ada")
            assert await receive(events) == RoomLeft(room="1", user="ada")
        assert channel.statistics() == statistics(published=2, received=2, undecodable=5)
    messages = [record.getMessage() for record in caplog.records]
    # Two bursts: the first of each is logged, and a run of several is summed up once.
    assert len(messages) == 3, messages
    assert messages[0].startswith(
        "channel 'test.events': skipped an undecodable payload of 1 bytes: "
    )
    assert messages[1] == (
        "channel 'test.events': skipped 4 undecodable payloads in a row (the first was logged)"
    )
    assert messages[2].startswith("channel 'test.events': skipped an undecodable payload")
    assert all(record.levelno == logging.WARNING for record in caplog.records)
    assert not any(secret in message for message in messages)


async def test_buffer_size_passes_through_and_overflow_is_a_gap(backend: Backend) -> None:
    async with backend.open() as fanout:
        channel = EVENTS.bind(fanout)
        async with channel.subscribe() as watcher, channel.subscribe(buffer_size=2) as slow:
            for number in range(5):
                await channel.publish(RoomJoined(room="1", user=f"u{number}"))
            # The watcher has room for all five: once it has them, so has the slow one.
            assert [await receive(watcher) for _ in range(5)] == [
                RoomJoined(room="1", user=f"u{number}") for number in range(5)
            ]
            assert slow.dropped == 3
            assert slow.receive_nowait() == Gap(
                "subscriber buffer full (2); dropped 3 oldest messages"
            )
            assert slow.receive_nowait() == RoomJoined(room="1", user="u3")
            assert slow.receive_nowait() == RoomJoined(room="1", user="u4")
        assert channel.statistics() == statistics(published=5, received=7, gaps=1)


async def test_iteration_ends_when_the_subscription_closes(backend: Backend) -> None:
    async with backend.open() as fanout:
        channel = EVENTS.bind(fanout)
        async with channel.subscribe() as watcher:
            async with channel.subscribe() as events:
                await channel.publish(RoomJoined(room="1", user="ada"))
                assert await receive(events) == RoomJoined(room="1", user="ada")
                await fanout.publish(channel.name, b"\xc1")
                await channel.publish(RoomSaid(room="1", user="ada", text="unread"))
                assert await receive(watcher) == RoomJoined(room="1", user="ada")
                # Once the watcher has it, the other subscription has it buffered too.
                assert await receive(watcher) == RoomSaid(room="1", user="ada", text="unread")
            remaining = [event async for event in events]
        assert remaining == [RoomSaid(room="1", user="ada", text="unread")]
        with pytest.raises(anyio.EndOfStream):
            events.receive_nowait()
        assert channel.statistics() == statistics(published=2, received=4, undecodable=2)


# -- Redis only ------------------------------------------------------------------------------


@pytest.mark.redis
async def test_a_killed_pubsub_connection_is_a_gap(redis_url: str) -> None:
    async with redis_node(redis_url) as fanout:
        channel = EVENTS.bind(fanout)
        async with channel.subscribe() as events:
            await channel.publish(RoomJoined(room="1", user="ada"))
            assert await receive(events) == RoomJoined(room="1", user="ada")
            client = redis.asyncio.Redis.from_url(redis_url)
            try:
                assert await client.client_kill_filter(_type="pubsub") >= 1
            finally:
                await client.aclose()
            assert await receive(events) == Gap("redis reconnected")
            assert await channel.publish(RoomLeft(room="1", user="ada")) == 1
            assert await receive(events) == RoomLeft(room="1", user="ada")
        assert channel.statistics() == statistics(published=2, received=2, gaps=1)


@pytest.mark.redis
async def test_two_nodes_share_a_channel_under_its_hash_tagged_redis_name(redis_url: str) -> None:
    async with (
        redis_node(redis_url) as node_a,
        redis_node(redis_url) as node_b,
    ):
        on_a, on_b = EVENTS.bind(node_a), EVENTS.bind(node_b)
        async with on_b.subscribe() as events:
            client = redis.asyncio.Redis.from_url(redis_url)
            try:
                names = await client.pubsub_channels("switchyard:fanout:*")
            finally:
                await client.aclose()
            # The channel name is the hash tag: a cluster's sharded pub/sub needs no change here.
            assert b"switchyard:fanout:{test.events}" in names
            assert await on_a.publish(RoomJoined(room="1", user="ada")) == 1
            assert await receive(events) == RoomJoined(room="1", user="ada")
        assert on_a.statistics() == statistics(published=1)
        assert on_b.statistics() == statistics(received=1)


@pytest.mark.redis
async def test_publish_while_redis_is_down_is_counted() -> None:
    async with redis_node(f"redis://127.0.0.1:{free_port()}/0", wait_up=False) as fanout:
        channel = EVENTS.bind(fanout)
        with pytest.raises(RedisUnavailable):
            await channel.publish(RoomJoined(room="1", user="ada"))
        assert await channel.try_publish(RoomJoined(room="1", user="ada")) is None
        assert channel.statistics() == statistics(publish_failures=2)


# -- names and types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["cache.invalidations", "hub.room.42", "queue.progress.job-7_b", "a.b", "m2.x.y.z"],
)
def test_valid_names(name: str) -> None:
    spec = ChannelSpec(name, RoomJoined)
    assert (spec.name, spec.fields) == (name, ())
    assert spec.name_for() == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "cache",  # one word: no package namespace
        "Cache.invalidations",
        "cache.Invalidations",
        "cache:invalidations",
        "cache..invalidations",
        "cache.invalidations.",
        ".cache",
        "1cache.x",
        "cache.-x",
        "cache.in valid",
        "cache.{x}y",
        "cache.inv*",
        "{room}.x",
        "cache.{tag}}",
        "cache." + "x" * 200,
    ],
)
def test_invalid_names_fail_at_declaration(name: str) -> None:
    with pytest.raises(ValueError, match="invalid channel name"):
        ChannelSpec(name, RoomJoined)


def test_placeholders_are_filled_at_bind() -> None:
    spec = ChannelSpec("hub.room.{room}.{part}", RoomJoined)
    assert spec.fields == ("room", "part")
    assert spec.name_for(room="42", part="chat") == "hub.room.42.chat"
    with pytest.raises(ValueError, match=r"takes fields \['part', 'room'\], got \['room'\]"):
        spec.name_for(room="42")
    with pytest.raises(ValueError, match=r"takes fields"):
        spec.bind(_NoFanout(), room="1", part="2", extra="3")
    for bad in ("", "Ada", "a:b", "a.b", "{x}", "a b"):
        with pytest.raises(ValueError, match="is not a name segment"):
            spec.name_for(room=bad, part="chat")
    with pytest.raises(ValueError, match="longer than 200"):
        spec.name_for(room="x" * 200, part="chat")
    with pytest.raises(ValueError, match="appears twice"):
        ChannelSpec("hub.{room}.{room}", RoomJoined)


class _Untagged(msgspec.Struct):
    x: int


class _AlsoUntagged(msgspec.Struct):
    y: int


@pytest.mark.parametrize("event_type", [dict, int, RoomJoined | None, Gap, list[RoomJoined]])
def test_only_structs_and_unions_of_structs(event_type: object) -> None:
    with pytest.raises(TypeError, match=r"msgspec Struct|Gap is what"):
        ChannelSpec("test.events", event_type)


def test_a_union_must_be_tagged() -> None:
    with pytest.raises(TypeError):  # msgspec's own check, at declaration
        ChannelSpec("test.events", _Untagged | _AlsoUntagged)


def test_channel_repr_and_types() -> None:
    channel: Channel[RoomEvents] = EVENTS.bind(_NoFanout())
    assert repr(channel).startswith("Channel('test.events', ")
    assert repr(EVENTS).startswith("ChannelSpec('test.events', ")


class _NoFanout:
    """A fanout for tests that never publish or subscribe."""

    async def publish(self, channel: str, data: bytes) -> int:
        raise AssertionError("not used")

    def subscribe(
        self, channel: str, *, buffer_size: int = 1024, skip_prefix: bytes = b""
    ) -> AbstractAsyncContextManager[Subscription]:
        raise AssertionError("not used")

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        raise AssertionError("not used")

    def statistics(self) -> Any:
        raise AssertionError("not used")
