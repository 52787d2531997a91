"""Typed keys of the node's own parts, provided before any package is installed.

An actor reaches them through its context (``self.context.get(FANOUT)``), a
route through ``node_context().get(FANOUT)``, a package's ``install`` through
``setup.require(FANOUT)``:

* :data:`FANOUT`: the node's :class:`~runtime.Fanout` (Redis pub/sub, or in memory),
  to bind typed channels to;
* :data:`REDIS`: the node's :class:`~runtime.RedisLink`, provided only when
  ``SWITCHYARD_REDIS_URL`` is set: look it up with ``find(REDIS)``, which
  answers ``None`` on a node that runs in memory;
* :data:`STATISTICS`: the node's :class:`~runtime.StatisticsRegistry`, which the
  metrics actor reads.
"""

from __future__ import annotations

from ._extensions import Extension
from ._fanout import Fanout
from ._redis import RedisLink
from ._statistics import StatisticsRegistry

__all__ = ["FANOUT", "REDIS", "STATISTICS"]

FANOUT: Extension[Fanout] = Extension("runtime.fanout", Fanout)  # type: ignore[type-abstract]
REDIS: Extension[RedisLink] = Extension("runtime.redis", RedisLink)
STATISTICS: Extension[StatisticsRegistry] = Extension("runtime.statistics", StatisticsRegistry)
