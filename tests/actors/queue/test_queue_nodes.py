"""The queue across real nodes: competing consumers, graceful hand-back, repeatable jobs.

Real ``python -m runtime`` nodes (``tests.apps.queue_app``) share one Redis
(AOF on); the test process enqueues and reads the store through a ``Queue``
facade whose workers never start, and reads the app's execution lists (which
node ran what) from Redis.
"""

from __future__ import annotations

import functools
import logging
import math
import signal
import time
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

import anyio
import pytest
import redis.asyncio

from actors.queue import EnqueueRequest, JobOptions, Retention
from runtime.testing import RedisServer
from tests.actors.queue.nodes_queue_support import producer, queue_node, records
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_app import HELD, HELD_DONE, TAGGED, TICK_CRON_ENV, TICK_EVERY_ENV, TICKS

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
                listed = (await queue.jobs("default", "completed", 0, 1000)).jobs
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


# -- 2. graceful shutdown ------------------------------------------------------------------

GRACE = 2.0
LEASE = "60"  # only a hand-back, never a lease expiry, can explain a prompt re-run


async def test_sigterm_finishes_within_grace_and_hands_back_the_rest_to_another_node() -> None:
    with RedisServer(appendonly=True, appendfsync="always") as server:
        env = {
            "SWITCHYARD_QUEUE_CONCURRENCY": "default=4",
            "SWITCHYARD_QUEUE_LEASE_SECONDS": LEASE,
            "SWITCHYARD_QUEUE_SHUTDOWN_GRACE_SECONDS": str(GRACE),
        }
        leaving, taking = queue_node(server.url, **env), queue_node(server.url, **env)
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            await _start([leaving])
            async with producer(server.url) as queue:
                short = [(await queue.enqueue("hold", {"gate": "gate:short"})).id for _ in range(2)]
                long = [(await queue.enqueue("hold", {"gate": "gate:long"})).id for _ in range(2)]

                async def all_four_started() -> bool:
                    return len(await records(server.url, HELD)) == 4

                await poll_until(all_four_started, timeout_seconds=15)
                waiting = [(await queue.enqueue("tagged", {"ms": 5})).id for _ in range(3)]
                before = await queue.counts("default")

                long_tokens = {job.id: job.token for job in await _get_all(queue, long)}
                sigterm, sigterm_at = anyio.current_time(), time.time()
                leaving.signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(
                    functools.partial(leaving.wait_for_log, "SIGTERM received", timeout_seconds=10)
                )
                await client.set("gate:short", 1)  # the short jobs end within the grace
                taking.start(wait_ready=False)  # boots while the leaving node drains

                async def handed_back() -> bool:
                    jobs = await _get_all(queue, long)
                    return all(
                        job.state != "active" or job.token != long_tokens[job.id] for job in jobs
                    )

                await poll_until(handed_back, timeout_seconds=GRACE + 10, interval=0.02)
                hand_back = anyio.current_time() - sigterm
                status = await anyio.to_thread.run_sync(leaving.wait, GRACE + 15)
                exited = anyio.current_time() - sigterm

                async def long_rerun() -> bool:
                    return len(await records(server.url, HELD)) == 6

                await poll_until(long_rerun, timeout_seconds=30)
                rerun = anyio.current_time() - sigterm
                await client.set("gate:long", 1)

                async def all_completed() -> bool:
                    return (await queue.counts("default")).completed == 7

                await poll_until(all_completed, timeout_seconds=15)
                jobs = {job.id: job for job in await _get_all(queue, short + long + waiting)}
        finally:
            await client.aclose()
            _stop([leaving, taking])
        held = await records(server.url, HELD)
        done = await records(server.url, HELD_DONE)
        tagged = await records(server.url, TAGGED)
    log.warning(
        "SIGTERM with a %.1fs grace: handed back at %.2fs, node exited (status %d) at %.2fs, "
        "long jobs re-run on the other node at %.2fs",
        GRACE,
        hand_back,
        status,
        exited,
        rerun,
    )
    gone, other = str(leaving.pid), str(taking.pid)
    assert before.active == 4 and before.waiting == 3
    assert status == 0 and exited < GRACE + 10
    assert GRACE - 0.5 <= hand_back < GRACE + 5  # the grace was given, then handed back at once
    assert rerun < float(LEASE) / 2  # well before any lease could have expired
    # The short jobs finished on the leaving node, within its grace: one execution each.
    assert all((jobs[i].finished_at or 0.0) < sigterm_at + GRACE for i in short)
    assert sorted(h for h in held if h[0] in short) == sorted([i, gone] for i in short)
    assert sorted(d for d in done if d[0] in short) == sorted([i, gone] for i in short)
    # The long ones started there, were handed back and ran to the end on the other node.
    assert sorted(h for h in held if h[0] in long) == sorted(
        [[i, gone] for i in long] + [[i, other] for i in long]
    )
    assert sorted(d for d in done if d[0] in long) == sorted([i, other] for i in long)
    # The waiting jobs were never taken by the leaving node: one execution each, elsewhere.
    assert sorted(tagged) == sorted([i, other] for i in waiting)
    for job_id in short + long + waiting:
        job = jobs[job_id]
        assert job.state == "completed" and job.attempt == 1, job  # a hand-back spends none


# -- 3. repeatable jobs --------------------------------------------------------------------

EVERY = 1.0
CRON, CRON_PERIOD = "* * * * * */2", 2.0  # croniter's sixth field is the second
PERIODS = 5  # 1 s slots judged with both nodes up, then again with the survivor alone
PERIOD_OF = {"tick": EVERY, "tick-cron": CRON_PERIOD}


def _slot(created: float, period: float) -> float:
    """The slot a tick was enqueued for: its scheduler enqueues at the slot, a little later."""
    return math.floor(created / period + 0.05) * period


class Tick(NamedTuple):
    """One execution of a repeatable job: its schedule, slot, node and job."""

    key: str
    slot: float
    pid: str
    job_id: str
    lag: float


async def _ticks(url: str) -> list[Tick]:
    result = []
    for created, pid, job_id, key in await records(url, TICKS):
        slot = _slot(float(created), PERIOD_OF[key])
        result.append(Tick(key, slot, pid, job_id, float(created) - slot))
    return result


def _judge_schedule(ticks: list[Tick], key: str, period: float) -> Counter[float]:
    """Every slot of ``key`` from its first to its last ran exactly once."""
    slots = Counter(t.slot for t in ticks if t.key == key)
    assert set(slots.values()) == {1}, (key, sorted(s for s, n in slots.items() if n > 1))
    first, last = min(slots), max(slots)
    expected = {first + k * period for k in range(round((last - first) / period) + 1)}
    assert set(slots) == expected, (key, sorted(expected - set(slots)))  # none missed
    return slots


async def test_repeatable_job_runs_once_per_slot_across_nodes_and_survives_a_sigkill() -> None:
    with RedisServer(appendonly=True, appendfsync="always") as server:
        env = {
            TICK_EVERY_ENV: str(EVERY),
            TICK_CRON_ENV: CRON,
            "SWITCHYARD_QUEUE_CONCURRENCY": "default=2",
        }
        nodes = [queue_node(server.url, **env), queue_node(server.url, **env)]

        async def ticked_after(moment: float, slots: int) -> bool:
            ticks = await _ticks(server.url)
            return len({t.slot for t in ticks if t.key == "tick" and t.slot > moment}) >= slots

        try:
            await _start(nodes)
            both_up = time.time()
            await poll_until(
                functools.partial(ticked_after, both_up, PERIODS), timeout_seconds=PERIODS * 4
            )
            async with producer(server.url) as queue:
                # Strike between slots: the newest ticks have completed, the next ones are ahead.
                newest = [t.job_id for t in (await _ticks(server.url))[-2:]]

                async def newest_completed() -> bool:
                    jobs = [await queue.get(job_id) for job_id in newest]
                    return all(job is not None and job.state == "completed" for job in jobs)

                await poll_until(newest_completed, timeout_seconds=10)
                nodes[0].signal(signal.SIGKILL)
                await anyio.to_thread.run_sync(nodes[0].wait)
                killed = time.time()
                await poll_until(
                    functools.partial(ticked_after, killed, PERIODS), timeout_seconds=PERIODS * 4
                )
                listed = (await queue.jobs("default", "completed", 0, 1000)).jobs
        finally:
            _stop(nodes)
        ticks = await _ticks(server.url)
    dead, survivor = str(nodes[0].pid), str(nodes[1].pid)
    every = _judge_schedule(ticks, "tick", EVERY)
    cron = _judge_schedule(ticks, "tick-cron", CRON_PERIOD)
    before = Counter(t.pid for t in ticks if t.slot <= killed)
    after = Counter(t.pid for t in ticks if t.slot > killed)
    log.warning(
        "repeatable jobs on 2 nodes: every %gs %d slots, cron %r %d slots, each once; before "
        "the SIGKILL %d runs {killed: %d, survivor: %d}, after it %d, all by the survivor; "
        "enqueued %.0f-%.0f ms after the slot",
        EVERY,
        len(every),
        CRON,
        len(cron),
        sum(before.values()),
        before[dead],
        before[survivor],
        sum(after.values()),
        min(t.lag for t in ticks) * 1000,
        max(t.lag for t in ticks) * 1000,
    )
    assert len([s for s in every if s > both_up]) >= 2 * PERIODS
    assert len([s for s in cron if s > killed]) >= PERIODS // 2  # the cron one went on too
    assert set(after) == {survivor}  # the dead node runs nothing after its death
    runs = {t.job_id for t in ticks}
    listed_ticks = [job for job in listed if job.type == "tick"]
    assert {job.id for job in listed_ticks} == runs and len(listed_ticks) == len(ticks)
    assert all(job.repeat_key in PERIOD_OF and job.attempt == 1 for job in listed_ticks)
