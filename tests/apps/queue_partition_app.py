"""A test node's ``--app`` hook for link-fault tests: a ``step`` job that records its attempts.

Every attempt records ``start`` when its handler begins and ``end`` when it
returns, as one JSON :class:`Mark` RPUSHed to the Redis list ``marks``. The
marks go over a connection of their own to ``PARTITION_RECORD_URL`` (Redis
itself, not the node's link), so the test's record of executions survives the
faults the node's link is put through. The handler works ``ms`` milliseconds
and returns who ran which attempt, so the recorded result of a job names the
attempt whose completion the store kept.

Environment: ``PARTITION_RECORD_URL`` (the recorder's Redis), ``PARTITION_NODE``
(this node's name in the marks and results).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Literal

import anyio
import msgspec
import redis.asyncio

from actors.queue import QUEUE

if TYPE_CHECKING:
    from actors.queue import JobContext
    from runtime import NodeSetup

__all__ = ["MARKS", "Mark", "Ran", "Step", "setup"]

MARKS = "marks"


class Step(msgspec.Struct, frozen=True):
    """A job: the producer's sequence number and how long it works, in milliseconds."""

    seq: int
    ms: int = 100


class Ran(msgspec.Struct, frozen=True):
    """A job's result: which node ran which attempt of it."""

    job: str
    node: str
    attempt: int
    seq: int


class Mark(msgspec.Struct, frozen=True):
    """One attempt beginning (``start``) or returning (``end``), at Unix time ``at``."""

    kind: Literal["start", "end"]
    job: str
    node: str
    attempt: int
    seq: int
    at: float


def setup(node: NodeSetup) -> None:
    """Register ``step`` on the ``default`` queue."""
    recorder = redis.asyncio.Redis.from_url(os.environ["PARTITION_RECORD_URL"])
    name = os.environ["PARTITION_NODE"]
    encode = msgspec.json.Encoder().encode

    async def mark(kind: Literal["start", "end"], ctx: JobContext[Step]) -> None:
        at = time.time()
        await recorder.rpush(
            MARKS, encode(Mark(kind, ctx.job_id, name, ctx.attempt, ctx.payload.seq, at))
        )

    @node.require(QUEUE).handler("step", payload=Step)
    async def step(ctx: JobContext[Step]) -> Ran:
        await mark("start", ctx)
        await anyio.sleep(ctx.payload.ms / 1000)  # the job's work
        await mark("end", ctx)
        return Ran(ctx.job_id, name, ctx.attempt, ctx.payload.seq)
