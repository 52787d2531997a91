"""Presence: the node's incremental tally, the memory twin, and the cluster view in Redis.

Redis tests use real ``redis-server`` processes; several :class:`RedisPresence`
stores with different node ids on one Redis stand for several nodes. A
"node" here makes the hub's calls in the hub's order (:class:`HubNode`).
Heartbeats run on a :class:`ManualClock` where the test drives time; the
expiry of a dead node runs on real time with a short heartbeat, waiting on a
condition with a bound.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import cast

import anyio
import anyio.lowlevel
import msgspec
import pytest
import redis.asyncio

from actors.socket_hub import HubKeys, HubSettings
from actors.socket_hub import _presence_redis as presence_redis
from actors.socket_hub._frames import PresenceMember
from actors.socket_hub._presence import (
    LocalPresence,
    MemoryPresence,
    PresenceStatistics,
    PresenceStore,
)
from actors.socket_hub._presence_redis import HEARTBEAT_ROOMS, RedisPresence
from runtime import Clock, RedisLink, RedisUnavailable, SystemClock
from runtime.testing import ManualClock, RedisServer

KEYS = HubKeys("sw")
WAIT_SECONDS = 10.0


# -- helpers --------------------------------------------------------------------------------


class HubNode:
    """One node's presence as the hub drives it: the local tally, then the store.

    A registration that finds Redis unreachable is counted and the join goes on
    (the store's first heartbeat after the outage registers the room).
    """

    def __init__(self, store: PresenceStore, local: LocalPresence | None = None) -> None:
        self.local = local or LocalPresence()
        self.store = store
        self.unregistered: list[RedisUnavailable] = []

    async def join(self, room: str, user_id: str, user_name: str | None = None) -> int:
        count = self.local.join(room, user_id, user_name)
        if self.local.connections(room) == 1:
            try:
                await self.store.room_occupied(room)
            except RedisUnavailable as exc:
                self.unregistered.append(exc)
        self.store.changed(room, user_id, user_name, count)
        return count

    async def leave(self, room: str, user_id: str) -> int:
        member = self.local.member(room, user_id)
        count = self.local.leave(room, user_id)
        self.store.changed(room, user_id, member.user_name if member else None, count)
        if self.local.users(room) == 0:
            await self.store.room_vacated(room)
        return count


def as_counts(members: list[PresenceMember]) -> dict[str, int]:
    counts = {member.user_id: member.connections for member in members}
    assert len(counts) == len(members), f"a user listed twice: {members}"
    return counts


async def eventually(
    predicate: Callable[[], Awaitable[bool] | bool], timeout_seconds: float = WAIT_SECONDS
) -> None:
    """Wait until ``predicate()`` holds (checked every few ms), at most ``timeout_seconds``."""
    with anyio.fail_after(timeout_seconds):
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.005)


def settings(heartbeat_seconds: float) -> HubSettings:
    return HubSettings(presence_heartbeat_seconds=heartbeat_seconds)


def redis_store(
    link: RedisLink, node_id: str, *, clock: Clock, heartbeat_seconds: float = 5.0
) -> RedisPresence:
    return RedisPresence(link, KEYS, node_id, settings(heartbeat_seconds), clock)


@asynccontextmanager
async def running(*stores: PresenceStore) -> AsyncIterator[anyio.abc.TaskGroup]:
    """Run the stores' services for the block (cancelled at its end)."""
    async with anyio.create_task_group() as tasks:
        for store in stores:
            await tasks.start(store.run)
        yield tasks
        tasks.cancel_scope.cancel()


async def flushed(*stores: RedisPresence) -> None:
    """Wait until every store's writer has nothing left to send."""

    def idle() -> bool:
        return all(
            store.statistics().pending == 0 and not store._lock.locked()  # white-box: the lock
            for store in stores
        )

    await eventually(idle)
    await anyio.wait_all_tasks_blocked()
    await eventually(idle)


async def raw_presence(client: redis.asyncio.Redis, room: str, node_id: str) -> dict[str, int]:
    fields = cast("dict[bytes, bytes]", await client.hgetall(KEYS.presence(room, node_id)))
    decode = msgspec.msgpack.Decoder(tuple[str | None, int]).decode
    return {user.decode(): decode(value)[1] for user, value in fields.items()}


async def command_calls(client: redis.asyncio.Redis) -> dict[str, int]:
    stats: dict[str, dict[str, int]] = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}


# -- LocalPresence ----------------------------------------------------------------------------


def test_local_counts_connections_and_first_and_last() -> None:
    local = LocalPresence()
    assert local.join("public:lobby", "u1", "Ada") == 1  # first: announce the join
    assert local.join("public:lobby", "u1", None) == 2
    assert local.join("public:lobby", "u1", "Ada L.") == 3
    assert local.join("public:lobby", "u2", None) == 1
    assert local.join("user:u1", "u1", "Ada") == 1
    assert (local.users("public:lobby"), local.connections("public:lobby")) == (2, 4)
    assert (local.rooms(), local.memberships()) == (2, 3)
    assert sorted(local.room_names()) == ["public:lobby", "user:u1"]
    assert local.members("public:lobby") == [
        PresenceMember(user_id="u1", user_name="Ada L.", connections=3),
        PresenceMember(user_id="u2", connections=1),
    ]
    assert local.member("public:lobby", "u1") == PresenceMember(
        user_id="u1", user_name="Ada L.", connections=3
    )
    assert local.member("public:lobby", "nobody") is None
    assert local.member("public:nowhere", "u1") is None

    assert local.leave("public:lobby", "u1") == 2
    assert local.leave("public:lobby", "u1") == 1
    assert local.leave("public:lobby", "u1") == 0  # last: announce the leave
    assert (local.users("public:lobby"), local.connections("public:lobby")) == (1, 1)
    assert local.leave("public:lobby", "u2") == 0
    assert local.leave("user:u1", "u1") == 0
    # Rooms with no users leave nothing behind.
    assert local._rooms == {}  # white-box: the only state
    assert (local.rooms(), local.memberships()) == (0, 0)
    assert local.members("public:lobby") == []
    assert (local.users("public:lobby"), local.connections("public:lobby")) == (0, 0)
    assert list(local.room_names()) == []


def test_local_leave_without_a_join_is_a_bug() -> None:
    local = LocalPresence()
    with pytest.raises(KeyError, match="u1"):
        local.leave("public:lobby", "u1")
    local.join("public:lobby", "u2", None)
    with pytest.raises(KeyError, match="u1"):
        local.leave("public:lobby", "u1")
    assert local.connections("public:lobby") == 1  # the failed leave changed nothing


def test_local_room_names_is_a_snapshot() -> None:
    local = LocalPresence()
    for index in range(3):
        local.join(f"public:{index}", "u", None)
    names = local.room_names()
    for index in range(3):
        local.leave(f"public:{index}", "u")  # mutating while iterating is safe
    assert sorted(names) == ["public:0", "public:1", "public:2"]


def test_local_churn_keeps_counts_exact() -> None:
    local = LocalPresence()
    rng = random.Random(7)
    expected: dict[tuple[str, str], int] = {}
    for _ in range(20_000):
        room, user = f"public:{rng.randrange(20)}", f"u{rng.randrange(50)}"
        if expected.get((room, user)) and rng.random() < 0.5:
            expected[room, user] -= 1
            assert local.leave(room, user) == expected[room, user]
            if not expected[room, user]:
                del expected[room, user]
        else:
            expected[room, user] = expected.get((room, user), 0) + 1
            assert local.join(room, user, None) == expected[room, user]
    rooms = {room for room, _ in expected}
    assert local.rooms() == len(rooms)
    assert local.memberships() == len(expected)
    for room in rooms:
        counts = {user: n for (r, user), n in expected.items() if r == room}
        assert as_counts(local.members(room)) == counts
        assert local.users(room) == len(counts)
        assert local.connections(room) == sum(counts.values())


# -- MemoryPresence -------------------------------------------------------------------------


async def test_memory_presence_reads_the_nodes_tally() -> None:
    local = LocalPresence()
    store = MemoryPresence(local)
    node = HubNode(store, local)
    async with running(store):
        await node.join("public:lobby", "u1", "Ada")
        await node.join("public:lobby", "u1", "Ada")
        await node.join("public:lobby", "u2")
        assert as_counts(await store.members("public:lobby")) == {"u1": 2, "u2": 1}
        assert store.statistics() == PresenceStatistics(redis=False, rooms=1, members=2)
        await node.leave("public:lobby", "u1")
        await node.leave("public:lobby", "u1")
        await node.leave("public:lobby", "u2")
        assert await store.members("public:lobby") == []
        assert store.statistics() == PresenceStatistics(redis=False, rooms=0, members=0)


# -- RedisPresence ----------------------------------------------------------------------------


@pytest.fixture(name="link")
async def _link(redis_url: str) -> AsyncIterator[RedisLink]:
    async with RedisLink(redis_url, clock=SystemClock()) as link:
        yield link


@pytest.mark.redis
async def test_members_merge_every_node_with_summed_connections(link: RedisLink) -> None:
    clock = ManualClock()
    stores = [redis_store(link, f"node-{index}", clock=clock) for index in range(3)]
    a, b, c = (HubNode(store) for store in stores)
    async with running(*stores):
        await a.join("public:lobby", "u1", "Ada")
        await a.join("public:lobby", "u1", "Ada")
        await b.join("public:lobby", "u1", "Ada")
        await b.join("public:lobby", "u2", "Bob")
        await c.join("public:lobby", "u3")
        await c.join("public:other", "u1", "Ada")
        # A node sees its own changes at once (before its writer sent them) ...
        assert as_counts(await stores[2].members("public:other")) == {"u1": 1}
        await flushed(*stores)
        # ... and everyone's once written.
        for store in stores:
            members = await store.members("public:lobby")
            assert as_counts(members) == {"u1": 3, "u2": 1, "u3": 1}
            assert {m.user_id: m.user_name for m in members} == {
                "u1": "Ada",
                "u2": "Bob",
                "u3": None,
            }
        assert as_counts(await stores[0].members("public:other")) == {"u1": 1}
        await b.leave("public:lobby", "u1")
        await a.leave("public:lobby", "u1")
        await flushed(*stores)
        assert as_counts(await stores[2].members("public:lobby")) == {"u1": 1, "u2": 1, "u3": 1}
        assert stores[0].statistics().rooms == 1
        assert stores[1].statistics().members == 1


@pytest.mark.redis
async def test_room_occupied_registers_the_node_before_it_returns(link: RedisLink) -> None:
    store = redis_store(link, "node-a", clock=ManualClock(), heartbeat_seconds=5.0)
    client = link.client
    # No service runs: registration is the call's own work, not the heartbeat's.
    await store.room_occupied("public:lobby")
    score = await client.zscore(KEYS.nodes("public:lobby"), "node-a")
    seconds, micros = await client.time()
    now_ms = seconds * 1000 + micros // 1000
    assert score is not None
    assert now_ms < score <= now_ms + 10_000  # expiry: now + 2H by Redis time
    assert 0 < await client.pttl(KEYS.nodes("public:lobby")) <= 10_000
    await store.room_vacated("public:lobby")
    assert await client.exists(KEYS.nodes("public:lobby")) == 0


@pytest.mark.redis
async def test_rooms_with_no_members_leave_no_keys(link: RedisLink) -> None:
    stores = [redis_store(link, f"node-{index}", clock=ManualClock()) for index in range(2)]
    a, b = HubNode(stores[0]), HubNode(stores[1])
    async with running(*stores):
        for room in ("public:lobby", "project:1"):
            await a.join(room, "u1")
            await a.join(room, "u1")
            await b.join(room, "u2")
        await flushed(*stores)
        assert len(await link.client.keys("sw:hub:*")) == 6  # nodes + 2 hashes, per room
        for room in ("public:lobby", "project:1"):
            await a.leave(room, "u1")
            await b.leave(room, "u2")
            await a.leave(room, "u1")
        await flushed(*stores)
        assert await link.client.keys("sw:hub:*") == []
        for store in stores:
            assert store.statistics().rooms == store.statistics().members == 0
            assert store._mirror == {}  # white-box: nothing kept for empty rooms
            assert store._dirty == {}


@pytest.mark.redis
async def test_vacate_all_takes_a_restarting_node_out_of_every_room(link: RedisLink) -> None:
    stores = [redis_store(link, f"node-{index}", clock=ManualClock()) for index in range(2)]
    a, b = HubNode(stores[0]), HubNode(stores[1])
    async with running(*stores):
        for index in range(1500):  # two round trips' worth of rooms
            await a.join(f"public:{index}", "u1")
        await b.join("public:0", "u2")
        await flushed(*stores)
        await stores[0].vacate_all()  # the hub restarted: its tally is gone
        assert as_counts(await stores[1].members("public:0")) == {"u2": 1}
        assert sorted(await link.client.keys("sw:hub:*")) == sorted(
            [KEYS.nodes("public:0").encode(), KEYS.presence("public:0", "node-1").encode()]
        )
        assert stores[0].statistics() == PresenceStatistics(
            redis=True,
            rooms=0,
            members=0,
            heartbeats=stores[0].statistics().heartbeats,
            writes=stores[0].statistics().writes,
            written=stores[0].statistics().written,
        )


@pytest.mark.redis
async def test_changes_are_coalesced_per_user(link: RedisLink) -> None:
    store = redis_store(link, "node-a", clock=ManualClock())
    async with running(store):
        await store.room_occupied("public:lobby")
        before = store.statistics()
        for count in range(1, 1001):  # no await between them: one write carries them all
            store.changed("public:lobby", "u1", "Ada", count)
        assert store.statistics().pending == 1
        await flushed(store)
        after = store.statistics()
        assert (after.writes - before.writes, after.written - before.written) == (1, 1)
        assert await raw_presence(link.client, "public:lobby", "node-a") == {"u1": 1000}
        with pytest.raises(ValueError, match="connections"):
            store.changed("public:lobby", "u1", "Ada", -1)


@pytest.mark.redis
async def test_too_many_pending_changes_turn_into_one_rewrite(
    link: RedisLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence_redis, "MAX_PENDING", 10)
    store = redis_store(link, "node-a", clock=ManualClock())
    await store.room_occupied("public:lobby")  # the service does not run yet: nothing is sent
    for index in range(25):
        store.changed("public:lobby", f"u{index}", None, 1)
        assert store.statistics().pending <= 10
    for index in range(5):
        store.changed("public:lobby", f"u{index}", None, 0)
    assert store.statistics().pending == 0  # dropped: the mirror holds the truth
    assert store.statistics().members == 20
    async with running(store):
        await eventually(lambda: store.statistics().resyncs == 1)
        await flushed(store)
        expected = {f"u{index}": 1 for index in range(5, 25)}
        assert await raw_presence(link.client, "public:lobby", "node-a") == expected


@pytest.mark.redis
async def test_a_node_whose_heartbeat_stops_disappears_within_two_heartbeats(
    link: RedisLink,
) -> None:
    heartbeat = 0.2
    clock = SystemClock()
    alive, dead, observer = (
        redis_store(link, name, clock=clock, heartbeat_seconds=heartbeat)
        for name in ("alive", "dead", "observer")
    )
    async with running(alive, observer):
        async with anyio.create_task_group() as doomed:
            await doomed.start(dead.run)
            await HubNode(alive).join("public:lobby", "u-alive")
            await HubNode(dead).join("public:lobby", "u-dead")
            await flushed(alive, dead)
            assert as_counts(await observer.members("public:lobby")) == {
                "u-alive": 1,
                "u-dead": 1,
            }
            doomed.cancel_scope.cancel()  # no more heartbeats: a SIGKILLed node
        stopped = time.monotonic()
        assert "u-dead" in as_counts(await observer.members("public:lobby"))

        async def dead_gone() -> bool:
            return "u-dead" not in as_counts(await observer.members("public:lobby"))

        await eventually(dead_gone, timeout_seconds=2 * heartbeat + 3.0)
        elapsed = time.monotonic() - stopped
        assert elapsed <= 2 * heartbeat + 1.0, f"expired after {elapsed:.2f} s"
        # Pruned: its entry and its hash are gone from Redis, not just skipped.
        assert await link.client.zscore(KEYS.nodes("public:lobby"), "dead") is None
        assert await link.client.exists(KEYS.presence("public:lobby", "dead")) == 0
        # The node that beats stays, however many of its TTLs pass.
        beats = alive.statistics().heartbeats
        await eventually(lambda: alive.statistics().heartbeats >= beats + 3)
        assert as_counts(await observer.members("public:lobby")) == {"u-alive": 1}


@pytest.mark.redis
async def test_a_heartbeat_of_5000_rooms_takes_a_few_round_trips(link: RedisLink) -> None:
    rooms = [f"public:room-{index}" for index in range(5000)]
    clock = ManualClock()
    store = redis_store(link, "node-a", clock=clock, heartbeat_seconds=5.0)
    node = HubNode(store)
    async with running(store):
        await eventually(lambda: store.statistics().heartbeats == 1)  # the one at start
        for index, room in enumerate(rooms):
            await node.join(room, f"u{index % 7}")
        await flushed(store)
        # Age one room's keys, so the heartbeat has something to show.
        await link.client.pexpire(KEYS.presence(rooms[-1], "node-a"), 3000)
        calls_before = await command_calls(link.client)
        trips_before = store.statistics().heartbeat_round_trips
        assert trips_before == 0  # the first heartbeat had no room; registrations are not beats
        clock.advance(5.0)
        await eventually(lambda: store.statistics().heartbeats == 2)
        calls = await command_calls(link.client)
        trips = store.statistics().heartbeat_round_trips - trips_before
        assert trips == len(rooms) // HEARTBEAT_ROOMS == 5
        assert calls["evalsha"] - calls_before.get("evalsha", 0) == 5
        assert calls["zadd"] - calls_before.get("zadd", 0) == 5000  # run inside the scripts
        assert 9_000 < await link.client.pttl(KEYS.presence(rooms[-1], "node-a")) <= 10_000
        assert store.statistics().repairs == 0


@pytest.mark.redis
async def test_redis_flushed_under_a_live_node_is_repaired_by_the_next_heartbeat(
    link: RedisLink,
) -> None:
    clock = ManualClock()
    stores = [redis_store(link, f"node-{index}", clock=clock) for index in range(2)]
    a, b = HubNode(stores[0]), HubNode(stores[1])
    async with running(*stores):
        await a.join("public:lobby", "u1", "Ada")
        await a.join("public:lobby", "u1", "Ada")
        await a.join("project:9", "u1", "Ada")
        await b.join("public:lobby", "u2")
        await flushed(*stores)
        await link.client.flushdb()  # no outage the link could see: only heartbeats tell
        assert as_counts(await stores[1].members("public:lobby")) == {"u2": 1}
        clock.advance(5.0)
        await eventually(lambda: all(store.statistics().heartbeats >= 2 for store in stores))
        await flushed(*stores)
        assert as_counts(await stores[1].members("public:lobby")) == {"u1": 2, "u2": 1}
        assert as_counts(await stores[1].members("project:9")) == {"u1": 1}
        assert stores[0].statistics().repairs == 2
        assert stores[1].statistics().repairs == 1


@asynccontextmanager
async def linked(url: str, count: int) -> AsyncIterator[list[RedisLink]]:
    """``count`` links (one per node) with their health loops running, each up."""
    links = [RedisLink(url, clock=SystemClock(), health_interval_seconds=0.2) for _ in range(count)]
    try:
        async with anyio.create_task_group() as tasks:
            for link in links:
                await tasks.start(link.run)
            with anyio.fail_after(WAIT_SECONDS):
                for link in links:
                    await link.wait_until(True)
            yield links
            tasks.cancel_scope.cancel()
    finally:
        for link in links:
            await link.aclose()


@pytest.mark.redis
async def test_redis_restarted_empty_heals_when_the_link_is_back(
    redis_server: RedisServer,
) -> None:
    clock = ManualClock()  # no heartbeat falls due: the link's return wakes them
    async with linked(redis_server.url, 2) as links:
        stores = [redis_store(link, f"node-{i}", clock=clock) for i, link in enumerate(links)]
        a, b = HubNode(stores[0]), HubNode(stores[1])
        async with running(*stores):
            await a.join("public:lobby", "u1", "Ada")
            await a.join("user:u1", "u1", "Ada")
            await b.join("public:lobby", "u2", "Bob")
            await flushed(*stores)
            await anyio.to_thread.run_sync(lambda: redis_server.restart(empty=True))

            async def healed() -> bool:
                try:
                    lobby = as_counts(await stores[1].members("public:lobby"))
                    personal = as_counts(await stores[1].members("user:u1"))
                except RedisUnavailable:
                    return False
                return lobby == {"u1": 1, "u2": 1} and personal == {"u1": 1}

            await eventually(healed)
            assert all(store.statistics().resyncs >= 1 for store in stores)
            assert await raw_presence(links[1].client, "user:u1", "node-0") == {"u1": 1}


@pytest.mark.redis
async def test_an_outage_keeps_changes_bounded_and_applies_them_after(
    redis_server: RedisServer,
) -> None:
    clock = ManualClock()
    async with linked(redis_server.url, 2) as links:
        stores = [redis_store(link, f"node-{i}", clock=clock) for i, link in enumerate(links)]
        a, b = HubNode(stores[0]), HubNode(stores[1])
        async with running(*stores):
            await a.join("public:lobby", "u1")
            await a.join("public:left", "u1")
            await b.join("public:lobby", "u2")
            await flushed(*stores)
            redis_server.pause()  # data kept: what the node left during the outage must go
            try:
                with anyio.fail_after(WAIT_SECONDS):
                    await links[0].wait_until(False)
                with pytest.raises(RedisUnavailable):
                    await stores[0].members("public:lobby")
                await a.join("public:new", "u1")  # room_occupied raises, the join goes on
                assert [exc.operation for exc in a.unregistered] == ["presence room_occupied"]
                await a.leave("public:left", "u1")  # room_vacated does not raise
                assert stores[0].statistics().deferred_vacates == 1
                # Heavy churn meanwhile: what is kept is bounded by the presence itself.
                for index in range(5000):
                    await a.join("public:lobby", f"churn-{index}")
                    await a.leave("public:lobby", f"churn-{index}")
                await a.join("public:lobby", "u3")
                statistics = stores[0].statistics()
                assert statistics.pending == 0
                assert statistics.members == 3  # u1 and u3 in the lobby, u1 in public:new
                assert sum(len(pending) for pending in stores[0]._dirty.values()) == 0
            finally:
                redis_server.resume()

            async def healed() -> bool:
                try:
                    lobby = as_counts(await stores[1].members("public:lobby"))
                    new = as_counts(await stores[1].members("public:new"))
                    left = as_counts(await stores[1].members("public:left"))
                except RedisUnavailable:
                    return False
                return lobby == {"u1": 1, "u2": 1, "u3": 1} and new == {"u1": 1} and left == {}

            await eventually(healed)
            assert stores[0].statistics().deferred_vacates == 0
            assert await links[1].client.exists(KEYS.presence("public:left", "node-0")) == 0
            assert stores[0].statistics().heartbeat_failures + stores[0].statistics().resyncs > 0


@pytest.mark.redis
async def test_churn_of_joins_and_leaves_ends_with_exact_counts(link: RedisLink) -> None:
    clock = ManualClock()
    stores = [redis_store(link, f"node-{index}", clock=clock) for index in range(2)]
    nodes = [HubNode(store) for store in stores]
    rng = random.Random(42)
    # Few users per room: rooms empty and fill again often (registrations and removals).
    rooms = [f"public:{index}" for index in range(60)]
    users = [f"u{index}" for index in range(6)]
    async with running(*stores):
        for step in range(4000):
            node = nodes[rng.randrange(2)]
            room, user = rng.choice(rooms), rng.choice(users)
            if node.local.member(room, user) is not None and rng.random() < 0.55:
                await node.leave(room, user)
            else:
                await node.join(room, user, f"name of {user}")
            if step % 50 == 0:
                await anyio.lowlevel.checkpoint()  # the writers run now and then, as in a hub
            if step == 2000:
                clock.advance(5.0)  # a heartbeat in the middle of it
        await flushed(*stores)
        for room in rooms:
            expected: dict[str, int] = {}
            for node in nodes:
                for member in node.local.members(room):
                    expected[member.user_id] = expected.get(member.user_id, 0) + member.connections
            for store in stores:
                assert as_counts(await store.members(room)) == expected, room
            for node, store in zip(nodes, stores, strict=True):
                local = as_counts(node.local.members(room))
                assert await raw_presence(link.client, room, store.node_id) == local
                registered = await link.client.zscore(KEYS.nodes(room), store.node_id)
                assert (registered is not None) == bool(local), room
        for node, store in zip(nodes, stores, strict=True):
            assert store.statistics().members == node.local.memberships()
            assert store.statistics().rooms == node.local.rooms()
