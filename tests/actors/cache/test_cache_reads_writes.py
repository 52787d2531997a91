"""The cache through its Python API: reads, writes, TTLs, invalidation, L1 bounds, negative caching.

Most tests run three times: on L1 alone (``l1``), on L1 over a memory L2
(``memory``) and on L1 over a real Redis (``redis``, marked ``redis``); tests
that need an L2 run on the last two. Time moves only through the
:class:`ManualClock`; concurrency is synchronised on events and on
``anyio.wait_all_tasks_blocked()``, never on sleeps.

Where a test needs a second node, ``env.running_nodes(2)`` starts one on the
same L2 (its L1 starts empty, so what it reads comes from L2).
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.cache import CacheSettings
from runtime import Rejected

from .conftest import CacheEnv, Loader

MISSING: Any = object()

VALUES: dict[str, object] = {
    "raw": b"\x00\xff raw \x80",
    "text": "h\u00e9llo",
    "int": 2**40,
    "float": 1.5,
    "true": True,
    "none": None,
    "list": [1, "two", [3.0]],
    "dict": {"a": {"b": [1, 2]}, "c": None},
}


# -- get, set, get_many, delete, exists -----------------------------------------------------


async def test_values_round_trip_bytes_untouched_and_objects_through_msgpack(
    env: CacheEnv,
) -> None:
    async with env.running_nodes(2) as nodes:
        a, b = nodes.caches
        for key, value in VALUES.items():
            await a.set(key, value)
        for key, value in VALUES.items():
            got = await a.get(key, default=MISSING)
            assert (got, type(got)) == (value, type(value)), key
        assert await a.get("raw") is VALUES["raw"]  # L1 shares values, it does not copy
        if env.has_l2:  # B's L1 is empty: B decodes what A stored in L2
            for key, value in VALUES.items():
                got = await b.get(key, default=MISSING)
                assert (got, type(got)) == (value, type(value)), key
            stats = await b.statistics()
            assert (stats.l2_hits, stats.l2_misses) == (len(VALUES), 0)
        else:  # without L2, nodes share nothing
            assert await b.get("raw", default=MISSING) is MISSING


async def test_get_many_returns_the_present_keys_in_one_call(env: CacheEnv) -> None:
    async with env.running_nodes(2) as nodes:
        a, b = nodes.caches
        await a.set("a", 1)
        await a.set("b", b"two")
        await a.set("a", "sub", prefix="p")
        await nodes.settle(3)
        assert await a.get_many(["a", "b", "missing"]) == {"a": 1, "b": b"two"}
        assert await a.get_many(["a", "b"], prefix="p") == {"a": "sub"}
        assert await a.get_many([]) == {}
        if env.has_l2:
            assert await b.get_many(["a", "b", "missing"]) == {"a": 1, "b": b"two"}
            stats = await b.statistics()  # also lets B's actor take the L1 fills
            assert (stats.l2_hits, stats.l2_misses, stats.l1_entries) == (2, 1, 2)
            assert await b.get_many(["a", "b"]) == {"a": 1, "b": b"two"}
            stats = await b.statistics()
            assert (stats.l1_hits, stats.l2_hits) == (2, 2)  # the second call stayed in L1


async def test_delete_removes_keys_and_counts_what_l2_held(env: CacheEnv) -> None:
    async with env.running_nodes(2) as nodes:
        a, b = nodes.caches
        for key in ("a", "b", "c"):
            await a.set(key, key.upper())
        # How many were held: in Redis with an L2, in L1 without one.
        assert await a.delete("a", "b", "never") == 2
        assert await a.get("a") is None
        assert await a.get("b") is None
        assert await a.exists("a") is False
        assert await a.get("c") == "C"
        assert await a.delete() == 0
        if env.has_l2:
            assert (await b.get("a"), await b.get("b"), await b.get("c")) == (None, None, "C")


async def test_exists_sees_every_layer_and_is_not_a_lookup(env: CacheEnv) -> None:
    async with env.running_nodes(2) as nodes:
        a, b = nodes.caches
        await a.set("k", None)  # None is a value too
        assert await a.get("k", default=MISSING) is None
        assert await a.exists("k") is True
        assert await a.exists("missing") is False
        assert await b.exists("k") is env.has_l2
        assert (await a.statistics()).lookups == 1  # the get, not the exists calls
        assert (await b.statistics()).lookups == 0


# -- TTLs -----------------------------------------------------------------------------------


async def test_the_default_ttl_is_one_hour(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        await cache.set("k", "v")
        env.clock.advance(3599.9)
        assert await cache.get("k") == "v"
        env.clock.advance(0.1)
        assert await cache.get("k") is None
        stats = await cache.statistics()
        assert (stats.l1_hits, stats.l1_misses_expired) == (1, 1)
        # The L2 copy is gone too (for Redis: by its envelope's wall-clock deadline).
        assert (stats.l2_hits, stats.l2_misses) == ((0, 1) if env.has_l2 else (0, 0))


async def test_entries_expire_after_their_ttl_on_every_layer(env: CacheEnv) -> None:
    async with env.running_nodes(2) as nodes:
        a, b = nodes.caches
        await a.set("k", "v", ttl_seconds=10)
        await nodes.settle(1)
        env.clock.advance(9.5)
        assert await a.get("k") == "v"
        if env.has_l2:
            assert await b.get("k") == "v"  # from L2, into B's L1 for the 0.5 s left
            assert (await b.statistics()).l1_entries == 1
        env.clock.advance(0.5)
        assert await a.get("k") is None
        assert (await a.statistics()).l1_misses_expired == 1
        if env.has_l2:
            assert await b.get("k") is None
            stats = await b.statistics()
            assert (stats.l1_misses_expired, stats.l2_hits, stats.l2_misses) == (1, 1, 1)


async def test_get_or_set_uses_the_default_ttl_too(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        loader = Loader(values=["first", "second"])
        assert await cache.get_or_set("k", loader) == "first"
        env.clock.advance(3599.9)
        assert await cache.get_or_set("k", loader) == "first"
        env.clock.advance(0.1)
        assert await cache.get_or_set("k", loader) == "second"
        assert loader.calls == 2


async def test_a_per_call_prefix_isolates_keys(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        await cache.set("k", "plain")
        await cache.set("k", "one", prefix="t1")
        await cache.set("k", "two", prefix="t2")
        assert await cache.get("k") == "plain"
        assert await cache.get("k", prefix="t1") == "one"
        assert await cache.get("k", prefix="t2") == "two"
        assert await cache.get("k", prefix="t3") is None
        assert await cache.get("t1:k") == "one"  # documented: a sub-prefix is a key prefix
        assert await cache.invalidate_pattern("*", prefix="t1") == 1
        assert await cache.get("k", prefix="t1") is None
        assert await cache.delete("k", prefix="t2") == 1
        assert await cache.get("k", prefix="t2") is None
        assert await cache.get("k") == "plain"


# -- invalidation ---------------------------------------------------------------------------

PATTERN_KEYS = ("user:1", "user:2", "user:10", "user:a", "order:1")


@pytest.mark.parametrize(
    ("pattern", "removed"),
    [
        ("user:?", {"user:1", "user:2", "user:a"}),
        ("user:[12]*", {"user:1", "user:2", "user:10"}),
        ("user:[^0-9]", {"user:a"}),
        ("user:[a-z]", {"user:a"}),
        ("[uo]*:1*", {"user:1", "user:10", "order:1"}),
        ("user:1?", {"user:10"}),
        ("nothing:*", set()),
    ],
)
async def test_invalidate_pattern_removes_exactly_the_matching_keys(
    env: CacheEnv, pattern: str, removed: set[str]
) -> None:
    async with env.running_nodes(2) as nodes:
        a, b = nodes.caches
        for key in PATTERN_KEYS:
            await a.set(key, key)
        await a.set("user:1", "other prefix", prefix="p")
        assert await a.invalidate_pattern(pattern) == len(removed)
        expected = {key: key for key in PATTERN_KEYS if key not in removed}
        assert await a.get_many(PATTERN_KEYS) == expected
        stats = await a.statistics()
        assert (stats.l1_hits, stats.l1_misses_invalidated) == (len(expected), len(removed))
        if env.has_l2:  # and L2 agrees: B reads it with an empty L1
            assert await b.get_many(PATTERN_KEYS) == expected
        assert await a.get("user:1", prefix="p") == "other prefix"


async def test_invalidate_tag_removes_the_tagged_entries_on_every_layer(env: CacheEnv) -> None:
    async with env.running_nodes(2) as nodes:
        a, b = nodes.caches
        await a.set("a", 1, tags=["t1"])
        await a.set("b", 2, tags=["t1", "t2"])
        await a.set("c", 3, tags=["t2"])
        await a.set("d", 4)
        assert await a.get_or_set("e", Loader(5), tags=["t1"]) == 5
        assert await a.invalidate_tag("t1") == 3
        keys = ["a", "b", "c", "d", "e"]
        assert await a.get_many(keys) == {"c": 3, "d": 4}
        if env.has_l2:
            assert await b.get_many(keys) == {"c": 3, "d": 4}
        assert await a.invalidate_tag("t1") == 0
        await a.set("a", 6, tags=["t1"])  # a new tag set starts after an invalidation
        assert await a.invalidate_tag("t1") == 1
        assert await a.get("a") is None
        assert await a.invalidate_tag("t2") == 1
        assert await a.get_many(keys) == {"d": 4}


# -- L1 bounds ------------------------------------------------------------------------------


async def test_l1_holds_at_most_l1_max_entries(env: CacheEnv) -> None:
    async with env.running_cache(settings=CacheSettings(l1_max_entries=100)) as cache:
        for i in range(1000):
            await cache.set(f"k{i}", i)
        stats = await cache.statistics()
        assert stats.l1_entries <= 100
        assert stats.l1_evictions >= 900
        if env.has_l2:  # every key is still there, in L2
            for i in range(1000):
                assert await cache.get(f"k{i}") == i
            stats = await cache.statistics()
            assert stats.l1_entries <= 100
            assert stats.l2_hits >= 900


async def test_l1_holds_at_most_l1_max_bytes(env: CacheEnv) -> None:
    async with env.running_cache(settings=CacheSettings(l1_max_bytes=1000)) as cache:
        for i in range(50):
            await cache.set(f"k{i}", bytes([i]) * 100)
        stats = await cache.statistics()
        assert stats.l1_bytes <= 1000
        assert stats.l1_entries <= 10
        assert stats.l1_evictions >= 40
        big = b"B" * 2000  # larger than all of L1, within max_value_bytes
        await cache.set("small", b"old")
        if not env.has_l2:  # nowhere could hold it: refused, and nothing changed
            with pytest.raises(Rejected) as refused:
                await cache.set("small", big)
            assert refused.value.code == "value_too_large"
            assert "l1_max_bytes" in refused.value.message
            assert await cache.get("small") == b"old"
            return
        await cache.set("big", big)
        assert (await cache.statistics()).l1_bytes <= 1000
        if env.has_l2:
            assert await cache.get("big") == big  # it lives in L2 only
            for i in range(50):
                assert await cache.get(f"k{i}") == bytes([i]) * 100
            assert (await cache.statistics()).l1_bytes <= 1000


async def test_an_entry_evicted_from_l1_misses_by_eviction(env: CacheEnv) -> None:
    async with env.running_cache(settings=CacheSettings(l1_max_entries=1)) as cache:
        await cache.set("x1", 1)
        await cache.set("x2", 2)
        values = [await cache.get("x1"), await cache.get("x2")]
        stats = await cache.statistics()
        assert (stats.l1_hits, stats.l1_misses_evicted, stats.l1_entries) == (1, 1, 1)
        if env.has_l2:
            assert values == [1, 2]
            assert stats.l2_hits == 1
        else:
            assert values in ([1, None], [None, 2])


# -- negative caching -----------------------------------------------------------------------


async def test_a_loader_returning_none_is_remembered_for_negative_ttl_seconds(
    env: CacheEnv,
) -> None:
    async with env.running_cache(settings=CacheSettings(negative_ttl_seconds=5)) as cache:
        loader = Loader(None)
        assert await cache.get_or_set("ghost", loader) is None
        assert await cache.get_or_set("ghost", loader) is None
        assert loader.calls == 1
        assert await cache.get("ghost", default="absent") == "absent"
        assert await cache.exists("ghost") is False
        env.clock.advance(4.9)
        assert await cache.get_or_set("ghost", loader) is None
        assert loader.calls == 1
        env.clock.advance(0.1)
        assert await cache.get_or_set("ghost", loader) is None
        assert loader.calls == 2
        await cache.set("ghost", "real")  # a write replaces the negative entry
        assert await cache.get_or_set("ghost", loader) == "real"
        assert loader.calls == 2


async def test_without_negative_ttl_a_loader_none_is_not_cached(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        loader = Loader(None)
        assert await cache.get_or_set("ghost", loader) is None
        assert await cache.get_or_set("ghost", loader) is None
        assert loader.calls == 2
        assert await cache.exists("ghost") is False
