"""Repeatable jobs: an interval or a cron expression, enqueued once per slot in the cluster.

Every node runs the schedule service; at each slot, each node asks the store
to ``claim_schedule(key, slot)`` and only the one that gets ``True`` enqueues
(with ``repeat_key`` set), so a cluster of nodes runs each slot once. A node
that wakes a period or more after a slot (it stalled) skips that slot rather
than claim it after its claim may have expired.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from croniter import croniter  # type: ignore[import-untyped]

from runtime import RedisUnavailable, Rejected

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from ._facade import Queue
    from ._messages import EnqueueRequest
    from ._parts import QueueParts

__all__ = ["Schedule", "Scheduler"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Schedule:
    """One repeatable job: its key, what to enqueue, and when."""

    key: str
    request: EnqueueRequest
    every_seconds: float | None
    cron: str | None

    @classmethod
    def of(
        cls, *, key: str, request: EnqueueRequest, every_seconds: float | None, cron: str | None
    ) -> Schedule:
        """A validated schedule; raises ``ValueError`` for a bad interval or cron text."""
        if (every_seconds is None) == (cron is None):
            raise ValueError("give exactly one of every_seconds and cron")
        if every_seconds is not None and not 1.0 <= every_seconds <= 31_536_000:
            raise ValueError(f"every_seconds must be 1..31536000, got {every_seconds}")
        if cron is not None and not croniter.is_valid(cron):
            raise ValueError(f"cron expression {cron!r} is not valid")
        if not key or len(key) > 200:
            raise ValueError("key must be 1..200 characters")
        return cls(key, request, every_seconds, cron)

    def next_slot(self, now: float) -> float:
        """The first slot strictly after ``now`` (Unix seconds)."""
        if self.every_seconds is not None:
            return (math.floor(now / self.every_seconds) + 1) * self.every_seconds
        assert self.cron is not None
        return float(croniter(self.cron, now).get_next(float))

    def period(self, slot: float) -> float:
        """How long the slot lasts (the claim's TTL)."""
        if self.every_seconds is not None:
            return self.every_seconds
        assert self.cron is not None
        return max(1.0, float(croniter(self.cron, slot).get_next(float)) - slot)


class Scheduler:
    """Enqueues repeatable jobs at their slots (a supervised service: :meth:`run`)."""

    def __init__(self, parts: QueueParts, queue: Queue) -> None:
        self._parts = parts
        self._queue = queue
        self.fired = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire every schedule at each of its slots until cancelled."""
        task_status.started()
        async with anyio.create_task_group() as group:
            for schedule in self._queue.schedules:
                group.start_soon(self._one, schedule)
            await anyio.sleep_forever()  # a service that returns would be restarted

    async def _one(self, schedule: Schedule) -> None:
        clock = self._parts.clock
        slot = schedule.next_slot(clock.time())
        while True:
            await clock.sleep(max(0.0, slot - clock.time()))
            late = clock.time() - slot
            if late >= schedule.period(slot):
                # A stalled node (a pause, a blocked loop): the slot's claim, which lives two
                # periods from an on-time node's claim, may be gone; claiming it now could run
                # the slot a second time. Skip it (no node on time means the slot is missed).
                logger.warning(
                    "repeatable job %s: slot %s skipped, %.1fs late", schedule.key, slot, late
                )
                slot = schedule.next_slot(clock.time())
                continue
            try:
                mine = await self._parts.store.claim_schedule(
                    schedule.key, slot, schedule.period(slot) * 2
                )
                if mine:
                    await self._queue.enqueue_many([schedule.request], repeat_key=schedule.key)
                    self.fired += 1
            except RedisUnavailable:
                logger.warning("repeatable job %s: slot %s missed (store down)", schedule.key, slot)
            except Rejected as exc:
                logger.error("repeatable job %s rejected: %s", schedule.key, exc)
            slot = schedule.next_slot(max(slot, clock.time()))
