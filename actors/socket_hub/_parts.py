"""What the hub actor, its facade and its routes share, built once per hub."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ._rooms import allow_all_projects
from ._statistics import HubCounters

if TYPE_CHECKING:
    from runtime import ActorRef, Clock, Fanout, RedisLink

    from ._canary import Canary
    from ._connection import Connection
    from ._history import RoomHistory
    from ._keys import HubKeys
    from ._presence import LocalPresence, PresenceStore
    from ._rooms import ProjectPolicy
    from ._settings import HubSettings

__all__ = ["HubParts"]


@dataclass(slots=True, kw_only=True)
class HubParts:
    """One hub's dependencies and the state that outlives actor incarnations.

    Attributes:
        settings: the hub's knobs.
        keys: where its rooms live in Redis.
        history: the rooms' resumable history (memory ring or Redis Streams).
        presence: the cluster's presence (memory twin or Redis heartbeats).
        fanout: the node's fanout (room traffic between nodes, with Redis).
        clock: the node's clock.
        node_id: this node's id in Redis presence and canary channel names.
        distributed: ``True`` with Redis: rooms subscribe their fanout channel.
        local: this node's members per room (the hub actor alone changes it).
        stopping: set when the node drains.
        canary: proves the fanout works (with Redis), or ``None``.
        project_policy: who may join ``project:<id>`` rooms (replaceable).
        counters: the hub's counters.
        connections: every connection registered with the running incarnation.
        ref: the running actor's ref (set by each incarnation's ``on_start``).
        redis: the node's Redis link (``None`` in memory).
    """

    settings: HubSettings
    keys: HubKeys
    history: RoomHistory
    presence: PresenceStore
    fanout: Fanout
    clock: Clock
    node_id: str
    distributed: bool
    local: LocalPresence
    stopping: anyio.Event = field(default_factory=anyio.Event)
    canary: Canary | None = None
    project_policy: ProjectPolicy = allow_all_projects
    counters: HubCounters = field(default_factory=HubCounters)
    connections: set[Connection] = field(default_factory=set)
    ref: ActorRef[Any] | None = None
    redis: RedisLink | None = None
