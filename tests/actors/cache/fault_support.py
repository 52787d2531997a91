"""Shared helpers of the cache's fault scenarios (``test_cache_faults``, ``test_cache_outages``).

Two in-process nodes share one Redis. Node A writes an increasing counter to
a few hot keys at ~100 writes/s through the facade's ``set``; node B reads
them. ``fault(i)`` runs after write ``i``, so a fault is timed by the load
itself, not by sleeps. Once A's writer has nothing left to send and B has
applied every invalidation, every key is read on A, on B and in Redis, and
:func:`check_history` judges.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc
import redis.asyncio

from actors.cache import Cache
from actors.cache._codec import decode_value, unpack_entry
from actors.cache._coherence import INVALIDATIONS
from actors.cache._messages import Invalidation
from runtime import Gap, Settings
from runtime.testing import (
    FaultProxy,
    History,
    HistoryReport,
    Node,
    RedisServer,
    check_history,
    steady,
)

from .conftest import Nodes, open_cache_nodes

logger = logging.getLogger("tests.actors.cache")

HOT_KEYS = 4
RATE = 100.0
#: After the load stops, A, B and Redis must agree within this many seconds.
CONVERGENCE_BOUND_SECONDS = 2.0

#: No single set or get of a scenario may take longer than this (it fails instead of hanging).
REQUEST_BOUND_SECONDS = 5.0

FAST_LINK = Settings(
    redis_prefix="sw",
    redis_health_interval_seconds=0.05,  # the link notices the outage soon
    redis_reconnect_max_seconds=0.05,  # and reconnects soon after Redis is back
)

#: What users get: the link's default health interval, reconnect cap and command deadline.
DEFAULT_LINK = Settings(redis_prefix="sw")

Fault = Callable[[int], Awaitable[None]]


@dataclass
class Running:
    """The scenario's nodes while the load runs, for faults that watch them (heal times)."""

    nodes: Nodes
    http: list[Node]
    task_group: anyio.abc.TaskGroup


@dataclass
class Outcome:
    """What one scenario measured.

    ``max_write_seconds`` and ``max_read_seconds`` are the longest single
    ``set`` on A and ``get`` on B; ``writes`` the writes completed.
    """

    report: HistoryReport
    degraded_writes: int
    replayed_writes: int
    converged_seconds: float
    writes: int = 0
    max_write_seconds: float = 0.0
    max_read_seconds: float = 0.0
    coherence_resets_b: int = 0


def hot_key(i: int) -> str:
    return f"hot:{i % HOT_KEYS}"


async def redis_value(client: redis.asyncio.Redis, key: str) -> int | None:
    """The counter stored at cache key ``key``: an int, or (written over HTTP) its digits."""
    blob = await client.get(f"sw:cache:{key}")
    if blob is None:
        return None
    assert isinstance(blob, bytes), blob
    entry = unpack_entry(blob)
    assert entry is not None, blob
    value = decode_value(entry.payload, entry.encoding)
    if isinstance(value, bytes):
        return int(value)
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
    fault: Fault,
    *,
    duration_seconds: float,
    settings: Settings = FAST_LINK,
    on_open: Callable[[Running], None] | None = None,
    stale_bound_seconds: float = 0.0,
) -> Outcome:
    """Write on A and read on B for ``duration_seconds``; ``fault(i)`` runs after write ``i``.

    ``on_open`` is given the running nodes before the load starts; tasks it
    starts in their task group must end on their own (bounded).
    """
    history = History()
    write_seconds: list[float] = [0.0]
    read_seconds: list[float] = [0.0]
    async with (
        open_cache_nodes(2, redis_url, settings=settings) as (nodes, http),
        contextlib.aclosing(redis.asyncio.Redis.from_url(redis_url)) as client,
    ):
        a, b = nodes.caches
        resets_before = (await b.statistics()).coherence_resets

        async def write(i: int) -> None:
            key = hot_key(i)
            started = history.now()
            with anyio.fail_after(REQUEST_BOUND_SECONDS):  # a hung set fails, naming itself
                await a.set(key, i)
            acked = history.now()
            write_seconds.append(acked - started)
            history.write("a", key, i, started=started, acked=acked, ok=True)
            await fault(i)

        async def read(i: int) -> None:
            key = hot_key(i)
            started = history.now()
            with anyio.fail_after(REQUEST_BOUND_SECONDS):
                value = await b.get(key)
            finished = history.now()
            read_seconds.append(finished - started)
            history.read("b", key, value, started=started, finished=finished)

        async with anyio.create_task_group() as tg:
            if on_open is not None:
                on_open(Running(nodes, http, tg))
            tg.start_soon(lambda: steady(RATE, duration_seconds=duration_seconds, operation=read))
            load = await steady(
                RATE, duration_seconds=duration_seconds, operation=write, max_in_flight=1
            )
        assert load.completed >= RATE * duration_seconds * 0.8, load
        stopped = time.monotonic()
        await settled(nodes)
        converged = time.monotonic() - stopped
        stats = await a.statistics()
        resets = (await b.statistics()).coherence_resets - resets_before
        # The client may hold a connection from before a restart: a fresh one reads Redis.
        async with contextlib.aclosing(redis.asyncio.Redis.from_url(redis_url)) as fresh:
            final = await finals(nodes, fresh)
        del client
    report = check_history(history, final=final, stale_bound_seconds=stale_bound_seconds)
    outcome = Outcome(
        report,
        stats.degraded_writes,
        stats.replayed_writes,
        converged,
        writes=load.completed,
        max_write_seconds=max(write_seconds),
        max_read_seconds=max(read_seconds),
        coherence_resets_b=resets,
    )
    logger.info(
        "scenario: %s; degraded %d, replayed %d, settled %.3fs after the load stopped; "
        "longest set %.3fs, longest get %.3fs; B's L1 dropped %d times",
        report.summary(),
        outcome.degraded_writes,
        outcome.replayed_writes,
        converged,
        outcome.max_write_seconds,
        outcome.max_read_seconds,
        resets,
    )
    return outcome


def assert_no_lost_update(outcome: Outcome) -> None:
    report = outcome.report
    assert outcome.degraded_writes > 0, "the fault did not reach the writer"
    assert (report.lost_updates, report.divergent_keys) == (0, 0), report.summary()
    assert report.acknowledged == report.writes


def kill_between(
    server: RedisServer, kill_at: int, restart_at: int, *, empty: bool = True
) -> Fault:
    """SIGKILL ``server`` after write ``kill_at``; restart it after write ``restart_at``."""

    def restart() -> None:
        server.restart(empty=empty)

    async def fault(i: int) -> None:
        if i == kill_at:
            server.kill()
        elif i == restart_at:
            await anyio.to_thread.run_sync(restart)

    return fault


@contextlib.asynccontextmanager
async def proxied(server: RedisServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        yield proxy
