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

import anyio
import pytest

from actors.cache import CacheRead
from runtime import Secret, Settings, SystemClock, TokenVerifier
from runtime.testing import RedisServer

from .conftest import open_cache_nodes
from .fault_support import assert_no_lost_update, kill_between, proxied, run_scenario, written

pytestmark = pytest.mark.redis
SECRET = "cache-faults-test-secret-32-bytes-long"


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


async def test_a_kill_of_redis_with_aof_under_steady_writes_loses_no_update() -> None:
    # With the append only file (fsync always), Redis comes back with its data: the replay
    # must still not write outage-era values over the newer ones the node acknowledged.
    with RedisServer(appendonly=True) as server:
        fault = kill_between(server, 50, 150, empty=False)
        assert_no_lost_update(await run_scenario(server.url, fault, duration_seconds=4.0))


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
