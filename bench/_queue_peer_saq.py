"""saq's side of ``bench_queue.py``: run in ``bench/.venvs/saq`` (saq 0.26, redis-py < 8).

``worker URL CONCURRENCY``: a ``saq.Worker`` with a no-op function at that
concurrency, until SIGTERM (it logs ``peer worker ready`` once started).
``throughput URL JOBS``: ``JOBS`` sequential ``queue.enqueue("noop")`` calls,
then waits until no job is incomplete; prints JSON ``{seconds, enqueue_seconds}``.
``latency URL SAMPLES``: ``SAMPLES`` sequential ``queue.enqueue("noop")`` then
``job.refresh(until_complete=...)`` (saq's pub/sub wait; ``queue.apply`` polls
every 0.5 s) on an idle queue after 50 unmeasured; prints JSON ``{latencies_ms}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import uvloop
from saq import Queue, Worker  # type: ignore[import-not-found]

__all__ = ["main"]


async def noop(ctx: Any) -> None:
    """The job: nothing."""


async def worker(url: str, concurrency: int) -> None:
    queue = Queue.from_url(url)
    w = Worker(queue, functions=[noop], concurrency=concurrency)
    w.SIGNALS = []  # the runner's SIGTERM is ours (saq's own handler then waits ~20 s in stop())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(w.start())
    print("peer worker ready", file=sys.stderr, flush=True)
    await stop.wait()
    # Every job has finished by now: nothing is left for a graceful stop to do.
    task.cancel()
    os._exit(0)


async def throughput(url: str, jobs: int) -> dict[str, float]:
    queue = Queue.from_url(url)
    await queue.connect()
    start = time.perf_counter()
    for _ in range(jobs):
        await queue.enqueue("noop")
    enqueued = time.perf_counter()
    while True:
        if await queue.count("incomplete") == 0:
            break
        await asyncio.sleep(0.001)
    done = time.perf_counter()
    await queue.disconnect()
    return {"seconds": done - start, "enqueue_seconds": enqueued - start}


async def latency(url: str, samples: int) -> dict[str, list[float]]:
    queue = Queue.from_url(url)
    await queue.connect()
    out: list[float] = []
    for i in range(samples + 50):
        start = time.perf_counter()
        job = await queue.enqueue("noop")
        assert job is not None
        while not job.completed:
            try:
                await job.refresh(until_complete=1)
            except TimeoutError:  # saq can miss the notice (GET, then SUBSCRIBE): look again
                await job.refresh()
        if i >= 50:
            out.append((time.perf_counter() - start) * 1000)
    await queue.disconnect()
    return {"latencies_ms": out}


def main() -> None:
    role, url, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "worker":
        uvloop.run(worker(url, number))
        return
    result = uvloop.run(throughput(url, number) if role == "throughput" else latency(url, number))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
