"""What only a real Redis shows: key names, cluster-wide single flight, coherence, outages.

Every test here needs ``redis-server`` (marked ``redis``). Scenarios between
nodes run real in-process nodes (:func:`open_cache_nodes`, on
:func:`runtime.testing.open_nodes`), each with its own supervised Redis link
and fanout on one Redis, as separate processes would be. The tests that
replace a layer (a watched L2) or name the node run cache actors on
``CacheEnv``. Coherence latency is the one thing measured on the wall
clock, by polling: it is real pub/sub delivery.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import anyio
import msgspec
import pytest
import redis.asyncio

from actors.cache import Cache, CacheSettings, RedisL2
from runtime import Gap, RedisLink, Settings
from runtime.testing import ManualClock, RedisServer

from .conftest import CacheEnv, Loader, open_cache_nodes

pytestmark = pytest.mark.redis
logger = logging.getLogger("tests.actors.cache")

MISSING: Any = object()
WALL = ManualClock().time()  # the ManualClock's wall time when a test starts


def redis_env(url: str, **options: Any) -> CacheEnv:
    return CacheEnv(kind="redis", redis_url=url, **options)


async def stored(client: redis.asyncio.Redis, key: str) -> bytes:
    """The raw bytes Redis holds under ``key`` (the client does not decode responses)."""
    value = await client.get(key)
    assert isinstance(value, bytes), (key, value)
    return value


# -- what Redis holds -----------------------------------------------------------------------


async def test_keys_carry_the_global_prefix_and_entries_are_envelopes(redis_url: str) -> None:
    env = redis_env(redis_url)
    async with (
        env.running_cache(prefix="tenant7") as cache,
        env.raw_redis() as client,
    ):
        await cache.set("user:1", b"\x00raw", ttl_seconds=60, tags=["vip"])
        await cache.set("user:1", {"a": 1}, prefix="p")
        await cache.set("s", 1, ttl_seconds=10, stale_seconds=5)
        assert sorted(await client.keys("*")) == [
            b"tenant7:cache-tag:vip",
            b"tenant7:cache:p:user:1",
            b"tenant7:cache:s",
            b"tenant7:cache:user:1",
        ]
        # [payload, encoding, fresh_until, stale_until, tags], deadlines on the clock's wall time
        assert msgspec.msgpack.decode(await stored(client, "tenant7:cache:user:1")) == [
            b"\x00raw",
            0,
            WALL + 60,
            WALL + 60,
            ["vip"],
        ]
        assert msgspec.msgpack.decode(await stored(client, "tenant7:cache:p:user:1")) == [
            msgspec.msgpack.encode({"a": 1}),
            1,
            WALL + 3600,
            WALL + 3600,
            [],
        ]
        assert msgspec.msgpack.decode(await stored(client, "tenant7:cache:s")) == [
            msgspec.msgpack.encode(1),
            1,
            WALL + 10,
            WALL + 15,
            [],
        ]
        assert await client.smembers("tenant7:cache-tag:vip") == {b"tenant7:cache:user:1"}
        # Redis keeps an entry for its TTL plus its stale window.
        assert 59_000 < await client.pttl("tenant7:cache:user:1") <= 60_000
        assert 3_599_000 < await client.pttl("tenant7:cache:p:user:1") <= 3_600_000
        assert 14_000 < await client.pttl("tenant7:cache:s") <= 15_000


async def test_l2_expiry_follows_the_clock_while_redis_still_holds_the_key(redis_url: str) -> None:
    env = redis_env(redis_url)
    async with (
        open_cache_nodes(2, redis_url, clock=env.clock) as (nodes, _),
        env.raw_redis() as client,
    ):
        a, b = nodes.caches
        await a.set("k", "v", ttl_seconds=10)
        env.clock.advance(10)
        assert await a.get("k") is None
        assert await b.get("k") is None  # B has never seen it: it read the envelope in L2
        assert await client.exists(env.full_key("k")) == 1  # real time has hardly passed
        assert (await b.statistics()).l2_misses == 1


async def test_invalidate_tag_deletes_the_tag_index_in_redis(redis_url: str) -> None:
    env = redis_env(redis_url)
    async with env.running_cache() as cache, env.raw_redis() as client:
        await cache.set("a", 1, tags=["t"])
        await cache.set("b", 2, tags=["t", "u"])
        assert await client.exists("sw:cache-tag:t", "sw:cache-tag:u") == 2
        assert await cache.invalidate_tag("t") == 2
        assert sorted(await client.keys("*")) == [b"sw:cache-tag:u"]  # no snapshot left over
        assert await cache.invalidate_pattern("*") == 0
        assert await cache.invalidate_tag("u") == 0  # its only member is gone
        assert await client.keys("*") == []


async def test_invalidate_pattern_leaves_tag_indexes_and_locks_alone(redis_url: str) -> None:
    env = redis_env(redis_url)
    async with env.running_cache() as cache, env.raw_redis() as client:
        await cache.set("a", 1, tags=["t"])
        await client.set("sw:cache-lock:a", "someone", px=60_000)
        assert await cache.invalidate_pattern("*") == 1
        assert sorted(await client.keys("*")) == [b"sw:cache-lock:a", b"sw:cache-tag:t"]


# -- cluster-wide single flight -------------------------------------------------------------


class WatchedL2(RedisL2):
    """:class:`RedisL2` that says when a node found the fill lock taken."""

    def __init__(self, link: RedisLink, contended: anyio.Event) -> None:
        super().__init__(link)
        self._contended = contended

    async def try_lock(self, lock_key: str, owner: str, ttl_seconds: float) -> bool:
        taken = await super().try_lock(lock_key, owner, ttl_seconds)
        if not taken:
            self._contended.set()
        return taken


async def test_cluster_lock_runs_the_loader_once_across_nodes(redis_url: str) -> None:
    env = redis_env(redis_url, system_clock=True)  # the waiting node polls on the real clock
    contended = anyio.Event()
    loader = Loader({"rows": 3})
    loader.hold()
    async with (
        env.running_nodes(2, redis_l2=lambda link: WatchedL2(link, contended)) as nodes,
        env.raw_redis() as client,
    ):
        results: dict[int, object] = {}
        async with anyio.create_task_group() as tg:

            async def call(index: int, cache: Cache) -> None:
                results[index] = await cache.get_or_set("report", loader, cluster_lock=True)

            for index, cache in enumerate(nodes.caches):
                tg.start_soon(call, index, cache)
            with anyio.fail_after(5):
                await loader.entered.wait()  # one node holds the lock and loads...
                await contended.wait()  # ...and the other found it taken, and waits
            loader.release()
        assert results == {0: {"rows": 3}, 1: {"rows": 3}}
        assert loader.calls == 1
        calls = [(await cache.statistics()).loader_calls for cache in nodes.caches]
        assert sorted(calls) == [0, 1]
        assert await client.exists("sw:cache-lock:report") == 0  # released


async def test_a_lock_left_by_a_dead_node_expires_and_the_waiter_loads(redis_url: str) -> None:
    env = redis_env(redis_url, system_clock=True)
    settings = CacheSettings(lock_ttl_seconds=0.5)
    async with env.running_cache(settings=settings) as cache, env.raw_redis() as client:
        lock_key = "sw:cache-lock:report"
        await client.set(lock_key, "dead-node:1", px=200)  # as if its holder died
        seen: list[tuple[bytes, int]] = []

        async def loader() -> str:
            seen.append((await stored(client, lock_key), await client.pttl(lock_key)))
            return "fresh"

        with anyio.fail_after(5):
            assert await cache.get_or_set("report", loader, cluster_lock=True) == "fresh"
        [(holder, pttl)] = seen
        assert holder.startswith(b"node-0:")  # its own lock by then
        assert 0 < pttl <= 500  # lock_ttl_seconds
        assert await client.exists(lock_key) == 0


# -- coherence between nodes ----------------------------------------------------------------


async def served_within(cache: Cache, key: str, expected: object) -> float:
    """Seconds until ``cache`` serves ``expected`` for ``key`` (MISSING: nothing).

    Polls, because it measures real pub/sub delivery between two nodes.
    """
    started = time.perf_counter()
    with anyio.fail_after(1):
        # Polls on purpose (noqa): it measures real pub/sub delivery between nodes.
        while await cache.get(key, default=MISSING) != expected:  # noqa: ASYNC110
            await anyio.sleep(0.005)
    return time.perf_counter() - started


def record_latencies(operation: str, latencies: list[float]) -> None:
    """Log what coherence took (``pytest -o log_cli=true -o log_cli_level=INFO`` shows it)."""
    logger.info(
        "coherence after %s: median %.2f ms, max %.2f ms over %d rounds",
        operation,
        statistics.median(latencies) * 1000,
        max(latencies) * 1000,
        len(latencies),
    )


async def assert_served_from_l1(cache: Cache, key: str, expected: object) -> None:
    """``cache`` serves ``expected`` for ``key`` from its L1 (so only an invalidation helps)."""
    await cache.statistics()  # the actor has taken any pending L1 fill
    before = (await cache.statistics()).l1_hits
    assert await cache.get(key) == expected
    assert (await cache.statistics()).l1_hits == before + 1


async def test_a_write_on_one_node_reaches_the_l1_of_another(redis_url: str) -> None:
    async with open_cache_nodes(2, redis_url) as (nodes, _):
        a, b = nodes.caches
        await a.set("k", "v0")
        await nodes.settle(1)  # else its invalidation could drop B's first copy
        assert await b.get("k") == "v0"  # from L2, into B's L1
        latencies = []
        for i in range(1, 21):
            await assert_served_from_l1(b, "k", f"v{i - 1}")
            await a.set("k", f"v{i}")
            latencies.append(await served_within(b, "k", f"v{i}"))
        record_latencies("set", latencies)
        assert statistics.median(latencies) < 0.05, latencies
        stats_a, stats_b = await a.statistics(), await b.statistics()
        assert stats_a.invalidations_sent >= 21
        assert stats_b.invalidations_received >= 21
        assert stats_b.coherence_resets == 0


@pytest.mark.parametrize("operation", ["delete", "pattern", "tag"])
async def test_an_invalidation_on_one_node_reaches_the_l1_of_another(
    redis_url: str, operation: str
) -> None:
    async with open_cache_nodes(2, redis_url) as (nodes, _):
        a, b = nodes.caches
        latencies = []
        for i in range(10):
            key = f"user:{i}"
            await a.set(key, i, tags=["users"])
            await a.set(f"order:{i}", i, tags=["orders"])
            await nodes.settle(3 * i + 2)  # two sets, after one invalidation per round
            assert await b.get(key) == i  # from L2, into B's L1
            await assert_served_from_l1(b, key, i)
            if operation == "delete":
                assert await a.delete(key) == 1
            elif operation == "pattern":
                assert await a.invalidate_pattern("user:*") == 1
            else:
                assert await a.invalidate_tag("users") == 1
            latencies.append(await served_within(b, key, MISSING))
            assert await b.get(f"order:{i}") == i
        record_latencies(operation, latencies)
        assert statistics.median(latencies) < 0.05, latencies


# -- Redis outage ---------------------------------------------------------------------------


async def test_a_redis_outage_degrades_to_l1_and_the_reconnect_resets_l1(
    redis_server: RedisServer,
) -> None:
    env = redis_env(redis_server.url)
    settings = Settings(
        redis_prefix="sw",
        redis_health_interval_seconds=0.05,  # the link notices the outage and reconnects soon
        redis_reconnect_max_seconds=0.05,
    )
    async with (
        open_cache_nodes(1, redis_server.url, settings=settings) as (nodes, _),
        env.raw_redis() as client,
    ):
        (cache,), (link,) = nodes.caches, nodes.links

        async def traffic(rounds: int, tag: str) -> None:
            for i in range(rounds):
                await cache.set(f"{tag}:{i}", i)
                assert await cache.get(f"{tag}:{i}") == i
                assert await cache.get_or_set(f"{tag}:load:{i}", Loader(i)) == i
                assert await cache.get_or_set(f"{tag}:lock:{i}", Loader(i), cluster_lock=True) == i
                assert await cache.get_many([f"{tag}:{i}", "never"]) == {f"{tag}:{i}": i}

        await traffic(5, "before")
        await cache.set("kept", "in l1", tags=["t"])
        await cache.set("flushed", "in redis before the outage")  # returns once Redis has it
        before = await cache.statistics()
        assert (before.degraded_writes, before.l2_errors) == (0, 0)

        redis_server.stop()
        await traffic(20, "outage")  # no caller sees the outage
        with anyio.fail_after(5):
            await link.wait_until(False)
        await traffic(20, "down")
        assert await cache.get("kept") == "in l1"
        assert await cache.get("never") is None
        assert await cache.exists("never") is False
        assert await cache.delete("kept") == 0
        assert await cache.invalidate_tag("t") == 0
        await cache.invalidate_pattern("before:*")
        assert await cache.get("before:0") is None
        during = await cache.statistics()
        assert during.degraded_writes > 0
        assert during.l2_errors > 0

        redis_server.start()  # same port, no data
        with anyio.fail_after(5):
            await link.wait_until(True)
        # The fanout re-subscribed, and says that messages may have been lost.
        assert await nodes.gap() == Gap("redis reconnected")
        after = await cache.statistics()
        assert after.coherence_resets >= 1
        assert after.l1_entries < during.l1_entries
        # L1 was dropped but for the keys whose writes had not reached Redis: "flushed" is
        # read from Redis (restarted empty), "down:0" keeps the value this node acknowledged.
        assert await cache.get("flushed") is None
        assert await cache.get("down:0") == 0

        # The replay log goes first (a stale pooled connection may fail it once and delay it
        # by the writer's retry interval); once it is sent, writes reach Redis directly.
        with anyio.fail_after(2):
            while True:
                settled = await cache.statistics()
                if settled.replay_depth == 0:
                    break
                await anyio.sleep(0.01)  # polling the writer: real Redis round trips drain it
        await cache.set("back", "in redis")  # and the cache uses Redis again
        # Not degraded (a write that was would be in the replay log, not in Redis yet) ...
        assert (await cache.statistics()).degraded_writes == settled.degraded_writes
        # ... so Redis has it when set returns.
        assert await client.exists(env.full_key("back")) == 1
