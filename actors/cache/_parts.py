"""What the cache actor and its facade share, built once per cache by ``cache_child``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime import Clock, Fanout

    from ._keys import KeySpace
    from ._l2 import L2Store
    from ._settings import CacheSettings
    from ._table import CacheTable
    from ._warming import Warmer

__all__ = ["CacheParts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheParts:
    """One cache's dependencies: every incarnation of the actor and the facade share them.

    Attributes:
        settings: the cache's knobs.
        keyspace: how user keys become Redis keys.
        table: the L1 table readers share with the actor (outlives incarnations).
        l2: the shared layer, or ``None`` for L1 alone.
        fanout: where invalidations travel between nodes.
        clock: the supervisor's clock (the facade reads it for timeouts and TTLs).
        node_id: this node's name in invalidation messages.
        warmers: keys to load at start; the facade's ``warm`` appends before the node starts.
    """

    settings: CacheSettings
    keyspace: KeySpace
    table: CacheTable
    l2: L2Store | None
    fanout: Fanout
    clock: Clock
    node_id: str
    warmers: list[Warmer] = field(default_factory=list)
