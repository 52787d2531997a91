"""What only the Redis job store does: one slot per queue, bounded memory, data loss, races."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from actors.queue._keys import QueueKeys
from actors.queue._model import Retention
from actors.queue._store import Finish, StoreLost
from actors.queue._store_redis import RedisJobStore
from runtime import RedisFanout, RedisLink, RedisUnavailable
from runtime.testing import ManualClock, RedisServer

from .store_support import QUEUES, new_job

pytestmark = pytest.mark.redis
KEYS = QueueKeys("t")
WAIT_SECONDS = 5.0


@contextlib.asynccontextmanager
async def opened(url: str, **kw: Any) -> AsyncIterator[tuple[RedisLink, RedisJobStore]]:
    async with RedisLink(url, clock=ManualClock()) as link:
        store = RedisJobStore(link, KEYS, QUEUES, **kw)
        await store.open()
        yield link, store


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (its first non-empty ``{...}``)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    assert start >= 0 and end > start + 1, key
    return key[start + 1 : end]


async def test_every_key_of_a_queue_is_in_one_slot(redis_url: str) -> None:
    async with opened(redis_url) as (link, store):
        await store.add([new_job("a", user_id="u", dedup_key="k"), new_job("b", run_at=2000)], 1000)
        [claim] = await store.claim("default", 1, 1000, 30)
        await store.cancel("default.b", 1000, None)
        await store.finish([Finish(job_id=claim.job.id, token=claim.token, outcome="completed",
                                   finished_at=1001)])  # fmt: skip
        keys = [k.decode() async for k in link.client.scan_iter(match="t:queue:*")]
        assert keys
        assert {hash_tag(k) for k in keys} == set(QUEUES)  # email: its marker
        default = [k for k in keys if "default" in k]
        assert len(default) > 5 and all(k.startswith("t:queue:{default}:") for k in default)
        assert {hash_tag(k) for k in default} == {"default"}  # Redis Cluster hashes only the tag


async def test_memory_is_bounded_by_retention(redis_url: str) -> None:
    async with opened(redis_url) as (link, store):
        retention = Retention(count=100)
        for batch in range(20):
            jobs = [new_job(f"{batch}-{i}", remove_on_complete=retention) for i in range(100)]
            await store.add(jobs, 1000 + batch)
            claims = await store.claim("default", 100, 1000 + batch, 30)
            await store.finish([Finish(job_id=c.job.id, token=c.token, outcome="completed",
                                       finished_at=1000 + batch) for c in claims])  # fmt: skip
        hashes = [k async for k in link.client.scan_iter(match="t:queue:{default}:job:*")]
        assert len(hashes) == 100
        assert (await store.counts("default")).completed == 100


async def test_marker_lost_after_an_empty_restart(redis_server: RedisServer) -> None:
    async with opened(redis_server.url) as (_, store):
        epoch = store.epoch
        assert epoch is not None
        await store.check()  # unchanged: passes
        redis_server.restart(empty=True)
        with pytest.raises(StoreLost):
            try:
                await store.check()
            except RedisUnavailable:  # the pooled connection broke with the restart
                await store.check()
        assert store.epoch != epoch
        await store.check()  # the marker was rewritten: the next call passes


async def test_two_stores_never_claim_the_same_job(redis_url: str) -> None:
    async with opened(redis_url) as (_, one), opened(redis_url) as (_, two):
        await one.add([new_job(f"{i:04d}") for i in range(500)], 1000)
        claimed: list[str] = []

        async def worker(store: RedisJobStore) -> None:
            while claims := await store.claim("default", 7, 1000, 30):
                claimed.extend(c.job.id for c in claims)
                await store.finish([Finish(job_id=c.job.id, token=c.token, outcome="completed",
                                           finished_at=1001) for c in claims])  # fmt: skip

        with anyio.fail_after(30):
            await asyncio.gather(worker(one), worker(two))
        assert len(claimed) == 500 and len(set(claimed)) == 500


async def test_stale_token_finish_is_a_no_op(redis_url: str) -> None:
    async with opened(redis_url) as (_, store):
        await store.add([new_job("s")], 1000)
        [old] = await store.claim("default", 1, 1000, 10)
        [new] = await store.claim("default", 1, 1020, 10)
        stale = Finish(job_id="default.s", token=old.token, outcome="failed", finished_at=1021)
        assert await store.finish([stale]) == [False]
        job = await store.get("default.s")
        assert job is not None and job.state == "active" and job.token == new.token


async def test_add_publishes_a_wake_up(redis_url: str) -> None:
    async with RedisLink(redis_url, clock=ManualClock()) as link:
        fanout = RedisFanout(link, prefix="sw:fanout")
        store = RedisJobStore(link, KEYS, QUEUES, fanout=fanout)
        async with anyio.create_task_group() as tg:
            await tg.start(link.run)
            await tg.start(fanout.run)
            with anyio.fail_after(WAIT_SECONDS):
                await fanout.wait_connected()
            await store.open()
            async with fanout.subscribe(QueueKeys.channel("email")) as sub:
                await store.add([new_job("w", queue="email")], 1000)
                with anyio.fail_after(WAIT_SECONDS):
                    item = await sub.receive()
                assert item == b"wake"
            tg.cancel_scope.cancel()


async def test_rate_limit_is_shared_by_stores(redis_url: str) -> None:
    limits = {"default": (4, 60.0)}
    async with (
        opened(redis_url, rate_limits=limits) as (_, one),
        opened(redis_url, rate_limits=limits) as (_, two),
    ):
        await one.add([new_job(f"{i}") for i in range(10)], 1000)
        got = len(await one.claim("default", 3, 1000, 30))
        got += len(await two.claim("default", 3, 1000, 30))
        got += len(await two.claim("default", 3, 1000, 30))
        assert got == 4


async def evalsha_calls(link: RedisLink) -> int:
    stats = await link.client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_batches_are_one_script_call(redis_url: str) -> None:
    async with opened(redis_url) as (link, store):
        # Warm every script first: a script the server has not seen costs a NOSCRIPT reply
        # and a resend, which would be counted below when this test runs on a fresh Redis.
        await store.add([new_job("warm")], 1000)
        (warm,) = await store.claim("default", 1, 1000, 30)
        await store.renew("default", [(warm.job.id, warm.token)], 1000, 30)
        await store.finish([Finish(job_id=warm.job.id, token=warm.token, outcome="completed",
                                   finished_at=1000)])  # fmt: skip
        before = await evalsha_calls(link)
        await store.add([new_job(f"{i}") for i in range(50)], 1000)
        claims = await store.claim("default", 50, 1000, 30)
        await store.renew("default", [(c.job.id, c.token) for c in claims], 1001, 30)
        await store.finish([Finish(job_id=c.job.id, token=c.token, outcome="completed",
                                   finished_at=1002) for c in claims])  # fmt: skip
        assert len(claims) == 50
        assert await evalsha_calls(link) - before == 4
