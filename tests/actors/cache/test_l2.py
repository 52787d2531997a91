"""The L2 contract, run against MemoryL2 and RedisL2 alike, plus what only one of them does."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest
import redis.asyncio

from actors.cache._keys import KeySpace
from actors.cache._l2 import L2Store, MemoryL2, RedisL2
from runtime import RedisLink, RedisUnavailable
from runtime.testing import ManualClock, RedisServer

SPACE = KeySpace("sy")
A, B, C, D = (SPACE.full_key(name) for name in ("a", "b", "c", "d"))
T1, T2 = SPACE.tag_key("t1"), SPACE.tag_key("t2")
LOCK = SPACE.lock_key(A)


class Harness:
    """An L2 store and a way to make time pass for it."""

    name: str
    l2: L2Store

    async def pass_time(self, seconds: float, *keys: str) -> None:
        """Make ``seconds`` pass for ``keys`` (for Redis, only the listed keys age)."""
        raise NotImplementedError

    async def tag_members(self, tag_key: str) -> set[str]:
        """The members of a tag set, dead or alive."""
        raise NotImplementedError


class MemoryHarness(Harness):
    name = "memory"

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.memory = MemoryL2(self.clock)
        self.l2 = self.memory

    async def pass_time(self, seconds: float, *keys: str) -> None:
        self.clock.advance(seconds)

    async def tag_members(self, tag_key: str) -> set[str]:
        index = self.memory._tags.items.get(tag_key)  # white-box: the index is private
        return set() if index is None else set(index.value)


class RedisHarness(Harness):
    name = "redis"

    def __init__(self, link: RedisLink) -> None:
        self.client = link.client
        self.l2 = RedisL2(link)

    async def pass_time(self, seconds: float, *keys: str) -> None:
        # Redis time cannot be moved, so each key's TTL is shortened instead; a key whose
        # TTL runs out gets an expiry time in the past, which Redis applies at once.
        for key in keys:
            pttl = await self.client.pttl(key)
            if pttl < 0:
                continue
            remaining_ms = pttl - round(seconds * 1000)
            if remaining_ms <= 0:
                await self.client.pexpireat(key, 1)
            else:
                await self.client.pexpire(key, remaining_ms)

    async def tag_members(self, tag_key: str) -> set[str]:
        members: set[bytes] = await self.client.smembers(tag_key)  # type: ignore[assignment]
        return {member.decode() for member in members}


@pytest.fixture(name="harness", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def _harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    url: str = request.getfixturevalue("redis_url")
    async with RedisLink(url, clock=ManualClock()) as link:
        yield RedisHarness(link)


# -- the contract ---------------------------------------------------------------------------


async def test_get_set_get_many_delete_exists(harness: Harness) -> None:
    l2 = harness.l2
    assert await l2.get(A) is None
    assert not await l2.exists(A)
    await l2.set(A, b"1", ttl_seconds=60)
    await l2.set(B, b"2", ttl_seconds=60)
    assert await l2.get(A) == b"1"
    assert await l2.exists(A)
    assert await l2.get_many([A, C, B, A]) == [b"1", None, b"2", b"1"]
    assert await l2.get_many([]) == []
    await l2.set(A, b"one", ttl_seconds=60)  # overwrite
    assert await l2.get(A) == b"one"
    assert await l2.delete([A, C, A]) == 1
    assert await l2.get(A) is None
    assert await l2.delete([]) == 0
    assert await l2.delete([B]) == 1


async def test_ttl_seconds_and_expiry(harness: Harness) -> None:
    l2 = harness.l2
    assert await l2.ttl_seconds(A) is None
    await l2.set(A, b"1", ttl_seconds=10)
    ttl = await l2.ttl_seconds(A)
    assert ttl is not None and 9.9 < ttl <= 10
    await harness.pass_time(5, A)
    assert await l2.get(A) == b"1"
    ttl = await l2.ttl_seconds(A)
    assert ttl is not None and 4.9 < ttl <= 5
    await l2.set(B, b"2", ttl_seconds=60)
    await harness.pass_time(6, A, B)
    assert await l2.get(A) is None
    assert not await l2.exists(A)
    assert await l2.ttl_seconds(A) is None
    assert await l2.get_many([A, B]) == [None, b"2"]
    assert await l2.delete([A]) == 0  # expired keys are not counted


async def test_overwriting_resets_the_ttl(harness: Harness) -> None:
    await harness.l2.set(A, b"1", ttl_seconds=10)
    await harness.l2.set(A, b"2", ttl_seconds=100)
    ttl = await harness.l2.ttl_seconds(A)
    assert ttl is not None and 99.9 < ttl <= 100


async def test_bad_arguments_are_programming_errors(harness: Harness) -> None:
    l2 = harness.l2
    for ttl in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError) as caught:
            await l2.set(A, b"1", ttl_seconds=ttl)
        assert str(caught.value) == f"ttl_seconds must be a finite number > 0, got {ttl!r}"
    with pytest.raises(ValueError) as caught:
        await l2.try_lock(LOCK, "me", 0)
    assert str(caught.value) == "ttl_seconds must be a finite number > 0, got 0"
    with pytest.raises(TypeError) as caught_type:
        await l2.set(A, b"1", ttl_seconds=1, tags=T1)
    assert str(caught_type.value) == (
        f"tags must be a collection of tag keys, not a single string {T1!r}"
    )
    for size in (0, 100_001):
        with pytest.raises(ValueError) as caught:
            await l2.delete_matching("*", batch_size=size)
        assert str(caught.value) == f"batch_size must be between 1 and 100000, got {size}"
        with pytest.raises(ValueError):
            await l2.delete_tagged(T1, batch_size=size)
    assert await l2.get(A) is None


async def test_delete_tagged_removes_exactly_the_tagged_keys(harness: Harness) -> None:
    l2 = harness.l2
    await l2.set(A, b"a", ttl_seconds=60, tags=[T1])
    await l2.set(B, b"b", ttl_seconds=60, tags=[T1, T2, T1])  # duplicates are harmless
    await l2.set(C, b"c", ttl_seconds=60, tags=(T2,))
    await l2.set(D, b"d", ttl_seconds=60)
    assert await harness.tag_members(T1) == {A, B}
    assert await harness.tag_members(T2) == {B, C}

    assert await l2.delete_tagged(T1, batch_size=1) == 2
    assert await l2.get_many([A, B, C, D]) == [None, None, b"c", b"d"]
    assert not await l2.exists(T1)
    assert await l2.exists(T2)

    assert await l2.delete_tagged(T2) == 1  # B is already gone: only C counts
    assert await l2.get_many([C, D]) == [None, b"d"]
    assert not await l2.exists(T2)
    assert await l2.delete_tagged(T2) == 0
    if isinstance(harness, RedisHarness):  # no snapshot of the tag set is left behind
        assert [key async for key in harness.client.scan_iter(match="sy:cache-tag:*")] == []


async def test_delete_tagged_counts_only_live_entries(harness: Harness) -> None:
    l2 = harness.l2
    await l2.set(A, b"a", ttl_seconds=10, tags=[T1])
    await l2.set(B, b"b", ttl_seconds=100, tags=[T1])
    await harness.pass_time(20, A, B, T1)
    assert await l2.get(A) is None
    assert await l2.delete_tagged(T1) == 1
    assert await l2.get(B) is None


async def test_a_tag_index_lives_as_long_as_its_newest_member(harness: Harness) -> None:
    l2 = harness.l2
    await l2.set(A, b"a", ttl_seconds=100, tags=[T1])
    tag_ttl = await l2.ttl_seconds(T1)
    assert tag_ttl is not None and 99.9 < tag_ttl <= 100
    await l2.set(B, b"b", ttl_seconds=10, tags=[T1])  # a shorter member does not shorten it
    tag_ttl = await l2.ttl_seconds(T1)
    assert tag_ttl is not None and 99.8 < tag_ttl <= 100
    await l2.set(C, b"c", ttl_seconds=1000, tags=[T1])  # a longer member extends it
    tag_ttl = await l2.ttl_seconds(T1)
    assert tag_ttl is not None and 999.9 < tag_ttl <= 1000

    await harness.pass_time(999, A, B, C, T1)
    assert await l2.exists(T1)
    assert await l2.get_many([A, B, C]) == [None, None, b"c"]
    await harness.pass_time(2, A, B, C, T1)
    assert not await l2.exists(T1)  # gone with its last member: no leak
    assert not await l2.exists(C)


async def test_a_tagged_write_prunes_dead_members(harness: Harness) -> None:
    l2 = harness.l2
    dead = [SPACE.full_key(f"dead:{i}") for i in range(100)]
    for key in dead:
        await l2.set(key, b"x", ttl_seconds=600, tags=[T1])
    assert await l2.delete(dead) == 100
    live = [SPACE.full_key(f"live:{i}") for i in range(300)]
    for key in live:
        await l2.set(key, b"x", ttl_seconds=600, tags=[T1])
    members = await harness.tag_members(T1)
    assert set(live) <= members
    # Memory checks the oldest members round robin (all 100 dead go within 50 writes);
    # Redis samples at random, leaving ~6 of 100 dead members on average.
    assert len(members - set(live)) <= (0 if isinstance(harness, MemoryHarness) else 50)


async def test_delete_matching_follows_redis_globs(harness: Harness) -> None:
    l2 = harness.l2
    names = ["user:a", "user:b", "user:c", "user:d", "user:ab", "room:1", "x"]
    for name in names:
        await l2.set(SPACE.full_key(name), b"v", ttl_seconds=60, tags=[T1])
    await l2.try_lock(LOCK, "owner", 60)

    async def remaining() -> list[str]:
        found = await l2.get_many([SPACE.full_key(name) for name in names])
        return [name for name, blob in zip(names, found, strict=True) if blob is not None]

    assert await l2.delete_matching(SPACE.full_pattern("user:[a-c]"), batch_size=2) == 3
    assert await remaining() == ["user:d", "user:ab", "room:1", "x"]
    assert await l2.delete_matching(SPACE.full_pattern("user:?")) == 1
    assert await remaining() == ["user:ab", "room:1", "x"]
    assert await l2.delete_matching(SPACE.full_pattern("nothing:*")) == 0
    assert await l2.delete_matching(SPACE.full_pattern("[^u]*")) == 2
    assert await remaining() == ["user:ab"]
    assert await l2.delete_matching(SPACE.full_pattern("*")) == 1
    assert await remaining() == []
    # Tag indexes and locks live outside the entry namespace.
    assert await l2.exists(T1)
    assert await l2.exists(LOCK)


async def test_locks(harness: Harness) -> None:
    l2 = harness.l2
    assert await l2.try_lock(LOCK, "node-1", 30)
    assert not await l2.try_lock(LOCK, "node-2", 30)
    assert not await l2.try_lock(LOCK, "node-1", 30)  # NX: not re-entrant either
    assert await l2.get(LOCK) == b"node-1"
    ttl = await l2.ttl_seconds(LOCK)
    assert ttl is not None and 29.9 < ttl <= 30

    assert not await l2.unlock(LOCK, "node-2")  # only the owner releases
    assert await l2.exists(LOCK)
    assert await l2.unlock(LOCK, "node-1")
    assert not await l2.unlock(LOCK, "node-1")
    assert not await l2.exists(LOCK)

    assert await l2.try_lock(LOCK, "node-2", 30)
    await harness.pass_time(31, LOCK)  # node-2 died holding it: the lock frees itself
    assert not await l2.exists(LOCK)
    assert await l2.try_lock(LOCK, "node-3", 30)
    assert not await l2.unlock(LOCK, "node-2")
    assert await l2.get(LOCK) == b"node-3"


async def test_a_lock_is_not_taken_over_an_existing_key(harness: Harness) -> None:
    await harness.l2.set(A, b"v", ttl_seconds=60)
    assert not await harness.l2.try_lock(A, "owner", 30)
    assert await harness.l2.get(A) == b"v"


# -- memory only ----------------------------------------------------------------------------


async def test_memory_expiry_is_exact_on_the_manual_clock() -> None:
    clock = ManualClock()
    l2 = MemoryL2(clock)
    await l2.set(A, b"v", ttl_seconds=10)
    await l2.set(B, b"v", ttl_seconds=0.0001)  # rounded to Redis's 1 ms minimum
    assert await l2.ttl_seconds(B) == pytest.approx(0.001)
    clock.advance(9.999)
    assert await l2.get(A) == b"v"
    assert await l2.get(B) is None
    clock.advance(0.001)
    assert await l2.get(A) is None


async def test_memory_evicts_the_entry_that_expires_soonest() -> None:
    clock = ManualClock()
    l2 = MemoryL2(clock, max_entries=3)
    await l2.set(A, b"a", ttl_seconds=30)
    await l2.set(B, b"b", ttl_seconds=10)
    await l2.set(C, b"c", ttl_seconds=20)
    await l2.set(D, b"d", ttl_seconds=40)
    assert await l2.get_many([A, B, C, D]) == [b"a", None, b"c", b"d"]
    assert len(l2) == 3
    for round_ in range(500):  # overwrites leave stale heap rows; the heap stays compact
        await l2.set(A, b"a", ttl_seconds=30 + round_)
    assert len(l2._entries._heap) <= 2 * 3 + 64
    assert repr(l2) == "MemoryL2(3 entries, 0 tags)"


async def test_memory_drops_a_tag_index_with_its_entries_at_the_bound() -> None:
    clock = ManualClock()
    l2 = MemoryL2(clock, max_entries=2)
    await l2.set(A, b"a", ttl_seconds=10, tags=[T1])
    await l2.set(B, b"b", ttl_seconds=20, tags=[T2])
    t3 = SPACE.tag_key("t3")
    await l2.set(C, b"c", ttl_seconds=30, tags=[t3])  # T1 expires soonest: it goes, and A too
    assert not await l2.exists(T1)
    assert await l2.get_many([A, B, C]) == [None, b"b", b"c"]


def test_memory_refuses_a_bad_bound() -> None:
    with pytest.raises(ValueError) as caught:
        MemoryL2(ManualClock(), max_entries=0)
    assert str(caught.value) == "MemoryL2 max_entries must be >= 1, got 0"


# -- Redis only -----------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_ttl_really_expires(redis_url: str) -> None:
    """Redis expires entries and a dead node's lock on its own clock; we wait for its events."""
    async with RedisLink(redis_url, clock=ManualClock()) as link:
        client = link.client
        (events_setting,) = (await client.config_get("notify-keyspace-events")).values()
        await client.config_set("notify-keyspace-events", "Ex")  # "expired" key events
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe("__keyevent@0__:expired")
                l2 = RedisL2(link)
                await l2.set(A, b"v", ttl_seconds=0.02)
                assert await l2.try_lock(LOCK, "dead-node", 0.02)
                expired: set[bytes] = set()
                with anyio.fail_after(5):
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            expired.add(message["data"])
                        if expired == {A.encode(), LOCK.encode()}:
                            break
            assert not await l2.exists(A)
            assert await l2.try_lock(LOCK, "next-node", 30)
        finally:
            await client.config_set("notify-keyspace-events", str(events_setting))


@pytest.mark.redis
async def test_redis_scripts_survive_a_script_flush(redis_url: str) -> None:
    async with RedisLink(redis_url, clock=ManualClock()) as link:
        l2 = RedisL2(link)
        await l2.set(A, b"v", ttl_seconds=60, tags=[T1])
        await link.client.script_flush()  # as after a Redis restart: EVALSHA finds nothing
        await l2.set(B, b"v", ttl_seconds=60, tags=[T1])
        assert await l2.try_lock(LOCK, "me", 30)
        await link.client.script_flush()
        assert await l2.unlock(LOCK, "me")
        assert await l2.delete_tagged(T1) == 2


OPERATIONS: dict[str, Callable[[RedisL2], Awaitable[object]]] = {
    "get": lambda l2: l2.get(A),
    "get_many": lambda l2: l2.get_many([A]),
    "set": lambda l2: l2.set(A, b"v", ttl_seconds=1),
    "delete": lambda l2: l2.delete([A]),
    "exists": lambda l2: l2.exists(A),
    "delete_matching": lambda l2: l2.delete_matching("sy:cache:*"),
    "delete_tagged": lambda l2: l2.delete_tagged(T1),
    "try_lock": lambda l2: l2.try_lock(LOCK, "me", 1),
    "unlock": lambda l2: l2.unlock(LOCK, "me"),
    "ttl_seconds": lambda l2: l2.ttl_seconds(A),
}


@pytest.mark.redis
async def test_redis_outage_raises_redis_unavailable(redis_server: RedisServer) -> None:
    async with RedisLink(redis_server.url, clock=ManualClock()) as link:
        l2 = RedisL2(link)
        await l2.set(A, b"v", ttl_seconds=60, tags=[T1])
        redis_server.stop()
        with pytest.raises(RedisUnavailable) as caught:  # the pooled connection breaks
            await l2.get(A)
        assert caught.value.operation == "cache get"
        assert str(caught.value).startswith("redis unavailable during cache get: ConnectionError: ")

    refused = (
        f"ConnectionError: Error 111 connecting to 127.0.0.1:{redis_server.port}. "
        f"Connect call failed ('127.0.0.1', {redis_server.port})."
    )
    async with RedisLink(redis_server.url, clock=ManualClock()) as link:
        l2 = RedisL2(link)
        for name, call in OPERATIONS.items():
            with pytest.raises(RedisUnavailable) as caught:
                await call(l2)
            assert str(caught.value) == f"redis unavailable during cache {name}: {refused}"

    redis_server.start()  # and it recovers by itself, same port
    async with RedisLink(redis_server.url, clock=ManualClock()) as link:
        l2 = RedisL2(link)
        await l2.set(A, b"back", ttl_seconds=60)
        assert await l2.get(A) == b"back"


@pytest.mark.redis
async def test_redis_delete_matching_100k_keys_does_not_block_redis(redis_url: str) -> None:
    """SCAN + UNLINK in batches: no command blocks Redis, and other clients keep being served.

    Redis's slow log times each command inside the server; for comparison, ``KEYS`` and one
    ``UNLINK`` of the same 100k keys take about 25 ms and 35 ms there, a batch about 1 ms.
    """
    total, chunk = 100_000, 10_000
    loader = redis.asyncio.Redis.from_url(redis_url)
    prober = redis.asyncio.Redis.from_url(redis_url)  # another connection, like another node
    (slow_setting,) = (await loader.config_get("slowlog-log-slower-than")).values()
    try:
        for start in range(0, total, chunk):
            await loader.mset({f"sy:cache:bulk:{i}": b"v" for i in range(start, start + chunk)})
        await loader.mset({"sy:cache:keep:1": b"v", "sy:cache:keep:2": b"v"})
        assert await loader.dbsize() == total + 2
        await prober.ping()  # connect before measuring
        await loader.config_set("slowlog-log-slower-than", 10_000)  # microseconds
        await loader.slowlog_reset()

        latencies: list[float] = []
        done = anyio.Event()
        removed = 0

        async def delete_all() -> None:
            nonlocal removed
            async with RedisLink(redis_url, clock=ManualClock()) as link:
                removed = await RedisL2(link).delete_matching("sy:cache:bulk:*", batch_size=1000)
            done.set()

        async def probe() -> None:
            while not done.is_set():
                started = anyio.current_time()
                assert await prober.get("sy:cache:keep:1") == b"v"
                latencies.append(anyio.current_time() - started)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(probe)
                tg.start_soon(delete_all)

        assert removed == total
        assert await loader.dbsize() == 2
        slow = [(entry["command"][:40], entry["duration"]) for entry in await loader.slowlog_get()]
        assert slow == [], "Redis was blocked for >= 10 ms by a command"
        assert len(latencies) >= 20, "the probe was starved: the deletion never yielded"
        assert max(latencies) < 0.25, f"a GET waited {max(latencies):.3f}s"
    finally:
        await loader.config_set("slowlog-log-slower-than", str(slow_setting))
        await loader.aclose()
        await prober.aclose()
