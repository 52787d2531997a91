"""The cache actor: owner of L1, single-flight coordinator, writer of L2.

It alone changes L1 (readers read it through the shared
:class:`~actors.cache._table.CacheTable`), it runs loaders once per key per
node (optionally once per cluster through a Redis lock), it queues every
change for Redis behind one ordered writer, and it applies other nodes'
invalidations. A Redis outage never reaches callers: reads fall back to L1
and loaders, writes stay in L1 and are counted as degraded.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, assert_never

import anyio

from runtime import Actor, RedisUnavailable, Rejected

from ._codec import encode_value
from ._coherence import Coherence
from ._flight import Flight
from ._keys import (
    CacheKeyError,
    short_repr,
    validate_stale,
    validate_tag,
    validate_tags,
    validate_ttl,
)
from ._l1 import L1State, L1Store
from ._messages import (
    CacheDelete,
    CacheDeleteReply,
    CacheExists,
    CacheExistsReply,
    CacheGet,
    CacheGetOrLoad,
    CacheGetOrLoadReply,
    CacheGetReply,
    CacheInvalidate,
    CacheInvalidateReply,
    CacheMessage,
    CacheSet,
    CacheSetReply,
    CacheStats,
    Invalidation,
    _ApplyInvalidation,
    _Fill,
    _FlightDone,
    _Internal,
    _PreparedDelete,
    _PreparedExists,
    _PreparedInvalidate,
    _PreparedLoad,
    _PreparedSet,
    _Reset,
)
from ._reads import Fetched, fetch_from_l2
from ._statistics import CacheStatistics
from ._writer import BulkDelete, Completion, Delete, OrderedWriter
from ._writes import Writes

if TYPE_CHECKING:
    from ._parts import CacheParts

__all__ = ["MISSING", "CacheActor"]

logger = logging.getLogger("actors.cache")

MISSING: Any = object()


_MISS = CacheGetReply(found=False)
_SET_DONE = CacheSetReply()
_NO_FLIGHT = CacheGetOrLoadReply()


class CacheActor(Actor[CacheMessage | _Internal]):
    """See the module docstring. Build one per incarnation from the cache's shared parts."""

    def __init__(self, parts: CacheParts) -> None:
        self._parts = parts
        self._settings = parts.settings
        self._keyspace = parts.keyspace
        self._table = parts.table
        self._l2 = parts.l2
        self._coherence = Coherence(parts.fanout, parts.node_id)
        self._warmers = tuple(parts.warmers)
        self._flights: dict[str, Flight] = {}
        self._writer: OrderedWriter | None = None
        self._writes: Writes | None = None
        self._l1: L1Store | None = None
        self._loader_calls = 0
        self._loader_errors = 0
        self._loader_seconds = 0.0
        self._joins = 0
        self._stale_refreshes = 0
        self._coherence_resets = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Install a fresh L1; start the writer, the invalidation listener and the warmers."""
        settings = self._settings
        self._l1 = L1Store(
            max_entries=settings.l1_max_entries, max_bytes=settings.l1_max_bytes, clock=self.clock
        )
        if self._l2 is not None:
            self._writer = OrderedWriter(
                self._l2,
                self._coherence,
                clock=self.clock,
                queue_size=settings.write_queue_size,
                batch_size=settings.write_batch_size,
                invalidate_batch_size=settings.invalidate_batch_size,
                table=self._table,
            )
        self._writes = Writes(
            self._l1,
            self._table,
            self._writer,
            keyspace=self._keyspace,
            settings=settings,
            wall_time=self.clock.time,
        )
        self._table.attach(self._l1, self.context.self_ref, self._writes)
        if self._writer is not None:
            self.start_soon(self._writer.run)
            self.start_soon(self._coherence.listen, self.context.self_ref)
        for warmer in self._warmers:
            self.start_soon(warmer.run, self.context.self_ref, self.clock)

    async def on_stop(self) -> None:
        """Detach L1 and the write path, abandon queued writes, fail the flights still loading."""
        self._table.detach()
        if self._writer is not None:
            self._writer.abandon()
        for flight in self._flights.values():
            if not flight.done:
                flight.fail(Rejected("unavailable", "the cache restarted while loading; retry"))

    # -- messages ---------------------------------------------------------------------------

    async def handle(self, message: CacheMessage | _Internal) -> Any:
        """Serve one command (public or prepared) or one of the actor's own messages."""
        match message:
            case _PreparedSet():
                return await self._set(message)
            case _PreparedLoad():
                return self._join_or_fly(message)
            case _PreparedExists(key=key):
                return CacheExistsReply(exists=await self._exists(key))
            case _PreparedDelete(keys=keys):
                return await self._delete(keys)
            case _PreparedInvalidate(pattern=pattern, tag=tag):
                return await self._invalidate(pattern, tag)
            case CacheGet():
                return await self._get(self._full(message.key, message.prefix))
            case CacheSet():
                return await self._set(self._prepare_set(message))
            case CacheDelete():
                return await self._delete(self._full_keys(message.keys, message.prefix))
            case CacheExists():
                key = self._full(message.key, message.prefix)
                return CacheExistsReply(exists=await self._exists(key))
            case CacheInvalidate():
                return await self._invalidate(*self._prepare_invalidation(message))
            case CacheStats():
                return self.statistics()
            case CacheGetOrLoad():
                return self._join_or_fly(self._prepare_load(message))
            case _Fill():
                self._fill(message)
                return None
            case _FlightDone(key=key):
                self._flights.pop(key, None)
                return None
            case _ApplyInvalidation(invalidation=invalidation):
                self._apply(invalidation)
                return None
            case _Reset(reason=reason):
                self._reset(reason)
                return None
            case _:
                assert_never(message)

    # -- preparing other actors' messages (the facade sends prepared ones) ------------------

    def _full(self, key: str, prefix: str | None) -> str:
        return self._keyspace.full_key(key, prefix)

    def _full_keys(self, keys: object, prefix: str | None) -> tuple[str, ...]:
        if isinstance(keys, str | bytes) or not isinstance(keys, tuple | list):
            raise CacheKeyError(
                "invalid_key",
                f"keys must be a list of cache keys, got {type(keys).__name__} {short_repr(keys)}",
                value=keys,
            )
        return tuple(self._full(key, prefix) for key in keys)

    def _ttl(self, ttl_seconds: float | None, stale_seconds: float) -> tuple[float, float]:
        ttl = validate_ttl(ttl_seconds, self._settings.default_ttl_seconds)
        return ttl, validate_stale(stale_seconds)

    def _prepare_set(self, message: CacheSet) -> _PreparedSet:
        """Namespace and validate the key, TTLs and tags; encode the value."""
        key = self._full(message.key, message.prefix)
        ttl, stale = self._ttl(message.ttl_seconds, message.stale_seconds)
        tags = validate_tags(message.tags)
        payload, encoding = encode_value(
            message.value, max_value_bytes=self._settings.max_value_bytes
        )
        return _PreparedSet(
            key=key,
            value=message.value,
            payload=payload,
            encoding=encoding,
            ttl_seconds=ttl,
            stale_seconds=stale,
            tags=tags,
        )

    def _prepare_invalidation(self, message: CacheInvalidate) -> tuple[str | None, str | None]:
        """The full-key pattern or the validated tag (exactly one)."""
        pattern, tag = message.pattern, message.tag
        if (pattern is None) == (tag is None):
            raise Rejected(
                "invalid_invalidation", "give exactly one of a pattern or a tag to invalidate"
            )
        if pattern is not None:
            return self._keyspace.full_pattern(pattern, message.prefix), None
        return None, validate_tag(tag)

    def _prepare_load(self, message: CacheGetOrLoad) -> _PreparedLoad:
        if not callable(message.loader):
            raise Rejected(
                "invalid_loader",
                f"loader must be an async callable taking no arguments, got "
                f"{type(message.loader).__name__} {short_repr(message.loader)}",
            )
        ttl, stale = self._ttl(message.ttl_seconds, message.stale_seconds)
        return _PreparedLoad(
            key=self._full(message.key, message.prefix),
            loader=message.loader,
            ttl_seconds=ttl,
            stale_seconds=stale,
            tags=validate_tags(message.tags),
            cluster_lock=bool(message.cluster_lock),
            refresh=bool(message.refresh),
            force=bool(message.force),
        )

    # -- reads ------------------------------------------------------------------------------

    async def _get(self, key: str) -> CacheGetReply:
        hit = self._table.lookup(key)
        if hit is not None:
            if hit.state is L1State.ABSENT:
                return _MISS
            return CacheGetReply(found=True, value=hit.value)
        fetched = await fetch_from_l2(self._l2, self._table, key, self.clock.time)
        if fetched is None:
            return _MISS
        self._fill(fetched.fill)
        return CacheGetReply(found=True, value=fetched.value)

    async def _fetch_for_flight(self, key: str, *, lookup: bool) -> Fetched | None:
        """Read L2 from a flight task; the L1 fill goes through the actor's own loop."""
        fetched = await fetch_from_l2(self._l2, self._table, key, self.clock.time, lookup=lookup)
        if fetched is not None:
            await self.context.self_ref.tell(fetched.fill)
        return fetched

    async def _exists(self, key: str) -> bool:
        assert self._l1 is not None
        hit = self._l1.peek(key)
        if hit is not None:
            return hit.state is not L1State.ABSENT
        if self._l2 is None:
            return False
        try:
            return await self._l2.exists(key)
        except RedisUnavailable:
            self._table.l2_errors += 1
            return False

    # -- writes -----------------------------------------------------------------------------

    async def _set(self, message: _PreparedSet) -> CacheSetReply:
        """Store a prepared set: the key is full, TTLs and tags valid, the payload encoded.

        The facade's ``set`` takes the same path (:class:`Writes`) without the mailbox.

        Raises:
            Rejected: ``value_too_large`` when there is no L2 and the value is
                larger than all of L1 (nothing could store it; nothing changed).
        """
        writes, writer = self._writes, self._writer
        assert writes is not None
        if writer is not None:
            await writer.wait_for_room()  # before L1 changes: L1 and the queue keep one order
        put = writes.set(
            message.key,
            message.value,
            message.payload,
            message.encoding,
            message.ttl_seconds,
            message.stale_seconds,
            message.tags,
        )
        if put is None or writer is None:
            return _SET_DONE
        return CacheSetReply(pending=writer.enqueue(put))

    async def _delete(self, keys: tuple[str, ...]) -> CacheDeleteReply:
        """Delete full, validated keys."""
        assert self._l1 is not None
        if self._writer is not None:
            await self._writer.wait_for_room()
        removed = 0
        for key in keys:
            removed += self._l1.delete(key)
            self._table.wrote(key)
        pending = self._queue(Delete(keys=keys, completion=Completion()))
        return CacheDeleteReply(deleted=removed, pending=pending)

    async def _invalidate(self, pattern: str | None, tag: str | None) -> CacheInvalidateReply:
        """Invalidate by a validated full-key pattern, or else by a validated tag."""
        assert self._l1 is not None
        if pattern is None and tag is None:
            raise Rejected(
                "invalid_invalidation", "give exactly one of a pattern or a tag to invalidate"
            )
        if self._writer is not None:
            await self._writer.wait_for_room()
        if pattern is not None:
            removed = self._l1.invalidate_matching(self._keyspace.matcher(pattern))
            operation = BulkDelete(pattern=pattern, completion=Completion())
        else:
            assert tag is not None
            removed = self._l1.invalidate_tag(tag)
            operation = BulkDelete(
                tag=tag, tag_key=self._keyspace.tag_key(tag), completion=Completion()
            )
        self._table.wrote_everything()
        pending = self._queue(operation)
        return CacheInvalidateReply(removed=removed, pending=pending)

    def _queue(self, operation: Delete | BulkDelete) -> Completion | None:
        """Hand ``operation`` to the writer right after its L1 change (no await between)."""
        if self._writer is None:
            return None
        return self._writer.enqueue(operation)

    def _fill(self, message: _Fill) -> None:
        assert self._l1 is not None
        if not self._table.fill_allowed(message.key, message.epoch):
            return  # a write or invalidation came after this value was read
        if self._writer is not None and self._writer.pending(message.key):
            return  # Redis may hold an older value than the write still on its way there
        try:
            self._l1.set(
                message.key,
                message.value,
                size_bytes=message.size_bytes,
                ttl_seconds=message.ttl_seconds,
                stale_seconds=message.stale_seconds,
                tags=frozenset(message.tags),
            )
        except ValueError as exc:  # EntryTooLarge, or deadlines no L1 entry can have
            logger.debug("cache did not keep %s in L1: %s", message.key, exc)

    def _apply(self, invalidation: Invalidation) -> None:
        assert self._l1 is not None
        l1, table = self._l1, self._table
        for key in invalidation.keys:
            l1.delete(key)
            table.wrote(key)
        if invalidation.pattern is not None:
            l1.invalidate_matching(self._keyspace.matcher(invalidation.pattern))
            table.wrote_everything()
        if invalidation.tag is not None:
            l1.invalidate_tag(invalidation.tag)
            table.wrote_everything()
        if invalidation.everything:
            self._reset("another node cleared the cache")

    def _reset(self, reason: str) -> None:
        """Drop L1 (invalidations may have been missed), but for this node's unwritten writes.

        A key whose own write is still queued or in the replay log keeps its entry:
        it holds the newest value this node acknowledged, which Redis will get, and
        reading Redis's older value for it meanwhile would go back in time.
        """
        l1, writer = self._l1, self._writer
        assert l1 is not None
        resident = l1.keys()  # a snapshot (L1Store is not a dict)
        keep = {key for key in resident if writer is not None and writer.holds_write(key)}
        dropped = len(l1) - len(keep)
        if keep:
            for key in resident:
                if key not in keep:
                    l1.delete(key)
        else:
            l1.clear()
        self._table.wrote_everything()
        if dropped:
            self._coherence_resets += 1
            logger.warning(
                "cache dropped its %d L1 entries: %s (invalidations may have been missed)",
                dropped,
                reason,
            )

    # -- single flight ------------------------------------------------------------------------

    def _join_or_fly(self, message: _PreparedLoad) -> CacheGetOrLoadReply:
        key = message.key
        flight = self._flights.get(key)
        if flight is not None:
            if message.refresh:
                return _NO_FLIGHT
            self._joins += 1
            return CacheGetOrLoadReply(flight=flight)
        if not message.refresh and not message.force:
            assert self._l1 is not None
            hit = self._l1.peek(key)  # filled since the caller looked?
            if hit is not None and hit.state is L1State.FRESH:
                return CacheGetOrLoadReply(found=True, value=hit.value)
        flight = Flight(key)
        self._flights[key] = flight
        self.start_soon(self._fly, flight, message)
        if message.refresh:
            self._stale_refreshes += 1
            return _NO_FLIGHT
        return CacheGetOrLoadReply(flight=flight)

    async def _fly(self, flight: Flight, message: _PreparedLoad) -> None:
        lock: tuple[str, str] | None = None
        try:
            fetched = (
                None
                if message.force
                else await self._fetch_for_flight(message.key, lookup=message.lookup)
            )
            if fetched is not None and fetched.fresh:
                flight.resolve(fetched.value)
                return
            if message.cluster_lock and self._l2 is not None:
                value, lock = await self._cluster_wait(message.key)
                if value is not MISSING:
                    flight.resolve(value)
                    return
            value = await self._load(message)
            await self._store_loaded(message, value)
            flight.resolve(value)
        except Exception as exc:  # noqa: BLE001 - the loader's failure belongs to its callers
            flight.fail(exc)
        finally:
            with anyio.CancelScope(shield=True):
                if lock is not None:
                    await self._unlock(*lock)
                if not flight.done:
                    flight.fail(Rejected("unavailable", "the cache stopped while loading; retry"))
                await self.context.self_ref.tell(_FlightDone(key=message.key))

    async def _load(self, message: _PreparedLoad) -> Any:
        self._loader_calls += 1
        started = time.perf_counter()
        try:
            return await message.loader()
        except Exception:
            self._loader_errors += 1
            raise
        finally:
            self._loader_seconds += time.perf_counter() - started

    async def _store_loaded(self, message: _PreparedLoad, value: object) -> None:
        settings = self._settings
        if value is None:
            if settings.negative_ttl_seconds > 0:
                assert self._l1 is not None
                self._l1.set_absent(message.key, ttl_seconds=settings.negative_ttl_seconds)
            return
        payload, encoding = encode_value(value, max_value_bytes=settings.max_value_bytes)
        reply = await self.context.self_ref.ask(
            _PreparedSet(
                key=message.key,
                value=value,
                payload=payload,
                encoding=encoding,
                ttl_seconds=message.ttl_seconds,
                stale_seconds=message.stale_seconds,
                tags=message.tags,
            )
        )
        await reply.wait()

    async def _cluster_wait(self, key: str) -> tuple[Any, tuple[str, str] | None]:
        """Take the cluster lock for ``key``, or wait for its holder to fill L2.

        Returns the value another node loaded (and no lock), or ``MISSING``
        and the lock (key, owner) when this node must load. Gives up waiting
        after the lock's TTL (at most half the loader timeout) and loads anyway;
        a dead holder's lock expires by itself.
        """
        assert self._l2 is not None
        lock_key = self._keyspace.lock_key(key)
        owner = f"{self._coherence.node}:{uuid.uuid4().hex}"
        # A dead holder's lock expires after lock_ttl_seconds: waiting longer is pointless,
        # and this node must still have time to load before its callers give up.
        deadline = self.clock.monotonic() + min(
            self._settings.lock_ttl_seconds, self._settings.loader_timeout_seconds / 2
        )
        delay = 0.005
        while True:
            try:
                if await self._l2.try_lock(lock_key, owner, self._settings.lock_ttl_seconds):
                    # The previous holder may have filled it just before letting go.
                    fetched = await self._fetch_for_flight(key, lookup=False)
                    if fetched is not None and fetched.fresh:
                        await self._l2.unlock(lock_key, owner)
                        return fetched.value, None
                    return MISSING, (lock_key, owner)
            except RedisUnavailable:
                return MISSING, None  # no Redis, no cluster: load locally
            fetched = await self._fetch_for_flight(key, lookup=False)
            if fetched is not None and fetched.fresh:
                return fetched.value, None
            if self.clock.monotonic() >= deadline:
                return MISSING, None
            await self.clock.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _unlock(self, lock_key: str, owner: str) -> None:
        assert self._l2 is not None
        try:
            await self._l2.unlock(lock_key, owner)
        except RedisUnavailable:
            pass  # the lock expires by itself after lock_ttl_seconds

    # -- telemetry --------------------------------------------------------------------------

    def statistics(self) -> CacheStatistics:
        """A snapshot of every counter (also the reply to ``CacheStats``)."""
        assert self._l1 is not None
        l1, table, writer = self._l1.statistics(), self._table, self._writer
        channel = self._coherence.statistics()
        lookups = l1.hits + l1.misses
        hits = l1.hits + table.l2_hits
        return CacheStatistics(
            hit_ratio=hits / lookups if lookups else 0.0,
            lookups=lookups,
            l1_hits=l1.hits,
            l1_stale_hits=l1.stale_hits,
            l1_misses=l1.misses,
            l1_misses_absent=l1.misses_absent,
            l1_misses_expired=l1.misses_expired,
            l1_misses_evicted=l1.misses_evicted,
            l1_misses_invalidated=l1.misses_invalidated,
            l1_evictions=l1.evictions,
            l1_entries=l1.entries,
            l1_bytes=l1.bytes,
            l2_enabled=self._l2 is not None,
            l2_hits=table.l2_hits,
            l2_misses=table.l2_misses,
            l2_errors=table.l2_errors,
            degraded_reads=table.degraded_reads,
            loader_calls=self._loader_calls,
            loader_errors=self._loader_errors,
            loader_seconds_total=self._loader_seconds,
            single_flight_joins=self._joins,
            stale_refreshes=self._stale_refreshes,
            writes=writer.writes if writer else 0,
            degraded_writes=writer.degraded if writer else 0,
            replayed_writes=writer.replayed if writer else 0,
            replay_dropped=writer.replay_dropped if writer else 0,
            write_queue_depth=writer.depth if writer else 0,
            replay_depth=writer.replay_depth if writer else 0,
            invalidations_sent=self._coherence.sent,
            invalidations_received=self._coherence.received,
            invalidation_publish_failures=channel.publish_failures,
            invalidations_undecodable=channel.undecodable,
            coherence_resets=self._coherence_resets,
        )
