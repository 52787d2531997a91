"""A job handed back on shutdown is taken at once by an idle node, not at its next poll.

Two real nodes share one Redis. The leaving node holds two ``hold`` jobs; the
taking node is idle with a 30 s ``poll_seconds`` (and every lease is 60 s),
so only a wake-up sent with the hand-back can explain the taking node
starting them within a few seconds of the leaving node's SIGTERM.
"""

from __future__ import annotations

import functools
import logging
import signal

import anyio
import pytest
import redis.asyncio

from runtime.testing import NodeProcess, RedisServer
from tests.actors.queue.nodes_queue_support import producer, queue_node, records
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_app import HELD, HELD_DONE

pytestmark = [pytest.mark.redis, pytest.mark.e2e]
log = logging.getLogger(__name__)
GRACE = 1.0
POLL = 30.0
LEASE = 60.0


async def _ready(node: NodeProcess) -> None:
    node.start(wait_ready=False)
    await anyio.to_thread.run_sync(
        functools.partial(node.wait_for_log, "node listening on", timeout_seconds=45)
    )


async def test_a_handed_back_job_wakes_an_idle_node_at_once() -> None:
    env = {
        "SWITCHYARD_QUEUE_CONCURRENCY": "default=4",
        "SWITCHYARD_QUEUE_LEASE_SECONDS": str(LEASE),
        "SWITCHYARD_QUEUE_POLL_SECONDS": str(POLL),
        "SWITCHYARD_QUEUE_SHUTDOWN_GRACE_SECONDS": str(GRACE),
    }
    with RedisServer() as server:
        leaving, taking = queue_node(server.url, **env), queue_node(server.url, **env)
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            await _ready(leaving)
            async with producer(server.url) as queue:
                held = [(await queue.enqueue("hold", {"gate": "gate"})).id for _ in range(2)]

                async def started(count: int) -> bool:
                    return len(await records(server.url, HELD)) == count

                await poll_until(functools.partial(started, 2), timeout_seconds=15)
                await _ready(taking)  # it claims at boot, finds nothing, then idles on POLL
                assert (await queue.counts("default")).waiting == 0

                sigterm = anyio.current_time()
                leaving.signal(signal.SIGTERM)
                # The grace, then a prompt take: far below POLL (and LEASE).
                await poll_until(
                    functools.partial(started, 4), timeout_seconds=GRACE + 6, interval=0.02
                )
                rerun = anyio.current_time() - sigterm
                status = await anyio.to_thread.run_sync(leaving.wait, 20)
                await client.set("gate", 1)

                async def completed() -> bool:
                    return (await queue.counts("default")).completed == len(held)

                await poll_until(completed, timeout_seconds=15)
                jobs = [await queue.get(job_id) for job_id in held]
        finally:
            await client.aclose()
            taking.stop()
            leaving.stop()
        starts = await records(server.url, HELD)
        done = await records(server.url, HELD_DONE)
    log.warning("handed back after a %.1fs grace, re-run on an idle node at %.2fs", GRACE, rerun)
    assert status == 0
    assert GRACE <= rerun < GRACE + 6
    gone, other = str(leaving.pid), str(taking.pid)
    assert sorted(starts) == sorted([[i, gone] for i in held] + [[i, other] for i in held])
    assert sorted(done) == sorted([i, other] for i in held)
    assert all(job is not None and job.state == "completed" for job in jobs), jobs
