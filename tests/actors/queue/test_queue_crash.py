"""A node SIGKILLed under 1,000 jobs: every job completes, recorded exactly once.

Two real nodes (``python -m runtime``) share one Redis (AOF on) and the
``default`` queue; the test process enqueues 1,000 jobs through the ``Queue``
facade, SIGKILLs one node once a fifth have run, and waits for the survivor
to finish the rest after the dead node's leases (2 s) run out.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import anyio
import redis.asyncio

from actors.queue import EnqueueRequest, JobOptions, QueueSettings, Retention, queue_child
from runtime import RedisLink, SystemClock
from runtime.testing import NodeProcess, RedisServer
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_app import EXECUTIONS, Work

ROOT = Path(__file__).resolve().parents[3]
JOBS = 1000
CONCURRENCY = 20
log = logging.getLogger(__name__)


def _node(url: str) -> NodeProcess:
    env = {
        "SWITCHYARD_REDIS_URL": url,
        "SWITCHYARD_JWT_SECRET": "queue-crash-test-secret-32-bytes-long",
        "SWITCHYARD_QUEUE_CONCURRENCY": f"default={CONCURRENCY}",
        "SWITCHYARD_QUEUE_LEASE_SECONDS": "2",
    }
    return NodeProcess(env, ["--app", "tests.apps.queue_app:setup"], cwd=str(ROOT))


async def test_sigkill_of_a_node_loses_no_job_and_records_each_completion_once() -> None:
    with RedisServer(appendonly=True, appendfsync="everysec") as server:
        nodes = [_node(server.url), _node(server.url)]
        for node in nodes:
            node.start(ready_timeout_seconds=30)
        try:
            client = redis.asyncio.Redis.from_url(server.url)
            async with (
                RedisLink(server.url, clock=SystemClock()) as link,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(link.run)
                await link.wait_until(True)
                _, _, queue = queue_child(
                    settings=QueueSettings(concurrency="default=1"), redis=link
                )  # a producer: its workers are not started
                queue.handler("work", payload=Work)(_never_runs_here)
                keep = JobOptions(remove_on_complete=Retention(count=JOBS))
                added = await queue.enqueue_many(
                    [EnqueueRequest(type="work", payload={"ms": 5}, options=keep)] * JOBS
                )
                assert len({a.id for a in added}) == JOBS

                async def a_fifth_ran() -> bool:
                    return int(await client.llen(EXECUTIONS)) >= JOBS // 5

                await poll_until(a_fifth_ran, timeout_seconds=30)
                nodes[0].signal(signal.SIGKILL)
                nodes[0].wait()
                at_kill = int(await client.llen(EXECUTIONS))

                async def all_completed() -> bool:
                    return (await queue.counts("default")).completed == JOBS

                await poll_until(all_completed, timeout_seconds=60, interval=0.1)
                jobs = [await queue.get(a.id) for a in added]
                tg.cancel_scope.cancel()
            executions = [
                item.decode() if isinstance(item, bytes) else item
                for item in await client.lrange(EXECUTIONS, 0, -1)
            ]
            await client.aclose()
        finally:
            for node in nodes[1:]:
                node.stop()
    assert all(job is not None and job.state == "completed" for job in jobs)
    counts = {job_id: executions.count(job_id) for job_id in {a.id for a in added}}
    assert min(counts.values()) >= 1  # every job ran
    duplicates = len(executions) - JOBS
    log.warning(
        "SIGKILL under %d jobs: %d executions at the kill, %d in all, %d duplicates",
        JOBS,
        at_kill,
        len(executions),
        duplicates,
    )
    assert 0 <= duplicates <= CONCURRENCY, (duplicates, at_kill)  # only what was in flight


async def _never_runs_here(ctx: object) -> None:
    raise AssertionError("the producer's workers never start")
