"""The cache under Redis faults: real nodes, real Redis, steady traffic, judged by the history.

Two in-process nodes share one Redis. Node A writes an increasing counter to
a few hot keys at ~100 writes/s through the facade's ``set``; node B reads
them. Mid-run Redis is killed (SIGKILL) and restarted, or the link is cut
through a :class:`FaultProxy`; the writes go on for a few seconds after, then
stop. Once A's writer has nothing left to send, every key is read on A, on B
and in Redis, and :func:`check_history` judges: no acknowledged write lost,
no key on which A, B and Redis disagree.

The fault is timed by the load itself (after so many writes), not by sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import pytest
import redis.asyncio

from actors.cache import Cache, CacheRead
from actors.cache._codec import decode_value, unpack_entry
from actors.cache._coherence import INVALIDATIONS
from actors.cache._messages import Invalidation
from runtime import Gap, Secret, Settings, SystemClock, TokenVerifier
from runtime.testing import (
    FaultProxy,
    History,
    HistoryReport,
    RedisServer,
    check_history,
    steady,
)

from .conftest import Nodes, open_cache_nodes

pytestmark = pytest.mark.redis
SECRET = "cache-faults-test-secret-32-bytes-long"
logger = logging.getLogger("tests.actors.cache")

HOT_KEYS = 4
RATE = 100.0
#: After the load stops, A, B and Redis must agree within this many seconds.
CONVERGENCE_BOUND_SECONDS = 2.0

FAST_LINK = Settings(
    redis_prefix="sw",
    redis_health_interval_seconds=0.05,  # the link notices the outage soon
    redis_reconnect_max_seconds=0.05,  # and reconnects soon after Redis is back
)


@dataclass
class Outcome:
    """What one scenario measured."""

    report: HistoryReport
    degraded_writes: int
    replayed_writes: int
    converged_seconds: float


def hot_key(i: int) -> str:
    return f"hot:{i % HOT_KEYS}"


async def redis_value(client: redis.asyncio.Redis, key: str) -> int | None:
    blob = await client.get(f"sw:cache:{key}")
    if blob is None:
        return None
    assert isinstance(blob, bytes), blob
    entry = unpack_entry(blob)
    assert entry is not None, blob
    value = decode_value(entry.payload, entry.encoding)
    assert isinstance(value, int), value
    return value


async def finals(nodes: Nodes, client: redis.asyncio.Redis) -> dict[str, dict[str, int | None]]:
    a, b = nodes.caches
    keys = [f"hot:{k}" for k in range(HOT_KEYS)]
    return {
        "node-a": {key: await a.get(key) for key in keys},
        "node-b": {key: await b.get(key) for key in keys},
        "redis": {key: await redis_value(client, key) for key in keys},
    }


async def written(cache: Cache) -> None:
    """Wait until the cache's writer has sent every queued and replayed write to Redis."""
    with anyio.fail_after(CONVERGENCE_BOUND_SECONDS):
        while True:
            stats = await cache.statistics()
            if stats.write_queue_depth == 0 and stats.replay_depth == 0:
                return
            await anyio.sleep(0.01)  # polling the writer: real Redis round trips drain it


async def settled(nodes: Nodes) -> None:
    """Wait until A's writer has sent everything and B has applied every invalidation."""
    a, b = nodes.caches
    await written(a)
    with anyio.fail_after(CONVERGENCE_BOUND_SECONDS):
        # A ping published now arrives after every invalidation A published before it.
        await INVALIDATIONS.bind(nodes.fanouts[0]).publish(Invalidation(node="harness"))
        for sentinel in nodes.sentinels:
            while True:
                event = await sentinel.receive()
                if not isinstance(event, Gap) and b"harness" in event:
                    break
    await b.statistics()  # B's actor has handled what its listener forwarded
    await a.statistics()


async def run_scenario(
    redis_url: str,
    fault: Callable[[int], Awaitable[None]],
    *,
    duration_seconds: float,
) -> Outcome:
    """Write on A and read on B for ``duration_seconds``; ``fault(i)`` runs after write ``i``."""
    history = History()
    async with (
        open_cache_nodes(2, redis_url, settings=FAST_LINK) as (nodes, _),
        contextlib.aclosing(redis.asyncio.Redis.from_url(redis_url)) as client,
    ):
        a, b = nodes.caches

        async def write(i: int) -> None:
            key = hot_key(i)
            started = history.now()
            await a.set(key, i)
            history.write("a", key, i, started=started, acked=history.now(), ok=True)
            await fault(i)

        async def read(i: int) -> None:
            key = hot_key(i)
            started = history.now()
            value = await b.get(key)
            history.read("b", key, value, started=started, finished=history.now())

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: steady(RATE, duration_seconds=duration_seconds, operation=read))
            load = await steady(
                RATE, duration_seconds=duration_seconds, operation=write, max_in_flight=1
            )
        assert load.completed >= RATE * duration_seconds * 0.8, load
        stopped = time.monotonic()
        await settled(nodes)
        converged = time.monotonic() - stopped
        stats = await a.statistics()
        # The client may hold a connection from before a restart: a fresh one reads Redis.
        async with contextlib.aclosing(redis.asyncio.Redis.from_url(redis_url)) as fresh:
            final = await finals(nodes, fresh)
        del client
    report = check_history(history, final=final)
    logger.info(
        "scenario: %s; degraded %d, replayed %d, settled %.3fs after the load stopped",
        report.summary(),
        stats.degraded_writes,
        stats.replayed_writes,
        converged,
    )
    return Outcome(report, stats.degraded_writes, stats.replayed_writes, converged)


def assert_no_lost_update(outcome: Outcome) -> None:
    report = outcome.report
    assert outcome.degraded_writes > 0, "the fault did not reach the writer"
    assert (report.lost_updates, report.divergent_keys) == (0, 0), report.summary()
    assert report.acknowledged == report.writes


def kill_between(
    server: RedisServer, kill_at: int, restart_at: int
) -> Callable[[int], Awaitable[None]]:
    async def fault(i: int) -> None:
        if i == kill_at:
            server.kill()
        elif i == restart_at:
            await anyio.to_thread.run_sync(server.restart)

    return fault


async def test_a_one_second_kill_under_steady_writes_loses_no_update(
    redis_server: RedisServer,
) -> None:
    # Killed after 0.5 s of writes, back ~1 s later, then 2.5 s more of writes.
    fault = kill_between(redis_server, 50, 150)
    assert_no_lost_update(await run_scenario(redis_server.url, fault, duration_seconds=4.0))


async def test_a_short_kill_under_steady_writes_loses_no_update(
    redis_server: RedisServer,
) -> None:
    # Down for 3 writes (~0.03 s at 100/s) plus the restart itself.
    fault = kill_between(redis_server, 50, 53)
    assert_no_lost_update(await run_scenario(redis_server.url, fault, duration_seconds=3.0))


@contextlib.asynccontextmanager
async def proxied(server: RedisServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        yield proxy


async def test_a_cut_link_under_steady_writes_loses_no_update(redis_server: RedisServer) -> None:
    # Redis keeps its data here: the replay meets the pre-outage values, not an empty server.
    async with proxied(redis_server) as proxy:

        async def fault(i: int) -> None:
            if i == 50:
                proxy.refuse()
                proxy.cut(reset=True)
            elif i == 150:
                proxy.heal()

        url = proxy.url_for("redis")
        outcome = await run_scenario(url, fault, duration_seconds=4.0)
        assert proxy.statistics().cut >= 1
    assert_no_lost_update(outcome)


async def test_reads_during_an_outage_say_they_are_degraded(redis_server: RedisServer) -> None:
    settings = Settings(
        redis_prefix="sw",
        redis_health_interval_seconds=0.05,
        redis_reconnect_max_seconds=0.05,
        jwt_secret=Secret(SECRET),
    )
    token = TokenVerifier(SECRET, clock=SystemClock()).issue("root", roles=("admin",))
    admin = {"Authorization": f"Bearer {token}"}
    async with open_cache_nodes(2, redis_server.url, settings=settings) as (nodes, (_, node_b)):
        a, b = nodes.caches
        http_b = node_b.app.test_client()
        await a.set("held", b"in b's l1")
        await a.set("redis-only", b"not in b's l1")
        assert await b.read("held") == CacheRead(found=True, value=b"in b's l1")  # now in B's L1
        healthy = await http_b.get("/api/cache/held", headers=admin)
        assert healthy.status_code == 200
        assert "X-Cache-Degraded" not in healthy.headers
        assert (await http_b.get("/api/cache/never", headers=admin)).status_code == 404

        redis_server.kill()
        with anyio.fail_after(5):
            await nodes.links[1].wait_until(False)
        hit = await http_b.get("/api/cache/held", headers=admin)
        assert (hit.status_code, await hit.get_data()) == (200, b"in b's l1")
        assert hit.headers["X-Cache-Degraded"] == "1"
        for key in ("redis-only", "never"):  # B cannot tell these apart now, and says so
            miss = await http_b.get(f"/api/cache/{key}", headers=admin)
            assert miss.status_code == 503
            assert (await miss.get_json())["error"]["code"] == "cache_unavailable"
            assert miss.headers["Retry-After"] == "1"
        assert await b.read("held") == CacheRead(found=True, value=b"in b's l1", degraded=True)
        assert await b.read("redis-only") == CacheRead(found=False, degraded=True)
        assert await b.get("redis-only") is None  # get() keeps its contract: a miss
        assert (await b.statistics()).degraded_reads == 4  # two over HTTP, two in Python

        await anyio.to_thread.run_sync(redis_server.restart)  # empty: a miss is real again
        with anyio.fail_after(5):
            for link in nodes.links:
                await link.wait_until(True)
        assert (await http_b.get("/api/cache/redis-only", headers=admin)).status_code == 404
        assert await b.read("redis-only") == CacheRead(found=False)
        await a.set("after", b"back")
        await written(a)  # A's writer may still be leaving its post-failure pause
        back = await http_b.get("/api/cache/after", headers=admin)
        assert (back.status_code, await back.get_data()) == (200, b"back")
        assert "X-Cache-Degraded" not in back.headers
