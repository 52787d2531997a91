"""A test node's ``--app`` hook: jobs that record each execution in the node's Redis.

* ``work`` RPUSHes its job id to ``exec`` before a few milliseconds of work,
  so a test counts executions across nodes and crashes, and tells the
  duplicates (re-deliveries) from the jobs.
* ``tagged`` does the same into ``exec:tagged``, as ``<job id> <pid>``: which
  node ran each execution.
* ``hold`` records ``<job id> <pid>`` in ``exec:hold`` as it starts, then
  runs until its ``gate`` key exists in Redis (or it is asked to stop), and
  records ``<job id> <pid>`` in ``done:hold`` when it finishes.
* ``tick`` records ``<created_at> <pid> <job id> <repeat key>`` in
  ``exec:tick``; with ``QUEUE_APP_TICK_EVERY`` set (seconds) the node
  registers ``tick`` as a repeatable job (key ``tick``) at that interval, and
  with ``QUEUE_APP_TICK_CRON`` (a cron text) as one on that cron (key
  ``tick-cron``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import msgspec
import redis.asyncio

from actors.queue import QUEUE

if TYPE_CHECKING:
    from actors.queue import JobContext
    from runtime import NodeSetup

__all__ = [
    "EXECUTIONS",
    "HELD",
    "HELD_DONE",
    "TAGGED",
    "TICKS",
    "TICK_CRON_ENV",
    "TICK_EVERY_ENV",
    "Hold",
    "Tick",
    "Work",
    "setup",
]

EXECUTIONS = "exec"
TAGGED = "exec:tagged"
HELD = "exec:hold"
HELD_DONE = "done:hold"
TICKS = "exec:tick"
TICK_EVERY_ENV = "QUEUE_APP_TICK_EVERY"
TICK_CRON_ENV = "QUEUE_APP_TICK_CRON"
_GATE_POLL_SECONDS = 0.02


class Work(msgspec.Struct, frozen=True):
    """How long the job works, in milliseconds."""

    ms: int = 5


class Hold(msgspec.Struct, frozen=True):
    """The Redis key whose existence lets the job finish."""

    gate: str


class Tick(msgspec.Struct, frozen=True):
    """A repeatable job's (empty) payload."""


def setup(node: NodeSetup) -> None:
    """Register ``work``, ``tagged``, ``hold`` and ``tick`` on the ``default`` queue."""
    client = redis.asyncio.Redis.from_url(os.environ["SWITCHYARD_REDIS_URL"])
    queue = node.require(QUEUE)
    pid = os.getpid()

    @queue.handler("work", payload=Work)
    async def work(ctx: JobContext[Work]) -> dict[str, str]:
        await client.rpush(EXECUTIONS, ctx.job_id)
        await anyio.sleep(ctx.payload.ms / 1000)  # the job's work
        return {"done": ctx.job_id}

    @queue.handler("tagged", payload=Work)
    async def tagged(ctx: JobContext[Work]) -> dict[str, int]:
        await client.rpush(TAGGED, f"{ctx.job_id} {pid}")
        await anyio.sleep(ctx.payload.ms / 1000)
        return {"pid": pid}

    @queue.handler("hold", payload=Hold)
    async def hold(ctx: JobContext[Hold]) -> dict[str, int]:
        await client.rpush(HELD, f"{ctx.job_id} {pid}")
        while not await client.exists(ctx.payload.gate):
            if ctx.cancel_requested:  # asked to stop (the worker cancels this task too)
                return {"pid": pid}
            await anyio.sleep(_GATE_POLL_SECONDS)
        await client.rpush(HELD_DONE, f"{ctx.job_id} {pid}")
        return {"pid": pid}

    @queue.handler("tick", payload=Tick)
    async def tick(ctx: JobContext[Tick]) -> None:
        job = await queue.get(ctx.job_id)
        created, key = (job.created_at, job.repeat_key) if job is not None else (-1.0, None)
        await client.rpush(TICKS, f"{created!r} {pid} {ctx.job_id} {key}")

    every = os.environ.get(TICK_EVERY_ENV)
    if every:
        queue.repeat("tick", {}, key="tick", every_seconds=float(every))
    cron = os.environ.get(TICK_CRON_ENV)
    if cron:
        queue.repeat("tick", {}, key="tick-cron", cron=cron)
