"""The cache's knobs, with the defaults a node uses."""

from __future__ import annotations

import msgspec

__all__ = ["CacheConfig", "CacheStatistics"]


class CacheConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How one node's cache behaves.

    Attributes:
        prefix: the global key prefix (the blueprint's ``CACHE_PREFIX``).
        default_ttl_seconds: TTL of ``set`` and ``get_or_set`` when none is given.
        max_value_bytes: the largest encoded value accepted.
        l1_max_entries: L1 bound by entries.
        l1_max_bytes: L1 bound by encoded value bytes.
        negative_ttl_seconds: how long a loader's ``None`` is remembered as
            "known absent" (0 disables negative caching).
        loader_timeout_seconds: how long callers wait for a loader.
        lock_ttl_seconds: lifetime of the cluster-wide single-flight lock in
            Redis; a node that dies holding it frees it after this long.
        write_queue_size: L2 writes queued behind the single ordered writer.
        write_batch_size: most writes sent to Redis in one pipeline.
        invalidate_batch_size: keys per SCAN/UNLINK round of a pattern invalidation.
    """

    prefix: str = "switchyard"
    default_ttl_seconds: float = 3600.0
    max_value_bytes: int = 1_048_576
    l1_max_entries: int = 10_000
    l1_max_bytes: int = 64 * 1_048_576
    negative_ttl_seconds: float = 0.0
    loader_timeout_seconds: float = 30.0
    lock_ttl_seconds: float = 10.0
    write_queue_size: int = 10_000
    write_batch_size: int = 256
    invalidate_batch_size: int = 1000


class CacheStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the cache counts, for ``statistics()``, ``/api/cache/stats`` and metrics.

    ``hit_ratio`` is over every lookup (L1 hits plus L2 hits over lookups);
    ``l1_*`` come from the L1 store (misses by reason: absent, expired,
    evicted, invalidated); ``degraded_writes`` found Redis unreachable and
    were kept in L1, then ``replayed_writes`` to Redis once it was back (or
    ``replay_dropped`` past the replay log's bound); ``coherence_resets``
    count the times L1 was dropped because invalidations may have been missed.
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
    invalidations_sent: int
    invalidations_received: int
    coherence_resets: int
