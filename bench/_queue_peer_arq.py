"""arq's side of ``bench_queue.py``: run in ``bench/.venvs/arq`` (arq 0.26, redis-py < 6).

``worker URL CONCURRENCY POLL``: an ``arq.worker.Worker`` with a no-op function,
``max_jobs=CONCURRENCY`` and ``poll_delay=POLL`` seconds (arq's default is 0.5),
until SIGTERM (it logs ``peer worker ready`` once started).
``throughput URL JOBS POLL``: ``JOBS`` sequential ``enqueue_job("noop")`` calls,
then waits until the queue is empty (arq removes a job from it when it finishes);
prints JSON ``{seconds, enqueue_seconds}``.
``latency URL SAMPLES POLL``: ``SAMPLES`` sequential ``enqueue_job`` then
``job.result(poll_delay=POLL)`` on an idle queue after 20 unmeasured; prints
JSON ``{latencies_ms}``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any

import uvloop
from arq import create_pool  # type: ignore[import-not-found]
from arq.connections import RedisSettings  # type: ignore[import-not-found]
from arq.constants import default_queue_name  # type: ignore[import-not-found]
from arq.worker import Worker  # type: ignore[import-not-found]

__all__ = ["main"]


async def noop(ctx: Any) -> None:
    """The job: nothing."""


async def worker(url: str, concurrency: int, poll: float) -> None:
    w = Worker(
        functions=[noop],
        redis_settings=RedisSettings.from_dsn(url),
        max_jobs=concurrency,
        poll_delay=poll,
        handle_signals=False,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(w.async_run())
    print("peer worker ready", file=sys.stderr, flush=True)
    await stop.wait()
    task.cancel()
    await w.close()


async def throughput(url: str, jobs: int) -> dict[str, float]:
    redis = await create_pool(RedisSettings.from_dsn(url))
    start = time.perf_counter()
    for _ in range(jobs):
        await redis.enqueue_job("noop")
    enqueued = time.perf_counter()
    while True:
        if await redis.zcard(default_queue_name) == 0:
            break
        await asyncio.sleep(0.001)
    done = time.perf_counter()
    await redis.aclose()
    return {"seconds": done - start, "enqueue_seconds": enqueued - start}


async def latency(url: str, samples: int, poll: float) -> dict[str, list[float]]:
    redis = await create_pool(RedisSettings.from_dsn(url))
    out: list[float] = []
    for i in range(samples + 20):
        start = time.perf_counter()
        job = await redis.enqueue_job("noop")
        assert job is not None
        await job.result(timeout=30, poll_delay=poll)
        if i >= 20:
            out.append((time.perf_counter() - start) * 1000)
    await redis.aclose()
    return {"latencies_ms": out}


def main() -> None:
    role, url, number, poll = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if role == "worker":
        uvloop.run(worker(url, number, poll))
        return
    result = uvloop.run(
        throughput(url, number) if role == "throughput" else latency(url, number, poll)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
