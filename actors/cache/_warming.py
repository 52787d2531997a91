"""Cache warming: keys loaded when the cache starts and refreshed on a schedule."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from ._messages import Loader, _PreparedLoad

if TYPE_CHECKING:
    from runtime import ActorRef, Clock

    from ._messages import CacheMessage, _Internal

__all__ = ["Warmer"]

logger = logging.getLogger("actors.cache")


class Warmer(msgspec.Struct, frozen=True, kw_only=True):
    """One warmed key (already namespaced) and how to load it."""

    key: str
    loader: Loader
    ttl_seconds: float
    refresh_seconds: float | None
    tags: tuple[str, ...]
    timeout_seconds: float

    async def run(self, cache: ActorRef[CacheMessage | _Internal], clock: Clock) -> None:
        """Load the key now, then reload it every ``refresh_seconds`` (a background task).

        The first load takes a fresh value from Redis when another node has
        one; scheduled refreshes always run the loader. A failing loader is
        logged and retried at the next refresh; it does not crash the cache.
        """
        force = False
        while True:
            reply = await cache.ask(
                _PreparedLoad(
                    key=self.key,
                    loader=self.loader,
                    ttl_seconds=self.ttl_seconds,
                    tags=self.tags,
                    force=force,
                    lookup=False,
                )
            )
            if reply.flight is not None:
                try:
                    await reply.flight.result(clock=clock, timeout_seconds=self.timeout_seconds)
                except Exception as exc:
                    logger.warning("warming %s failed: %s", self.key, exc, exc_info=exc)
                else:
                    logger.debug("warmed %s", self.key)
            if self.refresh_seconds is None:
                return
            await clock.sleep(self.refresh_seconds)
            force = True
