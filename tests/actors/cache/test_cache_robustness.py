"""The cache through its Python API: statistics, write ordering, races, outages and restarts.

Most tests run three times: on L1 alone (``l1``), on L1 over a memory L2
(``memory``) and on L1 over a real Redis (``redis``, marked ``redis``); tests
that need an L2 run on the last two. Time moves only through the
:class:`ManualClock`; concurrency is synchronised on events and on
``anyio.wait_all_tasks_blocked()``, never on sleeps.

Where a test needs a second node, ``env.running_nodes(2)`` starts one on the
same L2 (its L1 starts empty, so what it reads comes from L2).
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import msgspec
import pytest

from actors.cache import Cache, CacheStatistics, MemoryL2, cache_child
from runtime import MemoryFanout, RedisUnavailable, Rejected
from runtime.testing import ManualClock

from .conftest import PREFIX, CacheEnv, Loader

# -- statistics -----------------------------------------------------------------------------


async def test_statistics_count_hits_and_misses_by_reason(env: CacheEnv) -> None:
    async with env.running_nodes(2) as nodes:
        a, b = nodes.caches
        await a.set("a", "A")
        assert await a.get("a") == "A"
        assert await a.get("a") == "A"
        assert await a.get("never") is None
        await a.set("gone", "G")
        await a.delete("gone")
        assert await a.get("gone") is None
        await a.set("short", "S", ttl_seconds=1)
        env.clock.advance(1)
        assert await a.get("short") is None
        assert await a.get_or_set("loaded", Loader("L")) == "L"
        has_l2 = env.has_l2
        stats = await a.statistics()
        expected = CacheStatistics(
            hit_ratio=2 / 6,
            lookups=6,
            l1_hits=2,
            l1_stale_hits=0,
            l1_misses=4,
            l1_misses_absent=2,  # never, loaded
            l1_misses_expired=1,  # short
            l1_misses_evicted=0,
            l1_misses_invalidated=1,  # gone
            l1_evictions=0,
            l1_entries=2,  # a, loaded
            l1_bytes=4,  # two msgpack strings of one character
            l2_enabled=has_l2,
            l2_hits=0,
            l2_misses=4 if has_l2 else 0,  # never, gone, short, loaded (the flight's read)
            l2_errors=0,
            degraded_reads=0,
            loader_calls=1,
            loader_errors=0,
            single_flight_joins=0,
            stale_refreshes=0,
            writes=5 if has_l2 else 0,  # set a, set gone, delete gone, set short, store loaded
            degraded_writes=0,
            replayed_writes=0,
            replay_dropped=0,
            write_queue_depth=0,
            replay_depth=0,
            invalidations_received=0,
            invalidation_publish_failures=0,
            invalidations_undecodable=0,
            coherence_resets=0,
            # Real time, and a race with the writer's publish (see the test of set() below):
            loader_seconds_total=stats.loader_seconds_total,
            invalidations_sent=stats.invalidations_sent,
        )
        assert stats == expected
        assert stats.loader_seconds_total >= 0.0
        if has_l2:
            await nodes.settle(5)
            assert await b.get("a") == "A"
            await b.statistics()  # B's actor takes the L1 fill
            assert await b.get("a") == "A"
            stats = await b.statistics()
            assert (stats.lookups, stats.l1_hits, stats.l1_misses_absent) == (2, 1, 1)
            assert (stats.l2_hits, stats.l2_misses, stats.hit_ratio) == (1, 0, 1.0)


# -- write ordering and robustness ----------------------------------------------------------


class HeldFanout(MemoryFanout):
    """A :class:`MemoryFanout` whose ``publish`` waits while it is held."""

    def __init__(self) -> None:
        super().__init__()
        self._open = anyio.Event()
        self._open.set()

    def hold(self) -> None:
        self._open = anyio.Event()

    def release(self) -> None:
        self._open.set()

    async def publish(self, channel: str, data: bytes) -> int:
        await self._open.wait()
        return await super().publish(channel, data)


@pytest.mark.parametrize("operation", ["set", "delete"])
async def test_a_write_returns_once_the_other_nodes_were_told(operation: str) -> None:
    # Regression (_writer.py, OrderedWriter._perform): Put and Delete used to finish their
    # Completion as soon as Redis answered, before _write published the invalidation, so
    # set()/delete() returned before "the other nodes have been told" (Cache.set docstring);
    # now they finish after the publish, as BulkDelete does. The fanout is held here to
    # make an early return visible.
    env = CacheEnv(kind="memory", clock=ManualClock())
    fanout = HeldFanout()
    async with env.running_nodes(2, fanout=fanout) as nodes:
        a, b = nodes.caches
        await a.set("k", "v1")
        assert await b.get("k") == "v1"
        await b.statistics()  # B's L1 now holds v1
        fanout.hold()
        returned = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def write() -> None:
                if operation == "set":
                    await a.set("k", "v2")
                else:
                    await a.delete("k")
                returned.set()

            tg.start_soon(write)
            await anyio.wait_all_tasks_blocked()
            returned_before_publish = returned.is_set()
            fanout.release()
        await anyio.wait_all_tasks_blocked()
        assert await b.get("k") == ("v2" if operation == "set" else None)
        assert not returned_before_publish, f"{operation}() returned before the other nodes knew"


async def test_a_corrupt_l2_entry_does_not_crash_the_cache(l2_env: CacheEnv) -> None:
    # Regression (_codec.py StoredEntry, _reads.py _fill_message, CacheActor._fill): an
    # envelope with a non-finite deadline used to decode fine; its L1 fill then carried
    # stale_seconds=inf, L1Store.set raised ValueError inside handle(), and the actor crashed
    # on every read of the key (four reads in 5 s exceeded the restart intensity); now such
    # an entry is refused or not kept in L1, and the actor never crashes on it.
    blob = msgspec.msgpack.encode([b"x", 0, 1.0, math.inf, []])
    async with l2_env.running_nodes(1) as nodes:
        (cache,) = nodes.caches
        full = l2_env.full_key("poison")
        if l2_env.kind == "memory":
            l2 = nodes.l2s[0]
            assert l2 is not None
            await l2.set(full, blob, ttl_seconds=60)
        else:
            async with l2_env.raw_redis() as client:
                await client.set(full, blob, px=60_000)
        try:
            await cache.get("poison")
        except Rejected as exc:  # refusing the foreign entry is fine
            assert exc.code == "undecodable_value"
        await cache.statistics()  # the actor has taken the L1 fill by now
        assert nodes.refs is not None
        actor = nodes.refs["cache"].statistics()
        assert (actor.crashes, actor.restarts) == (0, 0), actor.last_crash_reason
        await cache.set("after", 1)
        assert await cache.get("after") == 1


async def test_stopping_the_cache_releases_callers_waiting_for_a_loader(env: CacheEnv) -> None:
    loader = Loader("never")
    loader.hold()
    outcome: list[BaseException] = []
    async with anyio.create_task_group() as tg, env.running_cache() as cache:

        async def caller() -> None:
            try:
                await cache.get_or_set("k", loader)
            except Rejected as exc:
                outcome.append(exc)

        tg.start_soon(caller)
        with anyio.fail_after(5):
            await loader.entered.wait()
        await anyio.wait_all_tasks_blocked()
    # Which of the two messages depends on whether on_stop() or the cancelled flight
    # task gets there first; both say the caller may retry.
    assert [(e.code, e.message) for e in outcome if isinstance(e, Rejected)] in (
        [("unavailable", "the cache restarted while loading; retry")],
        [("unavailable", "the cache stopped while loading; retry")],
    )


class HeldReadsL2(MemoryL2):
    """A :class:`MemoryL2` whose reads, while held, take their value at once and return it later."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.read_started = anyio.Event()
        self._release: anyio.Event | None = None

    def hold(self) -> None:
        self._release = anyio.Event()

    def release(self) -> None:
        assert self._release is not None
        self._release.set()

    async def get(self, key: str) -> bytes | None:
        blob = await super().get(key)
        if self._release is not None:
            self.read_started.set()
            await self._release.wait()
        return blob


async def test_a_read_that_raced_a_write_does_not_put_the_old_value_back_in_l1() -> None:
    env = CacheEnv(kind="memory")
    l2 = HeldReadsL2(env.clock)
    async with env.running_nodes(2, memory_l2=l2) as nodes:
        writer, cache = nodes.caches
        await writer.set("k", "old")
        await nodes.settle(1)
        l2.hold()  # the second node's L1 is empty: its read goes to L2
        read: list[object] = []
        async with anyio.create_task_group() as tg:

            async def reader() -> None:
                read.append(await cache.get("k"))

            tg.start_soon(reader)
            with anyio.fail_after(5):
                await l2.read_started.wait()  # the reader holds "old", read from L2
            await cache.set("k", "new")
            l2.release()
        assert read == ["old"]
        await cache.statistics()  # the actor has been offered the reader's (stale) fill
        assert await cache.get("k") == "new"


class PartitionedL2(MemoryL2):
    """A :class:`MemoryL2` that can be cut off, like a Redis behind a network partition.

    Unlike a restarted Redis, it keeps its data through the outage.
    """

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.partitioned = False

    @property
    def available(self) -> bool:
        return not self.partitioned

    def _check(self, operation: str) -> None:
        if self.partitioned:
            raise RedisUnavailable(operation, "network partition")

    async def get(self, key: str) -> bytes | None:
        self._check("cache get")
        return await super().get(key)

    async def set(self, key: str, blob: bytes, *, ttl_seconds: float, tags: Any = ()) -> None:
        self._check("cache set")
        await super().set(key, blob, ttl_seconds=ttl_seconds, tags=tags)

    async def delete(self, keys: Any) -> int:
        self._check("cache delete")
        return await super().delete(keys)

    async def exists(self, key: str) -> bool:
        self._check("cache exists")
        return await super().exists(key)


async def test_a_delete_during_an_outage_is_not_undone_when_redis_returns() -> None:
    # A delete (or an invalidation, or a set) made while L2 is unreachable is replayed once
    # it is back, so L2's old data (intact, as after a partition) does not come back.
    env = CacheEnv(kind="memory")
    l2 = PartitionedL2(env.clock)
    async with env.running_cache(memory_l2=l2) as cache:
        await cache.set("k", "v1")
        l2.partitioned = True
        assert await cache.delete("k") == 0
        assert await cache.get("k") is None
        assert (await cache.statistics()).degraded_writes == 1
        l2.partitioned = False
        env.clock.advance(0.25)  # the writer looks for Redis again every 0.25 s
        await anyio.wait_all_tasks_blocked()
        assert await cache.get("k") is None, "the deleted value came back from L2"
        assert (await cache.statistics()).replayed_writes == 1


async def test_before_the_actor_runs_writes_are_unavailable_and_reads_miss() -> None:
    spec, cache = cache_child(prefix=PREFIX, clock=ManualClock())
    assert await cache.get("k", default="default") == "default"
    assert await cache.get_many(["k"]) == {}
    for call in (
        lambda: cache.set("k", 1),
        lambda: cache.delete("k"),
        lambda: cache.exists("k"),
        lambda: cache.invalidate_tag("t"),
        lambda: cache.statistics(),
        lambda: cache.get_or_set("k", Loader()),
    ):
        with pytest.raises(Rejected) as caught:
            await call()
        assert (caught.value.code, caught.value.message) == (
            "unavailable",
            "the cache actor is not running; retry shortly",
        )
    assert spec.id == "cache"


async def test_the_hit_ratio_counts_each_lookup_once() -> None:
    # Regression (_actor.py, CacheActor.statistics): hit_ratio = (L1 hits + L2 hits) / L1
    # lookups used to count as L2 hits reads that follow no lookup (a warmer's or a flight's
    # L2 read, the cluster-lock polls), so the ratio could pass 1: 3 L2 reads by warmers and
    # one missed lookup gave 3.0; now only reads after a lookup count, and it is 0.0.
    env = CacheEnv(kind="memory")
    l2 = MemoryL2(env.clock)
    async with env.running_cache(memory_l2=l2) as cache:
        for key in ("a", "b", "c"):
            await cache.set(key, key)
    loader = Loader()

    def warm_all(cache: Cache) -> None:
        for key in ("a", "b", "c"):
            cache.warm(key, loader)

    async with env.running_cache(memory_l2=l2, setup=warm_all) as cache:
        await anyio.wait_all_tasks_blocked()  # the warmers took their values from L2
        assert loader.calls == 0
        assert await cache.get("missing") is None
        stats = await cache.statistics()
        assert (stats.lookups, stats.l1_hits) == (1, 0)
        assert stats.hit_ratio == 0.0
