"""The facade: cancellation (waiting, active here, active on another node), pause/resume,
graceful shutdown handing back, dedup."""

from __future__ import annotations

import anyio

from actors.queue import JobContext, JobOptions, MemoryJobStore, Queue, QueueSettings
from runtime.testing import ManualClock

from .queue_support import running_queue, settle, until


def _blocking(queue: Queue) -> None:
    @queue.handler("block", queue="default", payload=dict)
    async def block(ctx: JobContext[dict[str, int]]) -> object:
        await anyio.sleep_forever()
        return None


def _quick(queue: Queue) -> None:
    @queue.handler("quick", queue="default", payload=dict)
    async def quick(ctx: JobContext[dict[str, int]]) -> object:
        return "ok"


async def test_cancel_a_delayed_job_and_an_active_one() -> None:
    async with running_queue(_blocking) as (queue, parts):
        later = await queue.enqueue("block", {}, options=JobOptions(delay_seconds=100))
        assert (await queue.get(later.id)).state == "delayed"  # type: ignore[union-attr]
        assert await queue.cancel(later.id) == "cancelled"
        active = await queue.enqueue("block", {})
        await until(queue, parts, active.id, lambda j: j.state == "active")
        assert await queue.cancel(active.id) == "signalled"
        job = await until(queue, parts, active.id, lambda j: j.state == "cancelled")
        assert job.state == "cancelled"
        assert await queue.cancel(active.id) == "finished"
        assert await queue.cancel("default.nothere") == "missing"


async def test_a_cancel_made_on_another_node_stops_the_handler_at_the_next_renew() -> None:
    clock = ManualClock()
    store = MemoryJobStore(list(QueueSettings().queues))
    async with (
        running_queue(_blocking, clock=clock, store=store) as (first, parts),
        running_queue(None, clock=clock, store=store) as (second, _),
    ):
        added = await first.enqueue("block", {})
        await until(first, parts, added.id, lambda j: j.state == "active")
        assert added.id in parts.active
        assert await second.cancel(added.id) == "signalled"
        await settle()
        clock.advance(parts.settings.lease_seconds / 3)
        job = await until(first, parts, added.id, lambda j: j.state == "cancelled")
        assert job.state == "cancelled"


async def test_pause_holds_jobs_and_resume_runs_them() -> None:
    async with running_queue(_quick) as (queue, parts):
        await queue.pause("default")
        added = await queue.enqueue("quick", {})
        await settle()
        counts = await queue.counts("default")
        assert (counts.paused, counts.waiting, counts.completed) == (True, 1, 0)
        await queue.resume("default")
        job = await until(queue, parts, added.id, lambda j: j.state == "completed")
        assert job.result == b'"ok"'


async def test_dedup_key_returns_the_unfinished_job() -> None:
    async with running_queue(_blocking) as (queue, _):
        options = JobOptions(dedup_key="report-7")
        first = await queue.enqueue("block", {}, options=options)
        second = await queue.enqueue("block", {}, options=options)
        assert first.created and not second.created and second.id == first.id


async def test_graceful_shutdown_hands_back_what_did_not_finish() -> None:
    settings = QueueSettings(shutdown_grace_seconds=0, poll_seconds=0.05)
    async with running_queue(_blocking, settings=settings) as (queue, parts):
        added = await queue.enqueue("block", {})
        await until(queue, parts, added.id, lambda j: j.state == "active")
        parts.stopping.set()
        job = await until(queue, parts, added.id, lambda j: j.state == "waiting")
        assert job.attempt == 0  # handed back: the attempt is not spent
        assert not parts.active
        stats = {s.queue: s for s in queue.statistics()}["default"]
        assert stats.types[0].handed_back == 1


def test_job_ids_made_in_one_millisecond_sort_in_the_order_they_were_made() -> None:
    from actors.queue._facade import new_job_id

    same_ms = [new_job_id("default", 1_000.0005) for _ in range(1_000)]
    stepped_back = [new_job_id("default", 999.0) for _ in range(10)]  # the clock stepped back
    later = new_job_id("default", 1_000.002)
    ids = [*same_ms, *stepped_back, later]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == len("default.") + 18 for i in ids)
