"""Switchyard's side of ``bench_queue.py``, with the same roles as the peers' harnesses.

``setup``: the ``--app`` hook of the worker node (``python -m runtime --app
_queue_switchyard:setup``, started by the runner), a no-op ``noop`` handler on
the ``default`` queue. ``throughput URL JOBS``: ``JOBS`` sequential
``Queue.enqueue`` calls from a producer process (the queue facade over its own
Redis link, workers not started), then waits until the queue holds no
unfinished job (a count every millisecond, as the saq harness does); prints
JSON ``{seconds, enqueue_seconds}``. ``latency URL SAMPLES``: ``SAMPLES``
sequential enqueues on an idle queue after 50 unmeasured, each waited for by
reading the job every 0.2 ms (the producer has no completion notice from
another process); prints JSON ``{latencies_ms}``. ``memory JOBS CONCURRENCY``:
the queue in memory (no Redis), producer and workers in one process.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import anyio
import msgspec

from actors.queue import QUEUE, JobOptions, QueueSettings, Retention, queue_child
from runtime import RedisFanout, RedisLink, SystemClock
from runtime.testing import open_system

if TYPE_CHECKING:
    from actors.queue import JobContext, Queue
    from runtime import ChildSpec, NodeSetup, ServiceSpec

__all__ = ["main", "setup"]


class Nothing(msgspec.Struct, frozen=True):
    """The no-op job's payload: nothing."""


async def noop(ctx: JobContext[Nothing]) -> None:
    """The job: nothing."""


def setup(node: NodeSetup) -> None:
    """The worker node's hook: the no-op handler on ``default``."""
    node.require(QUEUE).handler("noop", payload=Nothing)(noop)


def _producer(
    link: RedisLink | None, concurrency: int = 1
) -> tuple[list[ServiceSpec | ChildSpec], Queue]:
    settings = QueueSettings(concurrency=f"default={concurrency}")
    # The node's fanout naming: the store's add publishes the workers' wake-up through it.
    fanout = RedisFanout(link, prefix="switchyard:fanout") if link is not None else None
    specs, _, queue = queue_child(settings=settings, redis=link, fanout=fanout, clock=SystemClock())
    queue.handler("noop", payload=Nothing)(noop)  # validates payloads; runs only in memory
    return list(specs), queue


async def _unfinished(queue: Queue) -> int:
    counts = await queue.counts("default")
    return counts.waiting + counts.delayed + counts.active


async def throughput(url: str, jobs: int) -> dict[str, float]:
    async with RedisLink(url, clock=SystemClock()) as link, anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        await link.wait_until(up=True)
        _, queue = _producer(link)
        start = time.perf_counter()
        for _ in range(jobs):
            await queue.enqueue("noop", {})
        enqueued = time.perf_counter()
        while await _unfinished(queue):  # noqa: ASYNC110 (the peers' harness polls the same way)
            await anyio.sleep(0.001)
        done = time.perf_counter()
        tg.cancel_scope.cancel()
    return {"seconds": done - start, "enqueue_seconds": enqueued - start}


async def latency(url: str, samples: int) -> dict[str, list[float]]:
    out: list[float] = []
    async with RedisLink(url, clock=SystemClock()) as link, anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        await link.wait_until(up=True)
        _, queue = _producer(link)
        keep = JobOptions(remove_on_complete=Retention(count=samples + 50))  # readable when done
        for i in range(samples + 50):
            start = time.perf_counter()
            added = await queue.enqueue("noop", {}, options=keep)
            while True:
                job = await queue.get(added.id)
                if job is not None and job.state == "completed":
                    break
                await anyio.sleep(0.0002)
            if i >= 50:
                out.append((time.perf_counter() - start) * 1000)
        tg.cancel_scope.cancel()
    return {"latencies_ms": out}


async def memory(jobs: int, concurrency: int) -> dict[str, float]:
    specs, queue = _producer(None, concurrency)
    async with open_system(specs):
        start = time.perf_counter()
        for _ in range(jobs):
            await queue.enqueue("noop", {})
        enqueued = time.perf_counter()
        while await _unfinished(queue):  # noqa: ASYNC110 (the peers' harness polls the same way)
            await anyio.sleep(0.001)
        done = time.perf_counter()
    return {"seconds": done - start, "enqueue_seconds": enqueued - start}


def main() -> None:
    """``ROLE ARG ARG``: run one role and print its JSON."""
    role, first, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "throughput":
        result: object = anyio.run(throughput, first, number, backend_options={"use_uvloop": True})
    elif role == "latency":
        result = anyio.run(latency, first, number, backend_options={"use_uvloop": True})
    else:
        result = anyio.run(memory, int(first), number, backend_options={"use_uvloop": True})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
