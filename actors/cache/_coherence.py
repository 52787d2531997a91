"""Cache coherence across nodes: invalidation events over a typed channel.

After a write reaches Redis, the writer publishes an :class:`Invalidation`
naming the keys (or the pattern, or the tag) it changed on
:data:`INVALIDATIONS`; every other node drops those keys from its L1. A node
that may have missed events (the channel reports a :class:`~runtime.Gap`,
e.g. after a Redis reconnect) stops trusting its whole L1 and drops it.
Encoding, decoding and the counting of undecodable payloads are the
channel's (:class:`~runtime.Channel`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime import ChannelSpec, Gap

from ._messages import Invalidation, _ApplyInvalidation, _Reset

if TYPE_CHECKING:
    from runtime import ActorRef, ChannelStatistics, Fanout

    from ._messages import _Internal

__all__ = ["INVALIDATIONS", "Coherence"]

#: The channel every cache node publishes its invalidations on.
INVALIDATIONS = ChannelSpec("cache.invalidations", Invalidation)


class Coherence:
    """Publishes this node's invalidations and feeds other nodes' to the actor."""

    def __init__(
        self, fanout: Fanout, node: str, *, spec: ChannelSpec[Invalidation] = INVALIDATIONS
    ) -> None:
        self.node = node
        self._channel = spec.bind(fanout)
        self._received = 0

    @property
    def sent(self) -> int:
        """Invalidations published."""
        return self._channel.statistics().published

    @property
    def received(self) -> int:
        """Other nodes' invalidations handed to the actor (this node's own are skipped)."""
        return self._received

    @property
    def publish_failures(self) -> int:
        """Invalidations not published because Redis was unavailable."""
        return self._channel.statistics().publish_failures

    @property
    def undecodable(self) -> int:
        """Payloads on the channel that were not invalidations, skipped."""
        return self._channel.statistics().undecodable

    def statistics(self) -> ChannelStatistics:
        """The channel's counters (``received`` there includes this node's own events)."""
        return self._channel.statistics()

    async def publish(self, invalidation: Invalidation) -> None:
        """Tell the other nodes; a Redis outage is counted, never raised."""
        await self._channel.try_publish(invalidation)

    async def listen(self, actor: ActorRef[_Internal]) -> None:
        """Forward other nodes' invalidations (and gaps) to the actor, forever."""
        async with self._channel.subscribe() as events:
            async for event in events:
                if isinstance(event, Gap):
                    await actor.tell(_Reset(reason=event.reason))
                elif event.node != self.node:
                    self._received += 1
                    await actor.tell(_ApplyInvalidation(invalidation=event))
