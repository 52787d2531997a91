"""The queue across real nodes: competing consumers, graceful hand-back, repeatable jobs.

Real ``python -m runtime`` nodes (``tests.apps.queue_app``) share one Redis
(AOF on); the test process enqueues and reads the store through a ``Queue``
facade whose workers never start, and reads the app's execution lists (which
node ran what) from Redis.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from typing import TYPE_CHECKING

import anyio
import pytest

from actors.queue import EnqueueRequest, JobOptions, Retention
from runtime.testing import RedisServer
from tests.actors.queue.nodes_queue_support import producer, queue_node, records
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_app import TAGGED

if TYPE_CHECKING:
    from actors.queue import Job, Queue
    from runtime.testing import NodeProcess

pytestmark = [pytest.mark.redis, pytest.mark.e2e]
log = logging.getLogger(__name__)
READY = "node listening on"


async def _start(nodes: list[NodeProcess]) -> None:
    """Start every node at once and wait until each is ready."""
    for node in nodes:
        node.start(wait_ready=False)
    for node in nodes:
        await anyio.to_thread.run_sync(
            functools.partial(node.wait_for_log, READY, timeout_seconds=45)
        )


def _stop(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        node.stop()  # a node that already exited: a no-op


async def _get_all(queue: Queue, ids: list[str]) -> list[Job]:
    jobs = [await queue.get(job_id) for job_id in ids]
    assert all(job is not None for job in jobs), ids
    return [job for job in jobs if job is not None]


# -- 1. competing consumers ----------------------------------------------------------------

JOBS = 300
RATE_PER_SECOND = 150.0


async def test_three_nodes_share_a_queue_each_job_completed_once() -> None:
    with RedisServer(appendonly=True, appendfsync="always") as server:
        nodes = [queue_node(server.url, SWITCHYARD_QUEUE_CONCURRENCY="default=4") for _ in range(3)]
        try:
            await _start(nodes)
            async with producer(server.url) as queue:
                keep = JobOptions(remove_on_complete=Retention(count=JOBS))
                request = EnqueueRequest(type="tagged", payload={"ms": 50}, options=keep)
                ids: list[str] = []
                began = anyio.current_time()
                for i in range(JOBS):
                    # The producer's pace (a load of RATE_PER_SECOND), not a wait for an outcome.
                    await anyio.sleep_until(began + i / RATE_PER_SECOND)
                    ids.append((await queue.enqueue_many([request]))[0].id)
                enqueued = anyio.current_time() - began

                async def all_completed() -> bool:
                    return (await queue.counts("default")).completed == JOBS

                await poll_until(all_completed, timeout_seconds=30, interval=0.1)
                drained = anyio.current_time() - began
                jobs = await _get_all(queue, ids)
                counts = await queue.counts("default")
                listed = await queue.jobs("default", "completed", 0, 1000)
        finally:
            _stop(nodes)
        executions = await records(server.url, TAGGED)
    assert len(set(ids)) == JOBS
    assert all(job.state == "completed" and job.attempt == 1 for job in jobs)
    assert counts.completed == JOBS and counts.waiting == counts.active == counts.failed == 0
    assert sorted(job.id for job in listed) == sorted(ids)  # each recorded completed once
    ran = Counter(job_id for job_id, _ in executions)
    assert set(ran) == set(ids) and set(ran.values()) == {1}  # no duplicate execution
    split = Counter(int(pid) for _, pid in executions)
    pids = [node.pid for node in nodes]
    assert set(split) <= set(pids)
    shares = [split[pid] for pid in pids]
    log.warning(
        "%d jobs at %.0f/s over 3 nodes: split %s; enqueued in %.2fs, all completed at %.2fs",
        JOBS,
        JOBS / enqueued,
        shares,
        enqueued,
        drained,
    )
    assert all(share >= JOBS // 20 for share in shares), shares  # each node ran a real share
