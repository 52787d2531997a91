"""The cache actor: a coherent two-layer cache, L1 in the process and L2 in Redis.

* :class:`Cache` is the Python API: ``get``, ``get_many``, ``set``, ``delete``,
  ``exists``, ``get_or_set`` (single flight, optionally cluster-wide),
  ``invalidate_pattern``, ``invalidate_tag``, ``warm``, ``cached`` and
  ``statistics``. :func:`cached` is the decorator for module level: it finds
  the running node's cache at call time.
* :func:`install` adds the cache to a node (the composition root calls it)
  and provides the :class:`Cache` under the typed key :data:`CACHE`: other
  packages ``setup.require(CACHE)``, routes ``node_context().get(CACHE)``,
  actors ``self.context.get(CACHE)``.
* :func:`cache_child` builds a cache for embedding: a child spec to run under
  a supervisor and the :class:`Cache` that talks to it.
* :class:`CacheSettings` are its knobs, the ``CACHE_SETTINGS`` section of the
  node's configuration (``SWITCHYARD_CACHE_*``, ``--cache-*``).
* The messages (``CacheGet`` ... ``CacheStats``, each a ``Request`` typed with
  its ``...Reply``) are the actor's protocol: any actor can use them with a
  ref to the cache, without the facade (see :mod:`actors.cache._messages`).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from runtime import ChildSpec, MemoryFanout, SystemClock

from ._actor import CacheActor
from ._decorator import cached, current_cache, installed_cache
from ._facade import CACHE, Cache, CacheRead
from ._keys import KeySpace
from ._l1 import L1Store
from ._l2 import L2Store, MemoryL2, RedisL2
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
)
from ._parts import CacheParts
from ._routes import cache_blueprint
from ._settings import CACHE_SETTINGS, CacheSettings
from ._statistics import CacheStatistics
from ._table import CacheTable

if TYPE_CHECKING:
    from runtime import Clock, Fanout, NodeSetup

__all__ = [
    "CACHE",
    "CACHE_SETTINGS",
    "Cache",
    "CacheActor",
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
    "CacheParts",
    "CacheRead",
    "CacheSet",
    "CacheSetReply",
    "CacheSettings",
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
    "cached",
    "current_cache",
    "install",
]


def cache_child(
    *,
    settings: CacheSettings | None = None,
    prefix: str = "switchyard",
    clock: Clock | None = None,
    l2: L2Store | None = None,
    fanout: Fanout | None = None,
    actor_id: str = "cache",
    node_id: str | None = None,
) -> tuple[ChildSpec, Cache]:
    """A cache to run under a supervisor: its child spec and its Python API.

    Args:
        settings: the cache's knobs (defaults: :class:`CacheSettings`).
        prefix: the deployment's key prefix (a node's ``redis_prefix``); keys
            are ``{prefix}:cache:{key}``.
        clock: the supervisor's clock (the API reads it for timeouts and TTLs).
        l2: the shared layer; ``None`` runs the cache on L1 alone.
        fanout: where invalidations travel between nodes (with ``l2`` only).
        actor_id: the actor's id in the supervision tree.
        node_id: this node's name in invalidation messages (default: random).

    Raises:
        ValueError: ``prefix`` is empty, too long, or holds whitespace or glob characters.
    """
    parts = CacheParts(
        settings=settings or CacheSettings(),
        keyspace=KeySpace(prefix),
        table=CacheTable(),
        l2=l2,
        fanout=fanout or MemoryFanout(),
        clock=clock or SystemClock(),
        node_id=node_id or uuid.uuid4().hex,
    )

    def start() -> CacheActor:
        return CacheActor(parts)

    return ChildSpec(actor_id, start, shutdown_seconds=5.0), Cache(parts)


def install(setup: NodeSetup) -> Cache:
    """Add the cache actor and its routes to a node; return its Python API.

    Reads the ``CACHE_SETTINGS`` section and the node's ``redis_prefix``;
    registers the ``cache`` statistics and provides the API under
    :data:`CACHE`. The task that assembles the node (and the tasks it starts,
    the node's actors among them) also finds it through :func:`current_cache`,
    which the module-level :func:`cached` uses outside requests.
    """
    l2 = RedisL2(setup.redis) if setup.redis is not None else None
    spec, cache = cache_child(
        settings=setup.section(CACHE_SETTINGS),
        prefix=setup.settings.redis_prefix,
        clock=setup.clock,
        l2=l2,
        fanout=setup.fanout,
    )
    setup.add_actor(spec)
    setup.add_blueprint(cache_blueprint())
    setup.add_statistics("cache", cache.statistics)
    setup.provide(CACHE, cache)
    installed_cache.set(cache)
    return cache
