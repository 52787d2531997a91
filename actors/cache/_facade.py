"""The typed Python API over the cache actor: ``get``, ``set``, ``get_or_set`` and the rest.

Reads take the fast path: an L1 hit is served from the shared table without a
message round trip; an L1 miss reads Redis in the caller's own task (so many
readers wait on Redis concurrently, not one after another in the actor) and
hands the value to the actor for L1. ``set`` takes a fast path too: the
caller's task changes L1 and hands the Redis side to the ordered writer in one
synchronous step, through the running incarnation's :class:`~._writes.Writes`
(no actor round trip; without an L2 nothing is awaited at all). Deletes and
invalidations go through the actor, which orders them with the same writer.
Callers never see a Redis outage as an error; :meth:`Cache.read` says whether
an answer was degraded by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio.lowlevel
import msgspec

from runtime import Extension, MailboxFull, RedisUnavailable, Rejected

from ._codec import encode_value
from ._keys import MAX_TTL_SECONDS, validate_stale, validate_tag, validate_tags, validate_ttl
from ._l1 import L1State
from ._messages import (
    CacheStats,
    _PreparedDelete,
    _PreparedExists,
    _PreparedInvalidate,
    _PreparedLoad,
)
from ._reads import fetch_from_l2, fetch_many_from_l2

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from runtime import ActorRef

    from ._keys import KeySpace
    from ._messages import CacheMessage, _Fill, _Internal
    from ._parts import CacheParts
    from ._statistics import CacheStatistics

__all__ = ["CACHE", "Cache", "CacheRead"]

P = ParamSpec("P")
R = TypeVar("R")

# Validated keys remembered by the API, so a hot get skips validation.
_KEY_MEMO_SIZE = 65_536

# An L1-only set never awaits; one in this many yields to the event loop all the same.
_SETS_PER_CHECKPOINT = 256


class CacheRead(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Cache.read` found, and whether Redis could be asked.

    Attributes:
        found: the key has a value (``value``); ``False`` for a miss.
        value: the value, or ``None`` on a miss.
        degraded: the cache has a Redis layer and could not reach it for this
            answer. A degraded hit came from this node's L1 and may be older
            than what another node wrote meanwhile; a degraded miss only says
            that L1 does not hold the key (Redis may).
    """

    found: bool
    value: Any = None
    degraded: bool = False


class Cache:
    """One node's cache, as a Python API. Build it with :func:`actors.cache.cache_child`.

    Keys are user keys; they are namespaced as ``{prefix}:cache[:{prefix}]:{key}``
    (``prefix=`` is an optional per-call sub-prefix). Values: ``bytes`` pass
    through untouched, anything else is encoded with msgpack. Values are
    shared, not copied: treat what you get as read-only.
    """

    def __init__(self, parts: CacheParts) -> None:
        self._settings = parts.settings
        self._keyspace = parts.keyspace
        self._table = parts.table
        self._l2 = parts.l2
        self._clock = parts.clock
        self._warmers = parts.warmers
        self._full_keys: dict[tuple[str, str | None], str] = {}
        self._default_ttl = validate_ttl(None, parts.settings.default_ttl_seconds)
        self._unyielded_sets = 0

    @property
    def keyspace(self) -> KeySpace:
        """The Redis key names of this cache (its namespace, tag and lock keys)."""
        return self._keyspace

    def _ref(self) -> ActorRef[CacheMessage | _Internal]:
        ref = self._table.ref
        if ref is None:
            raise Rejected("unavailable", "the cache actor is not running; retry shortly")
        return ref

    def _full(self, key: str, prefix: str | None) -> str:
        # Validated keys are remembered (bounded), so a hot get skips validation.
        if type(key) is not str:  # validate before hashing: a list key must not be a TypeError
            return self._keyspace.full_key(key, prefix)
        memo = self._full_keys
        full = memo.get((key, prefix))
        if full is None:
            full = self._keyspace.full_key(key, prefix)
            if len(memo) >= _KEY_MEMO_SIZE:
                memo.clear()
            memo[(key, prefix)] = full
        return full

    # -- reads ------------------------------------------------------------------------------

    async def get(self, key: str, *, prefix: str | None = None, default: Any = None) -> Any:
        """The cached value of ``key``, or ``default``. A stale value within its window counts."""
        full = self._full(key, prefix)
        hit = self._table.lookup(full)
        if hit is not None:
            return default if hit.state is L1State.ABSENT else hit.value
        fetched = await fetch_from_l2(self._l2, self._table, full, self._clock.time)
        if fetched is None:
            return default
        self._fill(fetched.fill)
        return fetched.value

    async def read(self, key: str, *, prefix: str | None = None) -> CacheRead:
        """Like :meth:`get`, with metadata: whether it was found, and whether it was degraded.

        ``degraded`` is true when the cache has a Redis layer that is
        unreachable now: a hit then came from L1 alone, and a miss could not
        ask Redis (counted in ``degraded_reads``). The HTTP ``GET`` answers
        from it (``503 cache_unavailable`` or the ``X-Cache-Degraded`` header).
        """
        full = self._full(key, prefix)
        l2 = self._l2
        hit = self._table.lookup(full)
        if hit is not None:
            degraded = l2 is not None and not l2.available
            if hit.state is L1State.ABSENT:
                return CacheRead(found=False, degraded=degraded)
            return CacheRead(found=True, value=hit.value, degraded=degraded)
        try:
            fetched = await fetch_from_l2(
                l2, self._table, full, self._clock.time, raise_unavailable=True
            )
        except RedisUnavailable:
            return CacheRead(found=False, degraded=True)
        if fetched is None:
            return CacheRead(found=False)
        self._fill(fetched.fill)
        return CacheRead(found=True, value=fetched.value)

    async def get_many(self, keys: Iterable[str], *, prefix: str | None = None) -> dict[str, Any]:
        """The cached values of ``keys`` that are present, by key (one Redis round trip)."""
        wanted = {key: self._full(key, prefix) for key in keys}
        found: dict[str, Any] = {}
        missing: list[tuple[str, str]] = []
        for key, full in wanted.items():
            hit = self._table.lookup(full)
            if hit is None:
                missing.append((key, full))
            elif hit.state is not L1State.ABSENT:
                found[key] = hit.value
        if missing:
            fulls = [full for _, full in missing]
            fetched = await fetch_many_from_l2(self._l2, self._table, fulls, self._clock.time)
            for (key, _), item in zip(missing, fetched, strict=True):
                if item is not None:
                    self._fill(item.fill)
                    found[key] = item.value
        return found

    async def exists(self, key: str, *, prefix: str | None = None) -> bool:
        """Whether ``key`` is cached on any layer (does not count as a lookup)."""
        reply = await self._ref().ask(_PreparedExists(key=self._full(key, prefix)))
        return reply.exists

    # -- writes -----------------------------------------------------------------------------

    async def set(
        self,
        key: str,
        value: object,
        *,
        ttl_seconds: float | None = None,
        stale_seconds: float = 0.0,
        tags: Iterable[str] = (),
        prefix: str | None = None,
    ) -> None:
        """Store ``value`` for ``ttl_seconds`` (default 1 h) on every layer.

        When it returns, Redis holds the value (or Redis is down and the
        write was counted as degraded) and the other nodes have been told to
        drop their copies.
        """
        full = self._full(key, prefix)
        settings = self._settings
        payload, encoding = encode_value(value, max_value_bytes=settings.max_value_bytes)
        if ttl_seconds is None:
            ttl = self._default_ttl
        elif ttl_seconds.__class__ is float and 0.0 < ttl_seconds <= MAX_TTL_SECONDS:
            ttl = ttl_seconds  # what validate_ttl accepts, at a fraction of its cost
        else:
            ttl = validate_ttl(ttl_seconds, settings.default_ttl_seconds)
        stale = 0.0 if stale_seconds == 0 else validate_stale(stale_seconds)
        valid_tags = () if tags == () else validate_tags(tags)
        while True:
            writes = self._table.writes
            if writes is None:
                raise Rejected("unavailable", "the cache actor is not running; retry shortly")
            writer = writes.writer
            if writer is None or not writer.full:
                break
            await writer.wait_for_room()  # backpressure, before L1 changes
        # From here to send(): no await, so L1's order is the writer's order.
        put = writes.set(full, value, payload, encoding, ttl, stale, valid_tags)
        if put is not None and writer is not None:
            await writer.send(put)
            return
        # Without an L2 nothing above awaits: a caller setting in a tight loop still lets the
        # other tasks run (a health check, say) every _SETS_PER_CHECKPOINT sets.
        self._unyielded_sets += 1
        if self._unyielded_sets >= _SETS_PER_CHECKPOINT:
            self._unyielded_sets = 0
            await anyio.lowlevel.checkpoint()

    async def delete(self, *keys: str, prefix: str | None = None) -> int:
        """Delete ``keys`` on every layer and node; return how many existed (in Redis, or L1)."""
        full = tuple(self._full(key, prefix) for key in keys)
        return await (await self._ref().ask(_PreparedDelete(keys=full))).wait()

    async def invalidate_pattern(self, pattern: str, *, prefix: str | None = None) -> int:
        """Delete every key matching the glob ``pattern`` (``*``, ``?``, ``[a-z]``).

        Redis is walked with ``SCAN`` and ``UNLINK`` in batches, never ``KEYS``.
        Returns how many entries were removed (from Redis, or from L1 without Redis).
        """
        full = self._keyspace.full_pattern(pattern, prefix)
        reply = await self._ref().ask(_PreparedInvalidate(pattern=full))
        return await reply.wait()

    async def invalidate_tag(self, tag: str) -> int:
        """Delete every entry set with ``tag``, on every layer and node."""
        reply = await self._ref().ask(_PreparedInvalidate(tag=validate_tag(tag)))
        return await reply.wait()

    # -- loading ----------------------------------------------------------------------------

    async def get_or_set(
        self,
        key: str,
        loader: Callable[[], Awaitable[Any]],
        *,
        ttl_seconds: float | None = None,
        stale_seconds: float = 0.0,
        tags: Iterable[str] = (),
        prefix: str | None = None,
        cluster_lock: bool = False,
    ) -> Any:
        """The cached value of ``key``, or what ``loader()`` returns (then cached).

        Concurrent misses on one key run the loader once on this node and
        all get its result or its exception (single flight); with
        ``cluster_lock=True`` once across nodes, through a Redis lock that
        expires if its holder dies. Within ``stale_seconds`` after the TTL,
        the stale value is returned at once while one background refresh runs.
        """
        full = self._full(key, prefix)
        hit = self._table.lookup(full)
        if hit is not None:
            if hit.state is L1State.FRESH:
                return hit.value
            if hit.state is L1State.ABSENT:
                return None
        else:
            # Redis first, from this task: only a true miss needs the actor's single flight.
            fetched = await fetch_from_l2(self._l2, self._table, full, self._clock.time)
            if fetched is not None and fetched.fresh:
                self._fill(fetched.fill)
                return fetched.value
        message = _PreparedLoad(
            key=full,
            loader=loader,
            ttl_seconds=validate_ttl(ttl_seconds, self._settings.default_ttl_seconds),
            stale_seconds=validate_stale(stale_seconds),
            tags=validate_tags(tags),
            cluster_lock=cluster_lock,
            refresh=hit is not None,
            lookup=False,  # this task already looked in L1 and L2 and counted it
        )
        reply = await self._ref().ask(message)
        if hit is not None:  # stale: served now, refreshed in the background
            return hit.value
        return await reply.result(
            clock=self._clock, timeout_seconds=self._settings.loader_timeout_seconds
        )

    def warm(
        self,
        key: str,
        loader: Callable[[], Awaitable[Any]],
        *,
        ttl_seconds: float | None = None,
        refresh_seconds: float | None = None,
        tags: Iterable[str] = (),
        prefix: str | None = None,
    ) -> None:
        """Load ``key`` when the cache starts, and again every ``refresh_seconds``.

        Call it from the ``--app`` setup hook, before the node starts.
        """
        from ._warming import Warmer

        if refresh_seconds is not None:
            validate_ttl(refresh_seconds, refresh_seconds, name="refresh_seconds")
        self._warmers.append(
            Warmer(
                key=self._full(key, prefix),
                loader=loader,
                ttl_seconds=validate_ttl(ttl_seconds, self._settings.default_ttl_seconds),
                refresh_seconds=refresh_seconds,
                tags=validate_tags(tags),
                timeout_seconds=self._settings.loader_timeout_seconds,
            )
        )

    def cached(
        self,
        *,
        ttl_seconds: float | None = None,
        key: str | Callable[..., str] | None = None,
        tags: Iterable[str] = (),
        stale_seconds: float = 0.0,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate an async function so its results are cached in this cache.

        ``key`` is a format string over the arguments (``"user:{user_id}"``) or
        a callable taking the same arguments: the result is the cache key,
        exactly as written, so ``get("user:1")`` reads it and
        ``invalidate_pattern("user:*")`` removes it. With ``key=None`` the key
        is built from the function's qualified name and a hash of its
        arguments, under the hidden sub-prefix ``fn`` (``get(k, prefix="fn")``).
        Concurrent calls with the same arguments share one execution. For a
        decorator at module level, before any node exists, use
        :func:`actors.cache.cached`.
        """
        from ._decorator import caching_decorator

        return caching_decorator(
            lambda: self, ttl_seconds=ttl_seconds, key=key, tags=tags, stale_seconds=stale_seconds
        )

    async def statistics(self) -> CacheStatistics:
        """Hits and misses per layer, miss reasons, loaders, single-flight joins, and more."""
        return await self._ref().ask(CacheStats())

    # -- helpers ----------------------------------------------------------------------------

    def _fill(self, fill: _Fill) -> None:
        ref = self._table.ref
        if ref is None:
            return
        try:
            ref.tell_nowait(fill)
        except MailboxFull:
            pass  # the fill is an optimisation; a busy actor skips it


CACHE: Extension[Cache] = Extension("cache", Cache)
"""The typed key of the node's :class:`Cache` (``setup.require(CACHE)``)."""
