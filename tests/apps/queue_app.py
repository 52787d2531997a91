"""A test node's ``--app`` hook: a ``work`` job that records each execution in Redis.

Every execution (attempt) RPUSHes the job id to ``exec`` in the node's Redis
before a few milliseconds of work, so a test counts executions across nodes
and crashes, and tells the duplicates (re-deliveries) from the jobs.
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

__all__ = ["EXECUTIONS", "Work", "setup"]

EXECUTIONS = "exec"


class Work(msgspec.Struct, frozen=True):
    """How long the job works, in milliseconds."""

    ms: int = 5


def setup(node: NodeSetup) -> None:
    """Register ``work`` on the ``default`` queue."""
    client = redis.asyncio.Redis.from_url(os.environ["SWITCHYARD_REDIS_URL"])

    @node.require(QUEUE).handler("work", payload=Work)
    async def work(ctx: JobContext[Work]) -> dict[str, str]:
        await client.rpush(EXECUTIONS, ctx.job_id)
        await anyio.sleep(ctx.payload.ms / 1000)  # the job's work
        return {"done": ctx.job_id}
