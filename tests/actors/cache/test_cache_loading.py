"""The cache's Python API for loading: single flight, stale while revalidate, warming, @cached.

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

import anyio
import pytest

from runtime import Rejected

from .conftest import CacheEnv, Loader, gather

MISSING: Any = object()


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
