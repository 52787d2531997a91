"""Which history and presence a hub uses: in memory, or in Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._history import MemoryHistory
from ._presence import MemoryPresence

if TYPE_CHECKING:
    from runtime import Clock, Fanout, RedisLink

    from ._history import RoomHistory
    from ._keys import HubKeys
    from ._presence import PresenceStore
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
) -> tuple[RoomHistory, PresenceStore]:
    """The memory twins without ``redis``; Redis Streams and heartbeats with it."""
    # INTERIM: Redis Streams and heartbeats land with the hub-history and hub-presence branches.
    return MemoryHistory(settings, clock), MemoryPresence()
