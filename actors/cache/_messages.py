"""The cache actor's protocol: what other actors and the :class:`~actors.cache.Cache` send it.

Keys in these messages are already namespaced (``{prefix}:cache:{key}``) and
validated by the sender; values are already encoded (``payload`` and its
``encoding``), so the actor never does CPU-heavy work for a caller.

Messages that carry a loader (a Python callable) are in-process only: they
are never decoded from an edge, and say so in their docstrings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from runtime import Message

__all__ = [
    "CacheApplyInvalidation",
    "CacheDelete",
    "CacheExists",
    "CacheFill",
    "CacheFlightDone",
    "CacheGet",
    "CacheGetOrLoad",
    "CacheInvalidate",
    "CacheMessage",
    "CacheReset",
    "CacheSet",
    "CacheStats",
    "Invalidation",
    "Loader",
]

Loader = Callable[[], Awaitable[Any]]


class CacheGet(Message, tag="cache.get", frozen=True, kw_only=True):
    """Read one key through L1 then L2; replies ``Found`` or ``None``."""

    key: str


class CacheSet(Message, tag="cache.set", frozen=True, kw_only=True):
    """Store an encoded value in L1 and (write-through, in order) in L2."""

    key: str
    value: Any
    payload: bytes
    encoding: int
    ttl_seconds: float
    stale_seconds: float = 0.0
    tags: tuple[str, ...] = ()


class CacheDelete(Message, tag="cache.delete", frozen=True, kw_only=True):
    """Delete keys on every layer and every node; replies how many L2 held."""

    keys: tuple[str, ...]


class CacheExists(Message, tag="cache.exists", frozen=True, kw_only=True):
    """Whether a key is cached on any layer."""

    key: str


class CacheInvalidate(Message, tag="cache.invalidate", frozen=True, kw_only=True):
    """Invalidate by full-key glob ``pattern`` or by ``tag`` on every layer and node."""

    pattern: str | None = None
    tag: str | None = None


class CacheStats(Message, tag="cache.stats", frozen=True, kw_only=True):
    """Reply with a :class:`~actors.cache.CacheStatistics` snapshot."""


class CacheReset(Message, tag="cache.reset", frozen=True, kw_only=True):
    """Drop every L1 entry (after a Redis reconnect: invalidations may have been missed)."""

    reason: str


class CacheFill(Message, tag="cache.fill", frozen=True, kw_only=True):
    """A value a reader fetched from L2: keep it in L1 unless a write came since ``epoch``."""

    key: str
    value: Any
    size_bytes: int
    ttl_seconds: float
    stale_seconds: float = 0.0
    tags: tuple[str, ...] = ()
    epoch: int


class CacheGetOrLoad(Message, tag="cache.get_or_load", frozen=True, kw_only=True):
    """Join (or start) the single flight that loads ``key``; in-process only.

    Replies the :class:`~actors.cache._flight.Flight` to await, or ``Found``
    when the key was filled meanwhile. ``refresh`` asks for a background
    refresh of a stale entry (the reply is then ``None``); ``force`` runs the
    loader even if L2 holds a fresh value (scheduled warming); ``lookup`` is
    false when no caller's lookup missed (warming), so L2 reads are not
    counted in the hit ratio.
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


class CacheFlightDone(Message, tag="cache.flight_done", frozen=True, kw_only=True):
    """Sent by a finished flight to the actor, which forgets it (internal)."""

    key: str


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


class CacheApplyInvalidation(Message, tag="cache.apply_invalidation", frozen=True, kw_only=True):
    """An invalidation from another node, for this node's L1 (internal)."""

    invalidation: Invalidation


CacheMessage = (
    CacheGet
    | CacheSet
    | CacheDelete
    | CacheExists
    | CacheInvalidate
    | CacheStats
    | CacheReset
    | CacheFill
    | CacheGetOrLoad
    | CacheFlightDone
    | CacheApplyInvalidation
)
