"""The cache actor: a coherent two-layer cache, L1 in the process and L2 in Redis.

* :class:`Cache` is the Python API: ``get``, ``get_many``, ``set``, ``delete``,
  ``exists``, ``get_or_set`` (single flight, optionally cluster-wide),
  ``invalidate_pattern``, ``invalidate_tag``, ``warm``, ``cached`` and
  ``statistics``.
* :func:`install` adds the cache to a node (the composition root calls it);
  :func:`get_cache` finds it again from a setup hook or a request.
* :func:`cache_child` builds a cache for embedding: a child spec to run under
  a supervisor and the :class:`Cache` that talks to it.
* The messages in :mod:`actors.cache._messages` are the actor's protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime import ChildSpec, MemoryFanout, SystemClock

from ._actor import CacheActor
from ._config import CacheConfig, CacheStatistics
from ._facade import Cache
from ._keys import KeySpace
from ._l1 import L1Store
from ._l2 import L2Store, MemoryL2, RedisL2
from ._messages import (
    CacheDelete,
    CacheExists,
    CacheGet,
    CacheGetOrLoad,
    CacheInvalidate,
    CacheMessage,
    CacheSet,
    CacheStats,
    Invalidation,
)
from ._routes import cache_blueprint
from ._table import CacheTable

if TYPE_CHECKING:
    from runtime import Clock, Fanout, NodeContext, NodeSetup

    from ._warming import Warmer

__all__ = [
    "Cache",
    "CacheActor",
    "CacheConfig",
    "CacheDelete",
    "CacheExists",
    "CacheGet",
    "CacheGetOrLoad",
    "CacheInvalidate",
    "CacheMessage",
    "CacheSet",
    "CacheStatistics",
    "CacheStats",
    "Invalidation",
    "KeySpace",
    "L1Store",
    "L2Store",
    "MemoryL2",
    "RedisL2",
    "cache_blueprint",
    "cache_child",
    "get_cache",
    "install",
]

EXTENSION = "cache"


def cache_child(
    *,
    config: CacheConfig | None = None,
    clock: Clock | None = None,
    l2: L2Store | None = None,
    fanout: Fanout | None = None,
    actor_id: str = "cache",
    node_id: str | None = None,
) -> tuple[ChildSpec, Cache]:
    """A cache to run under a supervisor: its child spec and its Python API.

    Args:
        config: the cache's knobs (defaults: :class:`CacheConfig`).
        clock: the supervisor's clock (the API reads it for timeouts and TTLs).
        l2: the shared layer; ``None`` runs the cache on L1 alone.
        fanout: where invalidations travel between nodes (with ``l2`` only).
        actor_id: the actor's id in the supervision tree.
        node_id: this node's name in invalidation messages (default: random).
    """
    config = config or CacheConfig()
    clock = clock or SystemClock()
    keyspace = KeySpace(config.prefix)
    table = CacheTable()
    warmers: list[Warmer] = []
    channel_fanout = fanout or MemoryFanout()
    cache = Cache(
        config=config, keyspace=keyspace, table=table, l2=l2, clock=clock, warmers=warmers
    )

    def start() -> CacheActor:
        return CacheActor(
            config=config,
            keyspace=keyspace,
            table=table,
            l2=l2,
            fanout=channel_fanout,
            warmers=tuple(warmers),
            node_id=node_id,
        )

    return ChildSpec(actor_id, start, shutdown_seconds=5.0), cache


def install(setup: NodeSetup) -> Cache:
    """Add the cache actor and its routes to a node; return its Python API."""
    settings = setup.settings
    config = CacheConfig(
        prefix=settings.redis_prefix,
        default_ttl_seconds=settings.cache_default_ttl_seconds,
        max_value_bytes=settings.cache_max_value_bytes,
        l1_max_entries=settings.cache_l1_max_entries,
        l1_max_bytes=settings.cache_l1_max_bytes,
        negative_ttl_seconds=settings.cache_negative_ttl_seconds,
    )
    l2 = RedisL2(setup.redis) if setup.redis is not None else None
    spec, cache = cache_child(config=config, clock=setup.clock, l2=l2, fanout=setup.fanout)
    setup.add_actor(spec)
    setup.add_blueprint(cache_blueprint())
    setup.extensions[EXTENSION] = cache
    return cache


def get_cache(source: NodeSetup | NodeContext | Any) -> Cache:
    """The node's :class:`Cache`, from a setup hook's ``NodeSetup`` or ``node_context()``."""
    cache: Cache = source.extensions[EXTENSION]
    return cache
