"""Cache coherence across nodes: invalidation messages over the fanout.

After a write reaches Redis, the writer publishes an :class:`Invalidation`
naming the keys (or the pattern, or the tag) it changed; every other node
drops those keys from its L1. A node that may have missed messages (the
fanout reports a :class:`~runtime.Gap`, e.g. after a Redis reconnect) stops
trusting its whole L1 and drops it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from runtime import Gap, RedisUnavailable

from ._messages import CacheApplyInvalidation, CacheReset, Invalidation

if TYPE_CHECKING:
    from runtime import ActorRef, Fanout

    from ._messages import CacheMessage

__all__ = ["CHANNEL", "Coherence"]

logger = logging.getLogger("actors.cache")

CHANNEL = "cache.invalidations"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Invalidation)


class Coherence:
    """Publishes this node's invalidations and feeds other nodes' to the actor."""

    def __init__(self, fanout: Fanout, node: str, *, channel: str = CHANNEL) -> None:
        self._fanout = fanout
        self.node = node
        self._channel = channel
        self.sent = 0
        self.received = 0
        self.undecodable = 0
        self.publish_failures = 0

    async def publish(self, invalidation: Invalidation) -> None:
        """Tell the other nodes; a Redis outage is counted, never raised."""
        try:
            await self._fanout.publish(self._channel, _encoder.encode(invalidation))
        except RedisUnavailable as exc:
            self.publish_failures += 1
            logger.debug("cache invalidation not published: %s", exc)
            return
        self.sent += 1

    async def listen(self, actor: ActorRef[CacheMessage]) -> None:
        """Forward other nodes' invalidations (and gaps) to the actor, forever."""
        async with self._fanout.subscribe(self._channel) as subscription:
            async for item in subscription:
                if isinstance(item, Gap):
                    await actor.tell(CacheReset(reason=item.reason))
                    continue
                try:
                    invalidation = _decoder.decode(item)
                except msgspec.DecodeError as exc:
                    self.undecodable += 1
                    logger.warning("ignored an undecodable cache invalidation: %s", exc)
                    continue
                if invalidation.node == self.node:
                    continue
                self.received += 1
                await actor.tell(CacheApplyInvalidation(invalidation=invalidation))
