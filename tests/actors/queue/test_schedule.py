"""Repeatable jobs: once per slot across two nodes sharing a store."""

from __future__ import annotations

import pytest

from actors.queue import JobContext, MemoryJobStore, Queue, QueueSettings
from runtime.testing import ManualClock

from .queue_support import running_queue, settle


def _tick(queue: Queue) -> None:
    @queue.handler("tick", queue="default", payload=dict)
    async def tick(ctx: JobContext[dict[str, int]]) -> object:
        return None

    queue.repeat("tick", {}, key="ticker", every_seconds=60)


async def test_an_interval_job_runs_once_per_slot_across_two_nodes() -> None:
    clock = ManualClock(wall_start=1_700_000_000.0)
    store = MemoryJobStore(list(QueueSettings().queues))
    async with (
        running_queue(_tick, clock=clock, store=store) as (first, _),
        running_queue(_tick, clock=clock, store=store) as (_second, _),
    ):
        for _ in range(3):
            await settle()
            clock.advance(60)
        await settle()
        counts = await first.counts("default")
        assert counts.waiting + counts.active + counts.completed == 3


def test_a_bad_schedule_is_refused() -> None:
    from actors.queue import EnqueueRequest
    from actors.queue._schedule import Schedule

    request = EnqueueRequest(type="tick")
    with pytest.raises(ValueError, match="not valid"):
        Schedule.of(key="k", request=request, every_seconds=None, cron="not a cron")
    with pytest.raises(ValueError, match="exactly one"):
        Schedule.of(key="k", request=request, every_seconds=5, cron="* * * * *")
