"""Retries: the backoff schedule on a ManualClock, timeouts, retry of a failed job."""

from __future__ import annotations

import pytest

from actors.queue import Backoff, JobContext, JobOptions, Queue
from runtime.testing import ManualClock

from .queue_support import running_queue, settle, until


def _always_fails(queue: Queue) -> None:
    @queue.handler("flaky", queue="default", payload=dict)
    async def flaky(ctx: JobContext[dict[str, int]]) -> object:
        raise RuntimeError(f"attempt {ctx.attempt} failed")


async def test_exponential_backoff_schedule_then_failed() -> None:
    clock = ManualClock()
    async with running_queue(_always_fails, clock=clock) as (queue, parts):
        options = JobOptions(attempts=3, backoff=Backoff(kind="exponential", base_seconds=2))
        added = await queue.enqueue("flaky", {}, options=options)
        start = clock.time()
        job = await until(queue, parts, added.id, lambda j: j.state == "delayed")
        assert (job.attempt, job.run_at - start) == (1, 2.0)
        assert job.error is not None and job.error.message == "attempt 1 failed"
        await settle()
        clock.advance(2)
        job = await until(queue, parts, added.id, lambda j: j.attempt == 2 and j.state == "delayed")
        assert job.run_at - clock.time() == 4.0
        await settle()
        clock.advance(4)
        job = await until(queue, parts, added.id, lambda j: j.state == "failed")
        assert job.attempt == 3 and job.error is not None
        assert job.error.message == "attempt 3 failed"
        types = {s.queue: s for s in queue.statistics()}["default"].types
        assert (types[0].retries, types[0].failed) == (2, 1)


@pytest.mark.parametrize(
    ("backoff", "attempt", "draw", "expected"),
    [
        (Backoff(kind="fixed", base_seconds=3), 5, 0.0, 3.0),
        (Backoff(base_seconds=2, cap_seconds=10), 5, 0.0, 10.0),
        (Backoff(base_seconds=2, jitter=0.5), 2, 1.0, 2.0),
    ],
)
def test_backoff_fixed_cap_and_jitter(
    backoff: Backoff, attempt: int, draw: float, expected: float
) -> None:
    assert backoff.delay(attempt, draw) == expected


async def test_a_timeout_cancels_the_handler_and_counts_as_a_failed_attempt() -> None:
    clock = ManualClock()

    def register(queue: Queue) -> None:
        @queue.handler("hang", queue="default", payload=dict)
        async def hang(ctx: JobContext[dict[str, int]]) -> object:
            await ctx.cancelled()
            return None

    async with running_queue(register, clock=clock) as (queue, parts):
        added = await queue.enqueue("hang", {}, options=JobOptions(attempts=1, timeout_seconds=5))
        await until(queue, parts, added.id, lambda j: j.state == "active")
        await settle()
        clock.advance(5)
        job = await until(queue, parts, added.id, lambda j: j.state == "failed")
        assert job.error is not None and job.error.kind == "timeout"


async def test_retry_of_a_failed_job_runs_it_again() -> None:
    runs = 0

    def register(queue: Queue) -> None:
        @queue.handler("once", queue="default", payload=dict)
        async def once(ctx: JobContext[dict[str, int]]) -> object:
            nonlocal runs
            runs += 1
            if runs == 1:
                raise ValueError("first run fails")
            return runs

    async with running_queue(register) as (queue, parts):
        added = await queue.enqueue("once", {}, options=JobOptions(attempts=1))
        await until(queue, parts, added.id, lambda j: j.state == "failed")
        assert await queue.retry(added.id)
        job = await until(queue, parts, added.id, lambda j: j.state == "completed")
        assert job.result == b"2"
        assert not await queue.retry(added.id)
