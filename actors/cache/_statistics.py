"""What the cache counts: :class:`CacheStatistics`."""

from __future__ import annotations

import msgspec

__all__ = ["CacheStatistics"]


class CacheStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the cache counts, for ``statistics()``, ``/api/cache-stats`` and metrics.

    ``hit_ratio`` is over every lookup (L1 hits plus L2 hits over lookups);
    ``l1_*`` come from the L1 store (misses by reason: absent, expired,
    evicted, invalidated); ``degraded_writes`` found Redis unreachable and
    were kept in L1, then ``replayed_writes`` to Redis once it was back (or
    ``replay_dropped`` past the replay log's bound); ``coherence_resets``
    count the times L1 was dropped because invalidations may have been missed;
    ``invalidation_publish_failures`` are invalidations not published because
    Redis was unavailable, and ``invalidations_undecodable`` payloads on the
    invalidation channel that were not invalidations (both from the channel).
    ``degraded_reads`` count the keys looked up that missed L1 while Redis
    could not be asked (answered as misses, or from a loader): a real miss
    and a degraded one look alike to ``get``; :meth:`Cache.read` tells them
    apart. ``replay_depth`` is how many operations wait in the replay log.
    """

    hit_ratio: float
    lookups: int
    l1_hits: int
    l1_stale_hits: int
    l1_misses: int
    l1_misses_absent: int
    l1_misses_expired: int
    l1_misses_evicted: int
    l1_misses_invalidated: int
    l1_evictions: int
    l1_entries: int
    l1_bytes: int
    l2_enabled: bool
    l2_hits: int
    l2_misses: int
    l2_errors: int
    degraded_reads: int
    loader_calls: int
    loader_errors: int
    loader_seconds_total: float
    single_flight_joins: int
    stale_refreshes: int
    writes: int
    degraded_writes: int
    replayed_writes: int
    replay_dropped: int
    write_queue_depth: int
    replay_depth: int
    invalidations_sent: int
    invalidations_received: int
    invalidation_publish_failures: int
    invalidations_undecodable: int
    coherence_resets: int
