"""The outbox service: drains the store's job events into the socket hub, at least once.

Events are acknowledged only after the hub accepted them (appended to the
user's personal room and its history), so a crash between the two re-sends,
never loses. Without a hub the events are acknowledged and dropped.

Every node runs the service, but with Redis one node at a time drains a
queue's outbox: the store's ``events`` takes or renews the queue's lease in
the read itself (see :mod:`._store_redis`), so events reach the hub in stream
order and normally once. A node that drains waits for the next event with
the store's ``wait_events`` (a blocking read: events other nodes write come
in a round trip); one that drains nothing tries again every third of the
lease, so a dead drainer is replaced within a lease. A drainer that lost its
lease delivers the batch it had read (a repeat bounded by one batch at a
handover). On the way out the service releases its leases.
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
_RELEASE_SECONDS = 2.0
_WAIT_SLACK_SECONDS = 1.0


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
        store = parts.store
        task_status.started()
        # The longest wait between two passes: the owner renews its lease at least every
        # third of it, and a follower tries to take it as often.
        turn = min(parts.settings.poll_seconds, parts.settings.outbox_lease_seconds / 3)
        failures = 0
        try:
            while True:
                try:
                    entries = await store.events(_BATCH)
                    for entry in entries:
                        await self._deliver(entry.event)
                    if entries:
                        await store.ack_events([entry.id for entry in entries])
                    if len(entries) < _BATCH:
                        if store.drains_outbox():
                            # The store's own wait ends first (a cancelled blocking read
                            # would cost its connection); this bounds the memory twin's.
                            with parts.clock.move_on_after(turn + _WAIT_SLACK_SECONDS):
                                await store.wait_events(turn)
                        else:
                            await parts.clock.sleep(turn)
                    failures = 0
                except (RedisUnavailable, Rejected) as exc:
                    failures += 1
                    logger.warning("queue outbox: delivery deferred (%s)", exc)
                    await parts.clock.sleep(parts.backoff(failures))
        finally:
            with anyio.CancelScope(shield=True), parts.clock.move_on_after(_RELEASE_SECONDS):
                try:
                    await store.release_outbox()
                except RedisUnavailable as exc:
                    logger.warning("queue outbox: lease not released (%s); it expires", exc)

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
