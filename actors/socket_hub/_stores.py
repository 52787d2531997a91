"""Which history and presence a hub uses: in memory, or in Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime import RedisFanout

from ._history import MemoryHistory
from ._history_redis import RedisHistory
from ._presence import MemoryPresence
from ._presence_redis import RedisPresence

if TYPE_CHECKING:
    from runtime import Clock, Fanout, RedisLink

    from ._history import RoomHistory
    from ._keys import HubKeys
    from ._presence import LocalPresence, PresenceStore
    from ._settings import HubSettings

__all__ = ["hub_stores"]


def hub_stores(
    *,
    settings: HubSettings,
    clock: Clock,
    keys: HubKeys,
    node_id: str,
    redis: RedisLink | None,
    fanout: Fanout,
    local: LocalPresence,
) -> tuple[RoomHistory, PresenceStore]:
    """The memory twins without ``redis``; Redis Streams and heartbeats with it.

    Raises:
        TypeError: ``redis`` is given but ``fanout`` is not the node's ``RedisFanout``.
    """
    if redis is None:
        return MemoryHistory(settings, clock), MemoryPresence(local)
    if not isinstance(fanout, RedisFanout):
        raise TypeError(f"a hub on Redis needs the node's RedisFanout, not {fanout!r}")
    return (
        RedisHistory(redis, keys, fanout, node_id, settings),
        RedisPresence(redis, keys, node_id, settings, clock),
    )
