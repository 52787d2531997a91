"""The cache actor's protocol: what other actors and the :class:`~actors.cache.Cache` send it.

Public commands are :class:`~runtime.Request` s typed with their reply, so
``reply: CacheGetReply = await ref.ask(CacheGet(key="user:1"))`` type-checks
with no cast. Any actor can talk to the cache with them; the facade is only
the fastest caller::

    await cache_ref.ask(CacheSet(key="user:1", value={"name": "Ada"}, ttl_seconds=60))
    reply = await cache_ref.ask(CacheGet(key="user:1"))   # CacheGetReply(found=True, ...)

**Keys and values.** A public command carries a *user* key (``"user:1"``,
with an optional sub-``prefix``) and a plain value, nothing else: the actor
always namespaces and validates the key
(``{prefix}:cache[:{sub-prefix}]:{key}``), validates TTLs and tags, and
encodes the value (``bytes`` as they are, anything else as msgpack), so no
command can name a Redis key outside the cache's namespace or store bytes
the cache did not encode. Invalid input comes back as
:class:`~runtime.Rejected` with the facade's codes, never as a crash:
``invalid_key``, ``invalid_pattern``, ``invalid_tag``, ``invalid_ttl``,
``unencodable_value``, ``value_too_large``, ``invalid_invalidation``,
``invalid_loader``.

**The facade's fast path.** The facade does that work in the caller's task
and sends private ``_Prepared...`` messages instead (full key, validated
TTLs and tags, and for a set the encoded payload), so the actor's loop never
encodes or validates for it. They are outside :data:`CacheMessage`, are
never decoded from an edge, and only this package builds them.

**Writes.** A write changes L1 at once and queues the Redis side behind the
actor's ordered writer; its reply comes back then, without waiting for
Redis. ``await reply.wait()`` waits until Redis has the change and the other
nodes were told (at once without an L2) and returns the final count.

Messages that carry a loader (a Python callable), :class:`CacheGetOrLoad`,
are in-process only: they are never decoded from an edge. Messages the actor
and its own parts send it (``_Fill``, ``_FlightDone``, ``_ApplyInvalidation``,
``_Reset``) are private too; :data:`_Internal` is the union of every private
message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from runtime import Message, Request

from ._completion import Completion
from ._flight import Flight
from ._statistics import CacheStatistics

if TYPE_CHECKING:
    from runtime import Clock

__all__ = [
    "CacheDelete",
    "CacheDeleteReply",
    "CacheExists",
    "CacheExistsReply",
    "CacheGet",
    "CacheGetOrLoad",
    "CacheGetOrLoadReply",
    "CacheGetReply",
    "CacheInvalidate",
    "CacheInvalidateReply",
    "CacheMessage",
    "CacheSet",
    "CacheSetReply",
    "CacheStats",
    "Invalidation",
    "Loader",
]

Loader = Callable[[], Awaitable[Any]]


# -- replies --------------------------------------------------------------------------------


class CacheGetReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`CacheGet`: ``found`` and the ``value`` (``None`` is a value too)."""

    found: bool
    value: Any = None


class CacheExistsReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`CacheExists`: whether the key is cached on any layer."""

    exists: bool


class CacheSetReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`CacheSet`: L1 holds the value; ``await wait()`` for Redis.

    ``pending`` is the writer's receipt (``None`` without an L2, or when
    nothing was queued); in process only, never encoded.
    """

    pending: Completion | None = None

    async def wait(self) -> None:
        """Return once Redis holds the value (or Redis was down and the write was counted)."""
        if self.pending is not None:
            await self.pending.wait()


class CacheDeleteReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`CacheDelete`.

    ``deleted`` is how many keys L1 held; without an L2 that is the result.
    With an L2, ``await wait()`` returns how many keys Redis held, once the
    delete has reached it and the other nodes were told.
    """

    deleted: int = 0
    pending: Completion | None = None

    async def wait(self) -> int:
        """The final count: Redis's once the delete reached it, else L1's."""
        return self.deleted if self.pending is None else await self.pending.wait()


class CacheInvalidateReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`CacheInvalidate`; ``removed`` and ``wait()`` as in deletes."""

    removed: int = 0
    pending: Completion | None = None

    async def wait(self) -> int:
        """The final count: Redis's once the invalidation reached it, else L1's."""
        return self.removed if self.pending is None else await self.pending.wait()


class CacheGetOrLoadReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`CacheGetOrLoad` (in process only).

    ``found`` with the ``value`` when L1 was filled meanwhile; else the
    ``flight`` to await (``None`` for a background refresh).
    """

    found: bool = False
    value: Any = None
    flight: Flight | None = None

    async def result(self, *, clock: Clock, timeout_seconds: float) -> Any:
        """The value: found, or the flight's result within ``timeout_seconds``.

        Raises:
            Rejected: ``loader_timeout`` when the loader took longer.
            Exception: whatever the loader raised.
        """
        if self.flight is None:
            return self.value
        return await self.flight.result(clock=clock, timeout_seconds=timeout_seconds)


# -- commands -------------------------------------------------------------------------------


class CacheGet(Request[CacheGetReply], tag="cache.get", frozen=True, kw_only=True):
    """Read one key through L1 then L2."""

    key: str
    prefix: str | None = None


class CacheSet(Request[CacheSetReply], tag="cache.set", frozen=True, kw_only=True):
    """Store ``value`` in L1 and (write-through, in order) in L2.

    ``ttl_seconds`` defaults to the cache's ``default_ttl_seconds``; the
    actor encodes ``value`` (``bytes`` as they are, anything else as msgpack).
    """

    key: str
    value: Any
    ttl_seconds: float | None = None
    stale_seconds: float = 0.0
    tags: tuple[str, ...] = ()
    prefix: str | None = None


class CacheDelete(Request[CacheDeleteReply], tag="cache.delete", frozen=True, kw_only=True):
    """Delete keys on every layer and every node."""

    keys: tuple[str, ...]
    prefix: str | None = None


class CacheExists(Request[CacheExistsReply], tag="cache.exists", frozen=True, kw_only=True):
    """Whether a key is cached on any layer (not counted as a lookup)."""

    key: str
    prefix: str | None = None


class CacheInvalidate(
    Request[CacheInvalidateReply], tag="cache.invalidate", frozen=True, kw_only=True
):
    """Invalidate by glob ``pattern`` over user keys, or by ``tag``, on every layer and node.

    Exactly one of the two; ``prefix`` scopes a pattern to a sub-prefix.
    """

    pattern: str | None = None
    tag: str | None = None
    prefix: str | None = None


class CacheStats(Request[CacheStatistics], tag="cache.stats", frozen=True, kw_only=True):
    """Reply with a :class:`~actors.cache.CacheStatistics` snapshot."""


class CacheGetOrLoad(
    Request[CacheGetOrLoadReply], tag="cache.get_or_load", frozen=True, kw_only=True
):
    """Join (or start) the single flight that loads ``key``; in-process only (a loader).

    ``cluster_lock`` loads once across nodes (a Redis lock); ``refresh`` asks
    for a background refresh of a stale entry (the reply then has no flight);
    ``force`` runs the loader even if L2 holds a fresh value. ``ttl_seconds``
    defaults to the cache's ``default_ttl_seconds``.
    """

    key: str
    loader: Loader
    ttl_seconds: float | None = None
    stale_seconds: float = 0.0
    tags: tuple[str, ...] = ()
    cluster_lock: bool = False
    refresh: bool = False
    force: bool = False
    prefix: str | None = None


class Invalidation(msgspec.Struct, frozen=True, kw_only=True):
    """What one node tells the others over the fanout after a write (msgpack).

    Exactly one of ``keys`` (non-empty), ``pattern``, ``tag`` or ``everything``
    says what to drop. Nodes skip their own messages. New fields get defaults,
    so older nodes can still read newer messages.
    """

    node: str
    keys: tuple[str, ...] = ()
    pattern: str | None = None
    tag: str | None = None
    everything: bool = False


CacheMessage = (
    CacheGet | CacheSet | CacheDelete | CacheExists | CacheInvalidate | CacheStats | CacheGetOrLoad
)
"""Every public command of the cache actor."""


# -- private: the facade's fast path (validated, namespaced, encoded in the caller's task) -----


class _PreparedSet(Request[CacheSetReply], tag="cache.prepared_set", frozen=True, kw_only=True):
    """A set the facade prepared: full ``key``, valid TTLs and tags, ``payload`` encoded."""

    key: str
    value: Any
    payload: bytes
    encoding: int
    ttl_seconds: float
    stale_seconds: float = 0.0
    tags: tuple[str, ...] = ()


class _PreparedDelete(
    Request[CacheDeleteReply], tag="cache.prepared_delete", frozen=True, kw_only=True
):
    """A delete of full, validated keys."""

    keys: tuple[str, ...]


class _PreparedExists(
    Request[CacheExistsReply], tag="cache.prepared_exists", frozen=True, kw_only=True
):
    """An exists check of a full, validated key."""

    key: str


class _PreparedInvalidate(
    Request[CacheInvalidateReply], tag="cache.prepared_invalidate", frozen=True, kw_only=True
):
    """An invalidation by a validated full-key ``pattern`` or a validated ``tag`` (one of them)."""

    pattern: str | None = None
    tag: str | None = None


class _PreparedLoad(
    Request[CacheGetOrLoadReply], tag="cache.prepared_get_or_load", frozen=True, kw_only=True
):
    """A :class:`CacheGetOrLoad` with a full key and valid TTLs and tags.

    ``lookup`` is false when no caller's lookup missed (the facade already
    counted its own, or warming), so L2 reads are not counted in the hit ratio.
    """

    key: str
    loader: Loader
    ttl_seconds: float
    stale_seconds: float = 0.0
    tags: tuple[str, ...] = ()
    cluster_lock: bool = False
    refresh: bool = False
    force: bool = False
    lookup: bool = True


_Prepared = _PreparedSet | _PreparedDelete | _PreparedExists | _PreparedInvalidate | _PreparedLoad
"""What the facade (and the actor, for loaded values) sends instead of the public commands."""


# -- private: what the actor and its parts send it --------------------------------------------


class _Fill(Message, tag="cache.fill", frozen=True, kw_only=True):
    """A value a reader fetched from L2: keep it in L1 unless a write came since ``epoch``."""

    key: str
    value: Any
    size_bytes: int
    ttl_seconds: float
    stale_seconds: float = 0.0
    tags: tuple[str, ...] = ()
    epoch: int


class _FlightDone(Message, tag="cache.flight_done", frozen=True, kw_only=True):
    """Sent by a finished flight to the actor, which forgets it."""

    key: str


class _ApplyInvalidation(Message, tag="cache.apply_invalidation", frozen=True, kw_only=True):
    """An invalidation from another node, for this node's L1."""

    invalidation: Invalidation


class _Reset(Message, tag="cache.reset", frozen=True, kw_only=True):
    """Drop every L1 entry (after a Redis reconnect: invalidations may have been missed)."""

    reason: str


_Internal = _Prepared | _Fill | _FlightDone | _ApplyInvalidation | _Reset
"""Every private message: the facade's prepared commands and what the actor's parts send it."""
