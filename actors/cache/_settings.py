"""The cache's settings: a section of the node's configuration (``SWITCHYARD_CACHE_*``).

``CACHE_SETTINGS`` is what :func:`actors.cache.install` reads with
``setup.section(CACHE_SETTINGS)``; ``python -m runtime --help`` lists it under
"Cache". The key prefix is not here: it is the node's ``redis_prefix``
(``SWITCHYARD_REDIS_PREFIX``), shared by everything the node writes to Redis.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from runtime import SettingsSection

__all__ = ["CACHE_SETTINGS", "CacheSettings"]


class CacheSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How one node's cache behaves; every field is a ``SWITCHYARD_CACHE_<FIELD>`` variable."""

    default_ttl_seconds: Annotated[
        float,
        Meta(gt=0, le=2_592_000, description="TTL of cache entries set without one, in seconds."),
    ] = 3600.0
    l1_max_entries: Annotated[
        int,
        Meta(
            ge=1,
            le=4_000_000,
            description=(
                "In-process cache bound, in entries; its frequency sketch grows with the "
                "entries held, to 32 to 64 bytes per entry."
            ),
        ),
    ] = 10_000
    l1_max_bytes: Annotated[
        int,
        Meta(
            ge=1,
            le=17_179_869_184,
            description="In-process cache bound, in encoded value bytes (at most 16 GiB).",
        ),
    ] = 67_108_864
    max_value_bytes: Annotated[
        int,
        Meta(
            ge=1,
            le=536_870_912,
            description="Largest cache value accepted, encoded, in bytes (Redis' 512 MiB limit).",
        ),
    ] = 1_048_576
    negative_ttl_seconds: Annotated[
        float,
        Meta(ge=0, le=86_400, description="Seconds a loader's None is cached; 0: never."),
    ] = 0.0
    loader_timeout_seconds: Annotated[
        float, Meta(gt=0, le=3600, description="Seconds callers wait for a loader.")
    ] = 30.0
    lock_ttl_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description=(
                "Lifetime of the cluster-wide single-flight lock in Redis, in seconds; a node "
                "that dies holding it frees it after this long."
            ),
        ),
    ] = 10.0
    write_queue_size: Annotated[
        int,
        Meta(ge=1, le=1_000_000, description="Redis writes queued behind the one ordered writer."),
    ] = 10_000
    write_batch_size: Annotated[
        int, Meta(ge=1, le=10_000, description="Most writes sent to Redis in one pipeline.")
    ] = 256
    invalidate_batch_size: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="Keys per SCAN/UNLINK round of a pattern invalidation.",
        ),
    ] = 1000


CACHE_SETTINGS = SettingsSection(
    "cache",
    CacheSettings,
    title="Cache",
    description="The two-layer cache (keys: SWITCHYARD_REDIS_PREFIX:cache:...).",
)
