"""Cache coherence across nodes: invalidation events over a typed channel.

After a write reaches Redis, the writer publishes an :class:`Invalidation`
naming the keys (or the pattern, or the tag) it changed on
:data:`INVALIDATIONS`; every other node drops those keys from its L1. A node
that may have missed events (the channel reports a :class:`~runtime.Gap`,
e.g. after a Redis reconnect) stops trusting its whole L1 and drops it.
Decoding and the counting of undecodable payloads are the channel's
(:class:`~runtime.Channel`).

When the fanout is a :class:`~runtime.RedisFanout` on the same Redis link as
the L2 store, the writer sends the invalidation's ``PUBLISH`` in the same round
trip as the write (:meth:`Coherence.piggyback_channel`, :meth:`Coherence.encode`):
the bytes are exactly what :meth:`Channel.publish` would send.

A node skips its own invalidations before decoding them: every payload it
publishes starts with the same bytes (the msgpack map header, then the
``node`` field and its value), and its subscription drops payloads that start
with them (``skip_prefix``), so the listener is not even woken for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from runtime import ChannelSpec, Gap, RedisFanout

from ._l2 import RedisL2
from ._messages import Invalidation, _ApplyInvalidation, _Reset

if TYPE_CHECKING:
    from runtime import ActorRef, ChannelStatistics, Fanout

    from ._l2 import L2Store
    from ._messages import _Internal

__all__ = ["INVALIDATIONS", "Coherence"]

#: The channel every cache node publishes its invalidations on.
INVALIDATIONS = ChannelSpec("cache.invalidations", Invalidation)

# The channel's own encoding (runtime.Channel encodes with a default msgpack Encoder).
_encoder = msgspec.msgpack.Encoder()


def own_prefix(node: str) -> bytes:
    """The bytes every invalidation ``node`` publishes starts with (``b""`` if there are none)."""
    encoded = _encoder.encode(Invalidation(node=node))
    marker = _encoder.encode("node") + _encoder.encode(node)
    # A map header of one byte, then the node field first: otherwise do not skip by prefix.
    return encoded[: 1 + len(marker)] if encoded[1:].startswith(marker) else b""


class Coherence:
    """Publishes this node's invalidations and feeds other nodes' to the actor."""

    def __init__(
        self, fanout: Fanout, node: str, *, spec: ChannelSpec[Invalidation] = INVALIDATIONS
    ) -> None:
        self.node = node
        self._fanout = fanout
        self._spec = spec
        self._channel = spec.bind(fanout)
        self._received = 0
        self._piggybacked = 0
        self._skip_prefix = own_prefix(node)
        self._redis_fanout = fanout if isinstance(fanout, RedisFanout) else None
        # Invalidation(node, keys=K) encodes as head + K + tail (map fields in order).
        marker = _encoder.encode(("\x00",))
        sample = _encoder.encode(Invalidation(node=node, keys=("\x00",)))
        self._keys_head, _, self._keys_tail = sample.partition(marker)

    @property
    def sent(self) -> int:
        """Invalidations published (on their own, or in the same round trip as a write)."""
        return self._channel.statistics().published + self._piggybacked

    def piggyback_channel(self, l2: L2Store) -> str | None:
        """The Redis channel ``l2`` can ``PUBLISH`` invalidations on itself, or ``None``.

        Only a :class:`RedisL2` on the very link of a :class:`~runtime.RedisFanout`.
        """
        fanout = self._fanout
        if isinstance(l2, RedisL2) and isinstance(fanout, RedisFanout) and l2.link is fanout.link:
            return fanout.redis_channel(self._channel.name)
        return None

    def encode(self, invalidation: Invalidation) -> bytes:
        """The payload :meth:`publish` would send for ``invalidation``."""
        return _encoder.encode(invalidation)

    def encode_keys(self, keys: tuple[str, ...]) -> bytes:
        """The payload of ``Invalidation(node=self.node, keys=keys)``, without building it."""
        return b"".join((self._keys_head, _encoder.encode(keys), self._keys_tail))

    def piggybacked(self) -> None:
        """Count one invalidation that a write's own round trip published."""
        self._piggybacked += 1
        if self._redis_fanout is not None:
            self._redis_fanout.count_published()

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
        async with self._channel.subscribe(skip_prefix=self._skip_prefix) as events:
            async for event in events:
                if isinstance(event, Gap):
                    await actor.tell(_Reset(reason=event.reason))
                elif event.node != self.node:  # (a payload the prefix did not catch)
                    self._received += 1
                    await actor.tell(_ApplyInvalidation(invalidation=event))
