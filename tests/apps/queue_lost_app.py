"""A test node's ``--app`` hook: a ``record`` job that logs each execution in a recorder Redis.

Every execution (attempt) RPUSHes ``"<job id> <seq>"`` to ``exec`` in the Redis at
``QLOST_RECORDER_URL`` — a server of its own, not the queue's, so the bookkeeping
survives the queue's Redis losing its data, being starved of connections or
having its clients killed — then works a few milliseconds.
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

__all__ = ["EXECUTIONS", "RECORDER_ENV", "Record", "setup"]

EXECUTIONS = "exec"
RECORDER_ENV = "QLOST_RECORDER_URL"


class Record(msgspec.Struct, frozen=True):
    """The producer's sequence number and how long the job works, in milliseconds."""

    seq: int = 0
    ms: int = 5


def setup(node: NodeSetup) -> None:
    """Register ``record`` on the ``default`` queue."""
    client = redis.asyncio.Redis.from_url(os.environ[RECORDER_ENV])

    @node.require(QUEUE).handler("record", payload=Record)
    async def record(ctx: JobContext[Record]) -> dict[str, int]:
        await client.rpush(EXECUTIONS, f"{ctx.job_id} {ctx.payload.seq}")
        await anyio.sleep(ctx.payload.ms / 1000)  # the job's work
        return {"seq": ctx.payload.seq}
