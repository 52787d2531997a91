"""The fanout canary: proof that this node still hears what is published through Redis.

A subscription that Redis silently dropped, or a reader stuck on a dead
socket, leaves a node deaf while every health check stays green (python-
socketio's Redis manager, Socket.IO's adapter and others have shipped that
bug). The canary publishes a token on a channel of this node's own, through
Redis, every ``interval_seconds`` and at once after a gap (a reconnect), and
waits for it to come back. Until one comes back within ``timeout_seconds``
the fanout counts as deaf: ``/readyz`` says so, and the statistics show the
last round trip. A publish that fails (Redis down) proves nothing either way:
readiness already reports the outage, so only a canary that Redis accepted
and that never came back makes the node deaf.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import anyio

from runtime import Gap, RedisUnavailable

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from runtime import Clock, Fanout

__all__ = ["Canary"]

logger = logging.getLogger("actors.socket_hub.canary")


class Canary:
    """Publishes a token through the fanout and checks that it comes back."""

    def __init__(
        self,
        fanout: Fanout,
        node_id: str,
        clock: Clock,
        *,
        interval_seconds: float = 5.0,
        timeout_seconds: float = 2.0,
    ) -> None:
        self._fanout = fanout
        self._channel = f"hub.canary.{node_id}"
        self._clock = clock
        self.interval_seconds = interval_seconds
        self.timeout_seconds = timeout_seconds
        self.deaf = False  # the first probe goes out at once
        self.round_trip_ms: float | None = None
        self.sent = 0
        self.returned = 0
        self._waiting: bytes | None = None
        self._back = anyio.Event()
        self._now = anyio.Event()

    def reason(self) -> str | None:
        """The readiness check: why the fanout counts as deaf, or ``None``."""
        if not self.deaf:
            return None
        return (
            "socket hub fanout is deaf: no canary published through Redis came back within "
            f"{self.timeout_seconds:g}s"
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen and publish until cancelled (a supervised service)."""
        async with self._fanout.subscribe(self._channel, buffer_size=16) as events:
            task_status.started()
            async with anyio.create_task_group() as group:
                group.start_soon(self._publish_loop)
                async for item in events:
                    if isinstance(item, Gap):
                        self._now.set()  # a reconnect: prove the path again at once
                    elif item == self._waiting:
                        self._waiting = None
                        self._back.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._probe()
            with self._clock.move_on_after(self.interval_seconds if not self.deaf else 0.5):
                await self._now.wait()
            self._now = anyio.Event()

    async def _probe(self) -> None:
        token = secrets.token_bytes(8)
        self._waiting = token
        self._back = anyio.Event()
        started = self._clock.time()
        try:
            await self._fanout.publish(self._channel, token)
        except RedisUnavailable:
            return  # Redis is down: readiness says so already; deaf means "published, not heard"
        self.sent += 1
        with self._clock.move_on_after(self.timeout_seconds):
            await self._back.wait()
        if self._back.is_set():
            self.returned += 1
            self.round_trip_ms = (self._clock.time() - started) * 1000.0
            self._mark(deaf=False)
        else:
            self._mark(deaf=True)

    def _mark(self, *, deaf: bool) -> None:
        if deaf != self.deaf:
            if deaf:
                logger.warning("%s", self.reason())
            else:
                logger.info("socket hub fanout hears itself again (canary came back)")
        self.deaf = deaf
