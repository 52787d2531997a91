"""The worker on the memory store: enqueue → run → complete, concurrency, errors, timeouts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from actors.queue import JobContext, JobOptions, Queue, QueueSettings
from runtime import Rejected

from .queue_support import WAIT, Email, running_queue


def _echo(queue: Queue) -> None:
    @queue.handler("send-email", queue="email", payload=Email)
    async def send(ctx: JobContext[Email]) -> object:
        await ctx.progress(50, stage="sending")
        return {"to": ctx.payload.to, "attempt": ctx.attempt}


async def test_enqueue_runs_the_handler_and_records_the_result() -> None:
    async with running_queue(_echo) as (queue, _):
        added = await queue.enqueue("send-email", {"to": "a@example.com"})
        assert added.created and added.id.startswith("email.")
        job = await queue.wait(added.id, timeout=WAIT)
        assert job.state == "completed"
        assert job.result == b'{"to":"a@example.com","attempt":1}'
        assert job.attempt == 1
        assert job.progress is not None and job.progress.stage == "sending"
        stats = {s.queue: s for s in queue.statistics()}["email"]
        assert stats.types[0].enqueued == 1 and stats.types[0].completed == 1


async def test_bad_input_is_rejected_and_nothing_is_stored() -> None:
    async with running_queue(_echo) as (queue, _):
        cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("unknown_job_type", lambda: queue.enqueue("nope", {})),
            ("invalid_payload", lambda: queue.enqueue("send-email", {"to": 5})),
            ("unknown_queue", lambda: queue.enqueue("send-email", {"to": "x"}, queue="zzz")),
            (
                "invalid_options",
                lambda: queue.enqueue("send-email", {"to": "x"}, options=JobOptions(attempts=0)),
            ),
            ("payload_too_large", lambda: queue.enqueue("send-email", {"to": "x" * 70_000})),
        ]
        for code, call in cases:
            with pytest.raises(Rejected) as caught:
                await call()
            assert caught.value.code == code
        counts = await queue.counts("email")
        assert (counts.waiting, counts.delayed, counts.active, counts.completed) == (0, 0, 0, 0)


async def test_concurrency_bounds_the_attempts_running_at_once() -> None:
    running = 0
    peak = 0
    gate = anyio.Event()

    def register(queue: Queue) -> None:
        @queue.handler("slow", queue="default", payload=dict)
        async def slow(ctx: JobContext[dict[str, int]]) -> object:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1
            return None

    settings = QueueSettings(concurrency="default=3", poll_seconds=0.05)
    async with running_queue(register, settings=settings) as (queue, parts):
        ids = [(await queue.enqueue("slow", {"n": n})).id for n in range(10)]
        with anyio.fail_after(WAIT):
            while running < 3:
                await anyio.wait_all_tasks_blocked()
        assert (await queue.counts("default")).active == 3
        gate.set()
        for job_id in ids:
            assert (await queue.wait(job_id, timeout=WAIT)).state == "completed"
        assert peak == 3
        assert not parts.active


async def test_a_handler_error_is_stored_and_the_job_fails_after_its_attempts() -> None:
    def register(queue: Queue) -> None:
        @queue.handler("boom", queue="default", payload=dict)
        async def boom(ctx: JobContext[dict[str, int]]) -> object:
            raise ValueError(f"broken on attempt {ctx.attempt}")

    async with running_queue(register) as (queue, _):
        options = JobOptions(attempts=1)
        added = await queue.enqueue("boom", {}, options=options)
        job = await queue.wait(added.id, timeout=WAIT)
        assert job.state == "failed"
        assert job.error is not None
        assert (job.error.kind, job.error.message) == ("ValueError", "broken on attempt 1")
        assert "Traceback" in job.error.traceback and len(job.error.traceback.encode()) <= 4096


async def test_a_result_too_large_fails_the_job_with_a_clear_error() -> None:
    def register(queue: Queue) -> None:
        @queue.handler("big", queue="default", payload=dict)
        async def big(ctx: JobContext[dict[str, int]]) -> object:
            return "x" * 100_000

    async with running_queue(register) as (queue, _):
        added = await queue.enqueue("big", {})
        job = await queue.wait(added.id, timeout=WAIT)
        assert job.state == "failed" and job.error is not None
        assert job.error.kind == "result_too_large"
