"""The cache actor through its Python API, on every layer stack.

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

from actors.cache import Cache, CacheSettings, CacheStatistics, MemoryL2, cache_child
from runtime import MemoryFanout, RedisUnavailable, Rejected
from runtime.testing import ManualClock

from .conftest import PREFIX, CacheEnv, Loader, gather

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


# -- stale while revalidate -----------------------------------------------------------------


async def test_a_stale_value_is_served_at_once_while_one_refresh_runs(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        first = Loader("v1")
        assert await cache.get_or_set("k", first, ttl_seconds=10, stale_seconds=5) == "v1"
        env.clock.advance(12)
        refresh = Loader("v2")
        refresh.hold()  # the callers below must not wait for it

        def caller() -> Any:
            return cache.get_or_set("k", refresh, ttl_seconds=10, stale_seconds=5)

        with anyio.fail_after(5):
            assert await gather(*[caller] * 50) == ["v1"] * 50
            await refresh.entered.wait()
        await anyio.wait_all_tasks_blocked()
        assert refresh.calls == 1
        refresh.release()
        with anyio.fail_after(5):
            await refresh.returned.wait()
        await anyio.wait_all_tasks_blocked()  # the refresh stores what its loader returned
        assert await cache.get_or_set("k", first, ttl_seconds=10, stale_seconds=5) == "v2"
        assert await cache.get("k") == "v2"
        assert (first.calls, refresh.calls) == (1, 1)
        stats = await cache.statistics()
        assert (stats.stale_refreshes, stats.l1_stale_hits, stats.loader_calls) == (1, 50, 2)


async def test_past_the_stale_window_callers_wait_for_the_loader(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        assert await cache.get_or_set("k", Loader("v1"), ttl_seconds=10, stale_seconds=5) == "v1"
        env.clock.advance(15)
        assert await cache.get("k") is None
        loader = Loader("v2")
        loader.hold()
        results: list[object] = []
        async with anyio.create_task_group() as tg:

            async def caller() -> None:
                results.append(await cache.get_or_set("k", loader, ttl_seconds=10))

            tg.start_soon(caller)
            with anyio.fail_after(5):
                await loader.entered.wait()
            await anyio.wait_all_tasks_blocked()
            waited = results == []
            loader.release()
        assert waited
        assert results == ["v2"]


# -- single flight --------------------------------------------------------------------------


async def test_concurrent_misses_run_the_loader_once(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        loader = Loader({"id": 7})
        loader.hold()
        results: list[object] = []
        async with anyio.create_task_group() as tg:

            async def caller() -> None:
                results.append(await cache.get_or_set("user:7", loader))

            for _ in range(100):
                tg.start_soon(caller)
            with anyio.fail_after(5):
                await loader.entered.wait()
            await anyio.wait_all_tasks_blocked()  # all 100 callers are waiting now
            calls_while_held = loader.calls
            loader.release()
        assert calls_while_held == 1
        assert results == [{"id": 7}] * 100
        assert loader.calls == 1
        stats = await cache.statistics()
        assert (stats.single_flight_joins, stats.loader_calls, stats.l1_misses_absent) == (
            99,
            1,
            100,
        )
        assert await cache.get("user:7") == {"id": 7}


async def test_a_loader_error_reaches_every_waiter_and_the_next_call_retries(
    env: CacheEnv,
) -> None:
    async with env.running_cache() as cache:
        loader = Loader(error=LookupError("user 7 not found"))
        loader.hold()
        errors: list[BaseException] = []
        async with anyio.create_task_group() as tg:

            async def caller() -> None:
                try:
                    await cache.get_or_set("user:7", loader)
                except LookupError as exc:
                    errors.append(exc)

            for _ in range(100):
                tg.start_soon(caller)
            with anyio.fail_after(5):
                await loader.entered.wait()
            await anyio.wait_all_tasks_blocked()
            loader.release()
        assert [(type(e), str(e)) for e in errors] == [(LookupError, "user 7 not found")] * 100
        assert await cache.get("user:7", default=MISSING) is MISSING  # nothing was cached
        loader.error = None
        loader.value = "ada"
        assert await cache.get_or_set("user:7", loader) == "ada"
        assert loader.calls == 2
        stats = await cache.statistics()
        assert (stats.single_flight_joins, stats.loader_calls, stats.loader_errors) == (99, 2, 1)


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


REJECTIONS = [
    pytest.param(
        lambda c: c.get("a b"),
        "invalid_key",
        "cache key 'a b' contains the whitespace or control character ' ' at index 1; remove it",
        id="space-in-key",
    ),
    pytest.param(
        lambda c: c.set("", 1),
        "invalid_key",
        "cache key '' is empty; use 1 to 256 characters",
        id="empty-key",
    ),
    pytest.param(
        lambda c: c.set("user:*", 1),
        "invalid_key",
        "cache key 'user:*' contains the glob metacharacter '*' at index 5; "
        "none of * ? [ ] \\ may appear in a cache key",
        id="glob-in-key",
    ),
    pytest.param(
        lambda c: c.get("x" * 257),
        "invalid_key",
        f"cache key '{'x' * 76}... is 257 characters long; the limit is 256",
        id="long-key",
    ),
    pytest.param(
        lambda c: c.exists(7),
        "invalid_key",
        "cache key must be a string, got int 7",
        id="int-key",
    ),
    pytest.param(
        lambda c: c.get_many(["ok", "a\tb"]),
        "invalid_key",
        "cache key 'a\\tb' contains the whitespace or control character '\\t' at index 1; "
        "remove it",
        id="tab-in-get-many",
    ),
    pytest.param(
        lambda c: c.get("k", prefix="a b"),
        "invalid_key",
        "cache sub-prefix 'a b' contains the whitespace or control character ' ' at index 1; "
        "remove it",
        id="bad-sub-prefix",
    ),
    pytest.param(
        lambda c: c.set("k", 1, ttl_seconds=0),
        "invalid_ttl",
        "ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got 0",
        id="zero-ttl",
    ),
    pytest.param(
        lambda c: c.set("k", 1, ttl_seconds=math.nan),
        "invalid_ttl",
        "ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got nan",
        id="nan-ttl",
    ),
    pytest.param(
        lambda c: c.set("k", 1, ttl_seconds=31 * 24 * 3600),
        "invalid_ttl",
        "ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got 2678400",
        id="ttl-over-30-days",
    ),
    pytest.param(
        lambda c: c.get_or_set("k", Loader(), ttl_seconds=-1),
        "invalid_ttl",
        "ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got -1",
        id="negative-ttl-get-or-set",
    ),
    pytest.param(
        lambda c: c.set("k", 1, tags=["a b"]),
        "invalid_tag",
        "cache tag 'a b' contains the whitespace or control character ' ' at index 1; remove it",
        id="bad-tag",
    ),
    pytest.param(
        lambda c: c.invalidate_tag("t?"),
        "invalid_tag",
        "cache tag 't?' contains the glob metacharacter '?' at index 1; "
        "none of * ? [ ] \\ may appear in a cache tag",
        id="glob-in-tag",
    ),
    pytest.param(
        lambda c: c.invalidate_pattern("user:["),
        "invalid_pattern",
        "cache pattern 'user:[' has an unclosed '[' at index 5; "
        "close the class with ']' or escape the bracket as '\\['",
        id="unclosed-class",
    ),
    pytest.param(
        lambda c: c.invalidate_pattern("user:[!a]"),
        "invalid_pattern",
        "cache pattern 'user:[!a]' opens a class with '!' at index 5; Redis negates with '^', "
        "so write '[^...]', or '[\\!...]' for a literal '!'",
        id="bang-class",
    ),
    pytest.param(
        lambda c: c.invalidate_pattern(""),
        "invalid_pattern",
        "cache pattern '' is empty; use '*' to match every key",
        id="empty-pattern",
    ),
    pytest.param(
        lambda c: c.set("k", b"x" * 65),
        "value_too_large",
        "the value (bytes) is 65 bytes; the limit is 64 bytes (max_value_bytes)",
        id="oversize-bytes",
    ),
    pytest.param(
        lambda c: c.set("k", "x" * 64),
        "value_too_large",
        "the value (str) encodes to 66 bytes; the limit is 64 bytes (max_value_bytes)",
        id="oversize-object",
    ),
    pytest.param(
        lambda c: c.get_or_set("k", Loader(b"x" * 65)),
        "value_too_large",
        "the value (bytes) is 65 bytes; the limit is 64 bytes (max_value_bytes)",
        id="oversize-loaded-value",
    ),
    pytest.param(
        lambda c: c.set("k", object()),
        "unencodable_value",
        "cannot encode a value of type object as msgpack: "
        "Encoding objects of type object is unsupported",
        id="unencodable",
    ),
]


@pytest.mark.parametrize(("call", "code", "message"), REJECTIONS)
async def test_invalid_input_is_rejected_and_changes_nothing(
    env: CacheEnv, call: Any, code: str, message: str
) -> None:
    async with env.running_cache(settings=CacheSettings(max_value_bytes=64)) as cache:
        await cache.set("keep", "kept", tags=["t"])
        with pytest.raises(Rejected) as caught:
            await call(cache)
        assert (caught.value.code, caught.value.message) == (code, message)
        assert str(caught.value) == f"{code}: {message}"
        assert await cache.get("keep") == "kept"
        assert await cache.get("k", default=MISSING) is MISSING
        stats = await cache.statistics()
        assert (stats.l1_entries, stats.writes) == (1, 1 if env.has_l2 else 0)


async def test_a_key_of_an_unhashable_type_is_rejected_like_any_invalid_key(
    env: CacheEnv,
) -> None:
    # Regression (_facade.py, Cache._full): the memo lookup used to hash (key, prefix) before
    # the key was validated, so a list key raised a bare TypeError; now it is invalid_key.
    async with env.running_cache() as cache:
        with pytest.raises(Rejected) as caught:
            await cache.get(["a"])  # type: ignore[arg-type]
        assert (caught.value.code, caught.value.message) == (
            "invalid_key",
            "cache key must be a string, got list ['a']",
        )


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        pytest.param(lambda c: c.set("k", 1, stale_seconds=-1), "stale_seconds", id="stale"),
        pytest.param(
            lambda c: c.get_or_set("k", Loader(), stale_seconds=math.inf),
            "stale_seconds",
            id="stale-get-or-set",
        ),
    ],
)
async def test_a_bad_stale_seconds_is_rejected_naming_that_argument(
    env: CacheEnv, call: Any, argument: str
) -> None:
    # Regression (stale_seconds validation): the message used to say "ttl_seconds must be
    # ...", telling the caller to fix the wrong argument; now it names the argument given.
    async with env.running_cache() as cache:
        with pytest.raises(Rejected) as caught:
            await call(cache)
        assert caught.value.code == "invalid_ttl"
        assert caught.value.message.startswith(f"{argument} must be"), caught.value.message


async def test_a_refresh_seconds_of_zero_is_rejected_naming_that_argument(env: CacheEnv) -> None:
    # Regression (_facade.py, Cache.warm): the same, for refresh_seconds; now it is named.
    async with env.running_cache() as cache:
        with pytest.raises(Rejected) as caught:
            cache.warm("k", Loader(), refresh_seconds=0)
        assert caught.value.code == "invalid_ttl"
        assert caught.value.message.startswith("refresh_seconds must be"), caught.value.message


async def test_tags_given_as_one_string_are_not_split_into_letters(env: CacheEnv) -> None:
    # Regression (tag validation in set and get_or_set): ``tuple(... for tag in tags)`` used
    # to iterate a str, so tags="users" tagged the entry "u", "s", "e", "r", "s", hidden from
    # L1Store and RedisL2, which refuse a bare string; now a bare string is invalid_tag.
    async with env.running_cache() as cache:
        try:
            await cache.set("k", 1, tags="users")
        except (TypeError, Rejected):
            return  # refusing a bare string is fine too
        await cache.invalidate_tag("users")
        assert await cache.get("k") is None


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


# -- warming --------------------------------------------------------------------------------


async def test_warm_loads_the_key_when_the_cache_starts(env: CacheEnv) -> None:
    loader = Loader("warm")
    async with env.running_cache(setup=lambda c: c.warm("hot", loader, tags=["w"])) as cache:
        with anyio.fail_after(5):
            await loader.returned.wait()
        await anyio.wait_all_tasks_blocked()
        assert await cache.get("hot") == "warm"
        assert (await cache.statistics()).l1_hits == 1
        assert await cache.invalidate_tag("w") == 1
        assert loader.calls == 1


async def test_warm_reloads_the_key_every_refresh_seconds(env: CacheEnv) -> None:
    # Regression (_actor.py, CacheActor._join_or_fly): a scheduled refresh sends force=True,
    # and a fresh L1 copy used to answer it before the force flag was looked at, so the
    # loader never ran again while the warmed value was fresh (refresh_seconds < TTL); now
    # force skips the L1 check and the loader runs at every refresh.
    loader = Loader(values=["v1", "v2", "v3"])
    async with env.running_cache(
        setup=lambda c: c.warm("hot", loader, refresh_seconds=60)
    ) as cache:
        with anyio.fail_after(5):
            await loader.returned.wait()
        await anyio.wait_all_tasks_blocked()
        assert await cache.get("hot") == "v1"
        env.clock.advance(59.9)
        await anyio.wait_all_tasks_blocked()
        assert loader.calls == 1
        env.clock.advance(0.1)
        await anyio.wait_all_tasks_blocked()
        assert loader.calls == 2
        assert await cache.get("hot") == "v2"


async def test_a_failing_warmer_is_retried_at_the_next_refresh(env: CacheEnv) -> None:
    loader = Loader("warm", error=ConnectionError("database down"))
    async with env.running_cache(
        setup=lambda c: c.warm("hot", loader, refresh_seconds=60)
    ) as cache:
        with anyio.fail_after(5):
            await loader.returned.wait()
        await anyio.wait_all_tasks_blocked()
        assert await cache.get("hot") is None
        loader.error = None
        env.clock.advance(60)
        await anyio.wait_all_tasks_blocked()
        assert loader.calls == 2
        assert await cache.get("hot") == "warm"
        stats = await cache.statistics()
        assert (stats.loader_calls, stats.loader_errors) == (2, 1)


# -- @cached --------------------------------------------------------------------------------


async def test_cached_with_a_key_template(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        calls: list[int] = []

        @cache.cached(ttl_seconds=60, key="user:{user_id}")
        async def load_user(user_id: int, verbose: bool = False) -> dict[str, int]:
            calls.append(user_id)
            return {"id": user_id}

        assert load_user.__name__ == "load_user"
        assert await load_user(42) == {"id": 42}
        assert await load_user(42, verbose=True) == {"id": 42}  # not part of the key
        assert await load_user(user_id=42) == {"id": 42}
        assert calls == [42]
        # Regression: the key used to be stored under a hidden "fn:" sub-prefix, so get("user:42")
        # missed and invalidate_pattern("user:*") removed nothing; now it is the key as written.
        assert await cache.get("user:42") == {"id": 42}
        assert await cache.get("user:42", prefix="fn") is None
        assert await load_user(7) == {"id": 7}
        assert calls == [42, 7]
        assert await cache.invalidate_pattern("user:*") == 2
        assert await cache.get("user:42") is None
        assert await load_user(42) == {"id": 42}
        assert calls == [42, 7, 42]
        env.clock.advance(60)
        assert await load_user(42) == {"id": 42}
        assert calls == [42, 7, 42, 42]


async def test_cached_default_key_is_stable_over_how_arguments_are_passed(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        calls: list[tuple[int, int, int]] = []

        @cache.cached()
        async def total(a: int, b: int = 0, *, scale: int = 1) -> int:
            calls.append((a, b, scale))
            return (a + b) * scale

        assert await total(1, 2) == 3
        assert await total(1, b=2) == 3
        assert await total(a=1, b=2) == 3
        assert await total(b=2, a=1) == 3
        assert await total(1, 2, scale=1) == 3  # defaults are part of the key
        assert calls == [(1, 2, 1)]
        assert await total(2, 1) == 3
        assert await total(1, 2, scale=3) == 9
        assert calls == [(1, 2, 1), (2, 1, 1), (1, 2, 3)]
        name = f"{total.__module__}.{total.__qualname__}"
        # Only the automatic key lives under the hidden "fn" sub-prefix.
        assert await cache.invalidate_pattern(f"{name}:*", prefix="fn") == 3
        assert await total(1, 2) == 3
        assert len(calls) == 4
        with pytest.raises(Rejected) as caught:
            await total(object())  # type: ignore[arg-type]
        assert (caught.value.code, caught.value.message) == (
            "unhashable_arguments",
            f"cannot build a cache key for {name}: Encoding objects of type object is "
            "unsupported; pass key= to @cached",
        )


async def test_concurrent_calls_of_a_cached_function_share_one_execution(env: CacheEnv) -> None:
    async with env.running_cache() as cache:
        gate = anyio.Event()
        calls: list[int] = []

        @cache.cached(key="square:{n}")
        async def square(n: int) -> int:
            calls.append(n)
            await gate.wait()
            return n * n

        async with anyio.create_task_group() as tg:
            results: list[int] = []

            async def caller() -> None:
                results.append(await square(9))

            for _ in range(10):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            gate.set()
        assert (results, calls) == ([81] * 10, [9])


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
            loader_calls=1,
            loader_errors=0,
            single_flight_joins=0,
            stale_refreshes=0,
            writes=5 if has_l2 else 0,  # set a, set gone, delete gone, set short, store loaded
            degraded_writes=0,
            replayed_writes=0,
            replay_dropped=0,
            write_queue_depth=0,
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
