"""The queue under link faults: a node blackholed past its leases, and Redis paused.

Two real nodes (``python -m runtime``, concurrency 10 each, 2 s leases) share
one Redis; the test process produces ``step`` jobs at a steady rate through
its own link and judges the run from what Redis holds afterwards (see
:mod:`tests.actors.queue.partition_support`):

* node A reaches Redis through a :class:`~runtime.testing.FaultProxy`, which
  blackholes it (sockets open, nothing answered) while A holds jobs, until B
  has taken every one of A's attempts over after their leases ran out; then
  the link heals, A's late completions are fenced off, and A takes work again;
* Redis is SIGSTOPped under traffic for longer than the nodes' socket timeout,
  then SIGCONTed: enqueues in the pause fail fast with ``RedisUnavailable``
  and are retried, and every acknowledged job completes, recorded once.
"""

from __future__ import annotations

import inspect
import logging
import time

import anyio
import httpx
import msgspec
import redis.asyncio

from runtime import RedisLink, RedisUnavailable
from runtime.testing import FaultProxy, NodeProcess, RedisServer, steady
from tests.actors.queue.partition_support import (
    CONCURRENCY,
    LEASE_SECONDS,
    all_done,
    collect,
    judge,
    producing,
    readiness,
    running_nodes,
    starts_of,
)
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_partition_app import MARKS, Mark

log = logging.getLogger(__name__)

#: The socket timeout of a node's Redis client (the backstop behind its command deadline).
SOCKET_TIMEOUT = float(inspect.signature(RedisLink).parameters["socket_timeout_seconds"].default)
#: The command deadline a link gives every command unless told otherwise.
COMMAND_DEADLINE = float(inspect.signature(RedisLink).parameters["command_timeout_seconds"].default)


async def _marks(reader: redis.asyncio.Redis) -> list[Mark]:
    return [msgspec.json.decode(raw, type=Mark) for raw in await reader.lrange(MARKS, 0, -1)]


async def _ready(http: httpx.AsyncClient, *nodes: NodeProcess) -> None:
    async def all_ready() -> bool:
        for node in nodes:
            code, _ = await readiness(http, node)
            if code != 200:
                return False
        return True

    await poll_until(all_ready, timeout_seconds=30, interval=0.1)


async def test_a_node_blackholed_past_its_leases_loses_nothing_and_records_each_job_once() -> None:
    with RedisServer() as server:
        reader = redis.asyncio.Redis.from_url(server.url)
        async with (
            FaultProxy("127.0.0.1", server.port) as proxy,
            running_nodes({"A": proxy.url_for("redis"), "B": server.url}, server.url) as nodes,
            httpx.AsyncClient(timeout=5) as http,
            producing(server.url, ms=150) as producer,
        ):
            a = nodes["A"]
            await _ready(http, *nodes.values())
            async with anyio.create_task_group() as tg:
                # 300 jobs at 100/s; two nodes run up to ~130/s of 150 ms jobs.
                tg.start_soon(
                    lambda: steady(
                        100, duration_seconds=30, max_operations=300, operation=producer.enqueue
                    )
                )

                async def a_holds_jobs() -> bool:
                    marks = await _marks(reader)
                    begun = {
                        (m.job, m.attempt) for m in marks if m.node == "A" and m.kind == "start"
                    }
                    ended = {(m.job, m.attempt) for m in marks if m.node == "A" and m.kind == "end"}
                    return len(begun) >= 20 and len(begun - ended) >= CONCURRENCY // 2

                await poll_until(a_holds_jobs, timeout_seconds=30)
                proxy.blackhole()
                blackholed_at = time.time()

                async def a_not_ready() -> bool:
                    code, body = await readiness(http, a)
                    return code == 503 and any("redis is down" in r for r in body["reasons"])

                await poll_until(a_not_ready, timeout_seconds=10)
                outage_seen = time.time() - blackholed_at
                _, body = await readiness(http, a)
                reasons = body["reasons"]

                async def a_holds_no_lease() -> bool:
                    """Every active job is an attempt B began: A's leases ran out, B re-ran them."""
                    active = (await producer.queue.jobs("default", "active", 0, 1000)).jobs
                    marks = await _marks(reader)
                    b_began = {(m.job, m.attempt) for m in starts_of(marks, "B")}
                    return all((job.id, job.attempt) in b_began for job in active)

                await poll_until(a_holds_no_lease, timeout_seconds=20, interval=0.1)

                async def a_down_for_two_leases() -> bool:
                    """Clearly past a lease: A itself has seen Redis down for two of them."""
                    code, body = await readiness(http, a)
                    status = body["redis"]
                    return (
                        code == 503
                        and not status["up"]
                        and (status["since_seconds"] >= 2 * LEASE_SECONDS)
                    )

                await poll_until(a_down_for_two_leases, timeout_seconds=20, interval=0.1)
                proxy.heal()
                healed_at = time.time()
            blackhole = healed_at - blackholed_at
            await _ready(http, a)
            recovered = time.time() - healed_at
            # A second wave after the heal: A must take some of it by itself.
            await steady(
                100,
                duration_seconds=30,
                max_operations=100,
                operation=lambda i: producer.enqueue(300 + i),
            )

            async def a_works_again() -> bool:
                return bool(starts_of(await _marks(reader), "A", after=healed_at))

            await poll_until(a_works_again, timeout_seconds=15)
            await all_done(producer, reader, at_least=len(producer.acked))
            a_log = a.log
        collected = await collect(server.url)
        await reader.aclose()

    verdict = judge(producer, collected)
    marks = collected.marks
    a_began = {m.job: m for m in starts_of(marks, "A", after=0) if m.at < blackholed_at}
    taken_over = [
        m.at - blackholed_at
        for m in starts_of(marks, "B", after=blackholed_at)
        if m.job in a_began and m.attempt > a_began[m.job].attempt
    ]
    figures = (
        f"{verdict.summary()}; blackhole {blackhole:.2f}s (lease {LEASE_SECONDS:g}s), "
        f"outage on /readyz after {outage_seen:.2f}s ({reasons}), A ready {recovered:.2f}s "
        f"after heal, B took {len(taken_over)} of A's attempts over "
        f"{min(taken_over, default=0):.2f}..{max(taken_over, default=0):.2f}s after the fault"
    )
    log.warning("blackhole past the lease: %s", figures)
    assert verdict.acknowledged == verdict.jobs == 400, figures
    assert verdict.lost == verdict.not_completed == verdict.phantoms == 0, figures
    assert verdict.recorded_twice == verdict.stale_recorded == verdict.extra_jobs == 0, figures
    assert verdict.events_missing == verdict.events_conflicting == 0, figures
    # The fault was real: A's held attempts ran again on B after their leases, and A's own
    # completions of them (it tried to record them during the outage) were no-ops.
    assert 1 <= verdict.duplicates <= CONCURRENCY, figures
    assert 1 <= verdict.stale_attempts <= CONCURRENCY, figures
    assert taken_over and min(taken_over) >= LEASE_SECONDS / 3, figures
    assert max(taken_over) <= LEASE_SECONDS + 3.0, figures
    assert blackhole > 2 * LEASE_SECONDS, figures
    assert any("finishes retried" in line for line in a_log), figures
    assert outage_seen <= 5.0, figures


async def test_redis_paused_past_the_socket_timeout_loses_no_acknowledged_job() -> None:
    with RedisServer() as server:
        reader = redis.asyncio.Redis.from_url(server.url)
        async with (
            running_nodes({"A": server.url, "B": server.url}, server.url) as nodes,
            httpx.AsyncClient(timeout=5) as http,
            producing(server.url, ms=100) as producer,
        ):
            await _ready(http, *nodes.values())
            async with anyio.create_task_group() as tg:
                # 480 enqueues at 60/s: ~2 s before the pause, the rest in it and after.
                tg.start_soon(
                    lambda: steady(
                        60,
                        duration_seconds=30,
                        max_operations=480,
                        operation=producer.enqueue,
                        errors=(RedisUnavailable,),
                    )
                )

                async def under_way() -> bool:
                    return len(producer.acked) >= 100 and len(await _marks(reader)) >= 50

                await poll_until(under_way, timeout_seconds=30)
                server.pause()
                paused_at = time.time()

                async def down_past_the_socket_timeout() -> bool:
                    for node in nodes.values():
                        code, body = await readiness(http, node)
                        status = body["redis"]
                        if code != 503 or status["up"]:
                            return False
                        if status["since_seconds"] < SOCKET_TIMEOUT + 0.5:
                            return False
                    return bool(producer.failures)

                await poll_until(down_past_the_socket_timeout, timeout_seconds=30, interval=0.1)
                reasons = [(await readiness(http, n))[1]["reasons"] for n in nodes.values()]
                server.resume()
                resumed_at = time.time()
            pause = resumed_at - paused_at
            await _ready(http, *nodes.values())
            recovered = time.time() - resumed_at
            failed = len(producer.failures)
            retried = await producer.retry_unacked(timeout_seconds=20)
            await all_done(producer, reader, at_least=len(producer.acked))

            async def both_work_again() -> bool:
                marks = await _marks(reader)
                return all(starts_of(marks, name, after=resumed_at) for name in nodes)

            await poll_until(both_work_again, timeout_seconds=10)
        collected = await collect(server.url)
        await reader.aclose()

    verdict = judge(producer, collected)
    unknown = sum(1 for _, cause, _ in producer.failures if cause == "CommandDeadlineExceeded")
    figures = (
        f"{verdict.summary()}; pause {pause:.2f}s (socket timeout {SOCKET_TIMEOUT:g}s), "
        f"{failed} enqueues failed ({unknown} past their deadline, outcome unknown), "
        f"slowest enqueue {producer.slowest:.2f}s, {retried} retried, nodes ready "
        f"{recovered:.2f}s after resume; readiness in the pause: {reasons}"
    )
    log.warning("Redis paused: %s", figures)
    assert verdict.acknowledged == 480, figures
    assert verdict.lost == verdict.not_completed == verdict.phantoms == 0, figures
    assert verdict.recorded_twice == verdict.stale_recorded == 0, figures
    assert verdict.events_missing == verdict.events_conflicting == 0, figures
    assert verdict.extra_jobs <= unknown, figures
    assert failed >= 1 and retried >= 1, figures
    # A failed enqueue said so quickly: the producer's command deadline, never the pause.
    assert producer.slowest <= COMMAND_DEADLINE + 2.0, figures
    # Both nodes' slots at most ran again (their leases ran out in the pause).
    assert verdict.duplicates <= 2 * CONCURRENCY, figures
    assert pause > SOCKET_TIMEOUT, figures
    for node_reasons in reasons:
        assert any("redis is down" in r for r in node_reasons), figures
