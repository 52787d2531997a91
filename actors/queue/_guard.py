"""The store guard: opens the job store, then watches its marker for a Redis that lost its data.

A Redis restarted empty (or a failover to a replica that never had the data)
keeps answering, so nothing fails; only the marker each queue keeps in Redis
(an epoch, see :meth:`RedisJobStore.check`) tells. The guard checks it every
few seconds and as soon as the Redis link comes back up, so a restart is
seen within a round trip of the reconnect. A loss is

* logged at ERROR, naming the queues whose jobs are gone,
* reported by ``/readyz`` (check ``queue.store``) for at least one guard
  period, even if the link flaps again meanwhile, and
* counted for good in the ``queue.store`` statistics (``losses``,
  ``last_loss``, ``last_loss_at``), which the metrics actor exports, so an
  alert does not depend on a probe landing inside that period.

The store rewrites the marker before it reports the loss, so jobs enqueued
afterwards run normally; the jobs the lost data held are gone and are never
run from a stale record (their attempts' finishes fail the token check).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import msgspec

from runtime import RedisUnavailable, ServiceSpec

from ._parts import Waker
from ._store import StoreLost

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from runtime import RedisLink

    from ._parts import QueueParts

__all__ = ["GUARD_SECONDS", "StoreGuard", "StoreHealth"]

logger = logging.getLogger(__name__)

GUARD_SECONDS = 5.0
"""How often the guard checks the marker (besides each reconnect)."""


class StoreHealth(msgspec.Struct, frozen=True, kw_only=True):
    """The ``queue.store`` statistics: what this node's guard has seen of the store."""

    opened: bool
    lost_now: bool
    losses: int
    last_loss: str | None
    last_loss_at: float | None


class StoreGuard:
    """Opens ``parts.store`` and checks its marker; run :meth:`spec` under the supervisor."""

    def __init__(self, parts: QueueParts, redis: RedisLink | None) -> None:
        self._parts = parts
        self._redis = redis
        self._opened = False
        self._losses = 0
        self._last_loss: str | None = None
        self._last_loss_at: float | None = None

    def spec(self) -> ServiceSpec:
        """The guard as a supervised service (``queue.guard``)."""
        return ServiceSpec("queue.guard", self.run)

    def statistics(self) -> StoreHealth:
        """The losses seen so far, and whether one is being reported now."""
        return StoreHealth(
            opened=self._opened,
            lost_now=self._parts.lost_reason is not None,
            losses=self._losses,
            last_loss=self._last_loss,
            last_loss_at=self._last_loss_at,
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the store, then check it every :data:`GUARD_SECONDS` and on each reconnect."""
        parts = self._parts
        back = Waker()

        def came_back(up: bool) -> None:
            if up:
                back.notify()

        forget = self._redis.on_transition(came_back) if self._redis is not None else None
        task_status.started()
        try:
            while True:
                await self._check_once()
                with parts.clock.move_on_after(GUARD_SECONDS):
                    if parts.lost_reason is None:
                        await back.wait()
                    else:  # a loss stays reported a whole period, even if the link flaps
                        await anyio.sleep_forever()
        finally:
            if forget is not None:
                forget()

    async def _check_once(self) -> None:
        parts = self._parts
        try:
            if not self._opened:
                await parts.store.open()
                self._opened = True
            else:
                check = getattr(parts.store, "check", None)
                if check is not None:
                    await check()
        except StoreLost as exc:
            self._losses += 1
            self._last_loss = str(exc)
            self._last_loss_at = parts.clock.time()
            parts.lost_reason = f"queue store lost its data: {exc}"
            logger.error(
                "%s; the jobs it held are gone (a new epoch is marked and new jobs run)",
                parts.lost_reason,
            )
            return
        except RedisUnavailable:
            return  # the link's own readiness check reports the outage
        if parts.lost_reason is not None:
            logger.warning("queue store is back: %s no longer holds", parts.lost_reason)
        parts.lost_reason = None
