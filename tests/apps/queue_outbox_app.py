"""A test node's ``--app`` hook for the outbox tests: a ``report`` job with a progress event.

``report`` reports 50 % (a ``progress`` event for its user), works ``ms``
milliseconds and returns which node ran it, so the user's room history holds
one ``running`` frame and then one ``completed`` frame per job.

Environment: ``OUTBOX_NODE`` (this node's name in the results).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import msgspec

from actors.queue import QUEUE

if TYPE_CHECKING:
    from actors.queue import JobContext
    from runtime import NodeSetup

__all__ = ["Report", "Reported", "setup"]


class Report(msgspec.Struct, frozen=True):
    """A job: the producer's sequence number and how long it works, in milliseconds."""

    seq: int
    ms: int = 10


class Reported(msgspec.Struct, frozen=True):
    """A job's result: which node ran it."""

    node: str
    seq: int


def setup(node: NodeSetup) -> None:
    """Register ``report`` on the ``default`` queue."""
    name = os.environ["OUTBOX_NODE"]

    @node.require(QUEUE).handler("report", payload=Report)
    async def report(ctx: JobContext[Report]) -> Reported:
        await ctx.progress(50, stage="half")
        await anyio.sleep(ctx.payload.ms / 1000)  # the job's work
        return Reported(name, ctx.payload.seq)
