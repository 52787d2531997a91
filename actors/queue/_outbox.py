"""The outbox service: drains the store's job events into the socket hub, at least once.

Events are acknowledged only after the hub accepted them (appended to the
user's personal room and its history), so a crash between the two re-sends,
never loses. Without a hub the events are acknowledged and dropped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import msgspec

from runtime import RedisUnavailable, Rejected

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from actors.socket_hub import Hub

    from ._model import JobEvent
    from ._parts import QueueParts

__all__ = ["Outbox", "hub_state"]

logger = logging.getLogger(__name__)
_BATCH = 256


def hub_state(event: JobEvent) -> str:
    """The ``task_progress`` state an event shows as."""
    if event.kind in ("completed", "failed", "cancelled"):
        return event.kind
    return "running"


class Outbox:
    """Delivers job events to the hub (a supervised service: :meth:`run`)."""

    def __init__(self, parts: QueueParts, hub: Hub | None) -> None:
        self._parts = parts
        self._hub = hub
        self.delivered = 0
        self.dropped = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Drain until cancelled."""
        parts = self._parts
        task_status.started()
        failures = 0
        while True:
            try:
                entries = await parts.store.events(_BATCH)
                for entry in entries:
                    await self._deliver(entry.event)
                if entries:
                    await parts.store.ack_events([entry.id for entry in entries])
                failures = 0
            except (RedisUnavailable, Rejected) as exc:
                failures += 1
                logger.warning("queue outbox: delivery deferred (%s)", exc)
                await parts.clock.sleep(parts.backoff(failures))
                continue
            if len(entries) < _BATCH:
                with parts.clock.move_on_after(parts.settings.poll_seconds):
                    await parts.outbox_waker.wait()

    async def _deliver(self, event: JobEvent) -> None:
        if self._hub is None:
            self.dropped += 1
            return
        await self._hub.task_progress(
            event.user_id,
            event.job_id,
            event.percentage,
            stage=event.stage,
            message=event.message,
            state=hub_state(event),
            result=msgspec.Raw(event.result) if event.result is not None else None,
            error=event.error,
        )
        self.delivered += 1
