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
from typing import TYPE_CHECKING, NamedTuple

import anyio
import redis.asyncio

from actors.queue import (
    Backoff,
    EnqueueRequest,
    Job,
    JobOptions,
    QueueSettings,
    Retention,
    queue_child,
)
from runtime import RedisLink, RedisUnavailable, SystemClock
from runtime.testing import NodeProcess, RedisServer
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_app import EXECUTIONS, Work

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

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


class Outcome(NamedTuple):
    """What a run saw: the job records, every execution, and the executions at the fault."""

    jobs: list[Job | None]
    ids: set[str]
    executions: list[str]
    at_fault: int


async def _run_through(
    server: RedisServer, fault: Callable[[list[NodeProcess]], Awaitable[None]]
) -> Outcome:
    """1,000 jobs through two nodes; ``fault`` strikes once a fifth have run."""
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
            keep = JobOptions(
                remove_on_complete=Retention(count=JOBS),
                attempts=10,
                backoff=Backoff(base_seconds=0.2, cap_seconds=1.0),
            )
            added = await queue.enqueue_many(
                [EnqueueRequest(type="work", payload={"ms": 5}, options=keep)] * JOBS
            )

            async def a_fifth_ran() -> bool:
                return int(await client.llen(EXECUTIONS)) >= JOBS // 5

            await poll_until(a_fifth_ran, timeout_seconds=30)
            at_fault = int(await client.llen(EXECUTIONS))
            await fault(nodes)

            async def all_completed() -> bool:
                try:
                    return (await queue.counts("default")).completed == JOBS
                except RedisUnavailable:
                    return False

            await poll_until(all_completed, timeout_seconds=60, interval=0.1)
            jobs = [await queue.get(a.id) for a in added]
            tg.cancel_scope.cancel()
        await client.aclose()
        reader = redis.asyncio.Redis.from_url(server.url)  # a fresh link after a Redis fault
        executions = [
            item.decode() if isinstance(item, bytes) else item
            for item in await reader.lrange(EXECUTIONS, 0, -1)
        ]
        await reader.aclose()
    finally:
        for node in nodes:
            node.stop()  # a killed node's is a no-op
    return Outcome(jobs, {a.id for a in added}, executions, at_fault)


def _judge(name: str, outcome: Outcome, most_duplicates: int) -> None:
    assert len(outcome.ids) == JOBS
    assert all(job is not None and job.state == "completed" for job in outcome.jobs)
    assert outcome.ids <= set(outcome.executions)  # every job ran
    assert set(outcome.executions) <= outcome.ids  # and nothing else did
    duplicates = len(outcome.executions) - JOBS
    log.warning(
        "%s under %d jobs: %d executions at the fault, %d in all, %d duplicates",
        name,
        JOBS,
        outcome.at_fault,
        len(outcome.executions),
        duplicates,
    )
    assert 0 <= duplicates <= most_duplicates, (duplicates, outcome.at_fault)


async def test_sigkill_of_a_node_loses_no_job_and_records_each_completion_once() -> None:
    async def kill_a_node(nodes: list[NodeProcess]) -> None:
        nodes[0].signal(signal.SIGKILL)
        nodes[0].wait()

    with RedisServer(appendonly=True, appendfsync="always") as server:
        outcome = await _run_through(server, kill_a_node)
    # Only what the dead node held: its slots, and finishes it had batched but not yet written.
    _judge("SIGKILL of a node", outcome, most_duplicates=2 * CONCURRENCY)


async def test_redis_killed_and_restarted_with_aof_loses_no_job() -> None:
    async def kill_redis(nodes: list[NodeProcess]) -> None:
        server.kill()
        await anyio.sleep(1.0)  # the outage lasts a second: the fault itself, not a wait
        server.start()

    with RedisServer(appendonly=True, appendfsync="always") as server:
        outcome = await _run_through(server, kill_redis)
    # An attempt whose finish was cut off runs again: at most every slot of both nodes.
    _judge("Redis SIGKILL + restart", outcome, most_duplicates=2 * CONCURRENCY)


async def _never_runs_here(ctx: object) -> None:
    raise AssertionError("the producer's workers never start")
