"""A queue running in the test's task group, on the memory store (or one given)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec

from actors.queue import Queue, QueueParts, QueueSettings, queue_child
from runtime import ServiceSpec

WAIT = 5.0


class Email(msgspec.Struct, frozen=True):
    """A test payload."""

    to: str
    subject: str = "hi"


@contextlib.asynccontextmanager
async def running_queue(
    register: Any = None, **kwargs: Any
) -> AsyncIterator[tuple[Queue, QueueParts]]:
    """Build a queue, let ``register(queue)`` add handlers, run its services for the block."""
    kwargs.setdefault("settings", QueueSettings(poll_seconds=0.05))
    specs, parts, queue = queue_child(**kwargs)
    if register is not None:
        register(queue)
    async with anyio.create_task_group() as group:
        for spec in specs:
            if isinstance(spec, ServiceSpec):  # the services; not the QueueActor (a ChildSpec)
                await group.start(spec.run)
        try:
            yield queue, parts
        finally:
            group.cancel_scope.cancel()


async def until(queue: Queue, parts: QueueParts, job_id: str, predicate: Any) -> Any:
    """The job once ``predicate(job)`` holds (re-read at each finish, bounded by ``WAIT``)."""
    with anyio.fail_after(WAIT):
        while True:
            job = await queue.get(job_id)
            if job is not None and predicate(job):
                return job
            with anyio.move_on_after(0.05):
                await parts.finished.wait()


async def settle() -> None:
    """Let every task run until all are blocked (before a ManualClock advance)."""
    with anyio.fail_after(WAIT):
        await anyio.wait_all_tasks_blocked()
