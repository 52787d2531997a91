"""Real queue nodes on one Redis, and a producer in the test process.

``queue_node(url, ...)`` is one ``python -m runtime`` node with the
``tests.apps.queue_app`` handlers; :func:`producer` is a ``Queue`` facade in
the test process whose workers never start (it only enqueues and reads the
store); :func:`records` reads one of the app's execution lists.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import redis.asyncio

from actors.queue import Queue, QueueSettings, queue_child
from runtime import RedisFanout, RedisLink, SystemClock
from runtime.testing import NodeProcess
from tests.apps.queue_app import Hold, Tick, Work

__all__ = ["ROOT", "producer", "queue_node", "records"]

ROOT = Path(__file__).resolve().parents[3]


def queue_node(url: str, **settings: str) -> NodeProcess:
    """A node of ``tests.apps.queue_app`` on ``url``; ``settings`` are extra env variables."""
    env = {
        "SWITCHYARD_REDIS_URL": url,
        "SWITCHYARD_JWT_SECRET": "queue-nodes-test-secret-32-bytes-long",
        **settings,
    }
    return NodeProcess(env, ["--app", "tests.apps.queue_app:setup"], cwd=str(ROOT))


@contextlib.asynccontextmanager
async def producer(url: str) -> AsyncIterator[Queue]:
    """A queue facade on ``url`` that enqueues and inspects; it runs no job."""
    async with (
        RedisLink(url, clock=SystemClock()) as link,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(link.run)
        await link.wait_until(True)
        # The nodes' fanout naming: the store's add publishes the workers' wake-up through it.
        fanout = RedisFanout(link, prefix="switchyard:fanout")
        settings = QueueSettings(concurrency="default=1")
        _, _, queue = queue_child(settings=settings, redis=link, fanout=fanout)
        for job_type, payload in (("work", Work), ("tagged", Work), ("hold", Hold)):
            queue.handler(job_type, payload=payload)(_never_runs_here)
        queue.handler("tick", payload=Tick)(_never_runs_here)
        yield queue
        tg.cancel_scope.cancel()


async def records(url: str, key: str) -> list[list[str]]:
    """The entries of one of the app's lists, each split on spaces."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        items = await client.lrange(key, 0, -1)
    finally:
        await client.aclose()
    return [(i.decode() if isinstance(i, bytes) else str(i)).split(" ") for i in items]


async def _never_runs_here(ctx: object) -> None:
    raise AssertionError("the producer's workers never start")
