"""Reading L2 for the cache: from the actor's loop, from flights, and from readers' tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime import RedisUnavailable

from ._codec import StoredEntry, decode_value, unpack_entry
from ._messages import _Fill

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._l2 import L2Store
    from ._table import CacheTable

__all__ = ["Fetched", "fetch_from_l2", "fetch_many_from_l2"]


class Fetched:
    """A live L2 entry: its decoded value, whether it is fresh, and the L1 fill for it."""

    __slots__ = ("fill", "fresh", "value")

    def __init__(self, value: object, fresh: bool, fill: _Fill) -> None:
        self.value = value
        self.fresh = fresh
        self.fill = fill


async def fetch_from_l2(
    l2: L2Store | None,
    table: CacheTable,
    key: str,
    wall_time: Callable[[], float],
    *,
    lookup: bool = True,
    raise_unavailable: bool = False,
) -> Fetched | None:
    """Read ``key`` from L2; ``None`` when absent, expired or unreachable (counted).

    The fill it returns carries the write epoch seen before the read, so the
    owner drops it if the key changed meanwhile. ``lookup`` says the read
    follows a caller's L1 miss: only those count as L2 hits and misses (the
    hit ratio's), not reads made for warming or while waiting on a lock; a
    lookup that could not ask Redis counts as a degraded read.

    Raises:
        Rejected: ``undecodable_value`` when the stored bytes are not a cache entry.
        RedisUnavailable: Redis could not be asked, with ``raise_unavailable``
            (otherwise that is ``None`` too).
    """
    if l2 is None:
        return None
    if not l2.available:  # Redis is down: do not wait on it, fall back to loaders
        _unavailable(table, lookup, 1)
        if raise_unavailable:
            raise RedisUnavailable("cache get", "redis is down")
        return None
    epoch = table.epoch
    try:
        blob = await l2.get(key)
    except RedisUnavailable:
        _unavailable(table, lookup, 1)
        if raise_unavailable:
            raise
        return None
    entry = unpack_entry(blob) if blob is not None else None
    now = wall_time()
    if entry is None or entry.is_gone(now):
        if lookup:
            table.l2_misses += 1
        return None
    if lookup:
        table.l2_hits += 1
    value = decode_value(entry.payload, entry.encoding)
    return Fetched(value, entry.is_fresh(now), _fill_message(key, value, entry, now, epoch))


async def fetch_many_from_l2(
    l2: L2Store | None, table: CacheTable, keys: list[str], wall_time: Callable[[], float]
) -> list[Fetched | None]:
    """:func:`fetch_from_l2` for many keys in one round trip (``MGET``)."""
    if l2 is None:
        return [None] * len(keys)
    if not l2.available:
        _unavailable(table, True, len(keys))
        return [None] * len(keys)
    epoch = table.epoch
    try:
        blobs = await l2.get_many(keys)
    except RedisUnavailable:
        _unavailable(table, True, len(keys))
        return [None] * len(keys)
    now = wall_time()
    results: list[Fetched | None] = []
    for key, blob in zip(keys, blobs, strict=True):
        entry = unpack_entry(blob) if blob is not None else None
        if entry is None or entry.is_gone(now):
            table.l2_misses += 1
            results.append(None)
            continue
        table.l2_hits += 1
        value = decode_value(entry.payload, entry.encoding)
        fill = _fill_message(key, value, entry, now, epoch)
        results.append(Fetched(value, entry.is_fresh(now), fill))
    return results


def _unavailable(table: CacheTable, lookup: bool, keys: int) -> None:
    """Count a read that could not ask Redis (and, for callers' lookups, the keys it missed)."""
    table.l2_errors += 1
    if lookup:
        table.degraded_reads += keys


def _fill_message(key: str, value: object, entry: StoredEntry, now: float, epoch: int) -> _Fill:
    """An L1 fill for an L2 entry read at ``now``: its remaining fresh and stale time."""
    fresh = entry.fresh_until - now
    stale_end = entry.stale_until - now
    if fresh > 0:
        ttl, stale = fresh, max(0.0, stale_end - fresh)
    else:  # already stale: keep it only for what is left of the stale window
        ttl, stale = 1e-6, max(0.0, stale_end)
    return _Fill(
        key=key,
        value=value,
        size_bytes=len(entry.payload),
        ttl_seconds=ttl,
        stale_seconds=stale,
        tags=entry.tags,
        epoch=epoch,
    )
