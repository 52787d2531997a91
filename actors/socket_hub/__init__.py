"""The socket hub: authenticated WebSocket rooms with presence, resumable history and fanout.

* :class:`Hub` is the Python API (send to a room or a user, task progress,
  broadcast, presence, rooms); other packages ``setup.require(HUB)``.
* :func:`install` adds the hub to a node: the actor, its ``/ws`` route and
  ``/api/rooms`` routes, its statistics (``hub``), and with Redis the presence
  heartbeat and the fanout canary (a readiness check).
* :func:`hub_child` builds a hub for embedding under a supervisor.
* The wire protocol is in :mod:`actors.socket_hub._frames` (re-exported
  here); the Python client is :mod:`actors.socket_hub.client`.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from runtime import ChildSpec, MemoryFanout, ServiceSpec, SystemClock

from ._actor import HubActor
from ._canary import Canary
from ._connection import Connection, TokenBucket
from ._facade import HUB, Hub
from ._frames import (
    Ack,
    AuthRequest,
    ClientFrame,
    HubError,
    JoinRoom,
    LeaveRoom,
    MessageKind,
    NewMessage,
    Ping,
    Pong,
    PresenceFrame,
    PresenceMember,
    Reconnect,
    RoomJoined,
    RoomLeft,
    SendMessage,
    ServerFrame,
    TaskProgress,
    TokenExpiring,
    UserJoinedRoom,
    UserLeftRoom,
    Welcome,
)
from ._keys import HubKeys
from ._messages import Posted, RoomInfo
from ._parts import HubParts
from ._presence import LocalPresence
from ._rooms import ProjectPolicy, check_access, parse_room, personal_room
from ._routes import hub_blueprint
from ._settings import HUB_SETTINGS, HubSettings
from ._statistics import HubStatistics
from ._stores import hub_stores

if TYPE_CHECKING:
    from runtime import Clock, Fanout, NodeSetup, RedisLink

__all__ = [
    "HUB",
    "HUB_SETTINGS",
    "Ack",
    "AuthRequest",
    "ClientFrame",
    "Connection",
    "Hub",
    "HubActor",
    "HubError",
    "HubKeys",
    "HubSettings",
    "HubStatistics",
    "JoinRoom",
    "LeaveRoom",
    "MessageKind",
    "NewMessage",
    "Ping",
    "Pong",
    "Posted",
    "PresenceFrame",
    "PresenceMember",
    "ProjectPolicy",
    "Reconnect",
    "RoomInfo",
    "RoomJoined",
    "RoomLeft",
    "SendMessage",
    "ServerFrame",
    "TaskProgress",
    "TokenBucket",
    "TokenExpiring",
    "UserJoinedRoom",
    "UserLeftRoom",
    "Welcome",
    "check_access",
    "hub_blueprint",
    "hub_child",
    "install",
    "parse_room",
    "personal_room",
]


def hub_child(
    *,
    settings: HubSettings | None = None,
    prefix: str = "switchyard",
    clock: Clock | None = None,
    redis: RedisLink | None = None,
    fanout: Fanout | None = None,
    node_id: str | None = None,
    actor_id: str = "socket_hub",
) -> tuple[list[ChildSpec | ServiceSpec], HubParts, Hub]:
    """A hub to run under a supervisor: its specs (actor first), its parts and its API.

    With ``redis`` (and its node's ``fanout``) the history is kept in Redis
    Streams and presence heartbeats into Redis; the specs then include the
    presence service and the fanout canary.
    """
    settings = settings or HubSettings()
    clock = clock or SystemClock()
    fanout = fanout or MemoryFanout()
    node_id = node_id or secrets.token_hex(8)
    keys = HubKeys(prefix)
    local = LocalPresence()
    history, presence = hub_stores(
        settings=settings,
        clock=clock,
        keys=keys,
        node_id=node_id,
        redis=redis,
        fanout=fanout,
        local=local,
    )
    parts = HubParts(
        settings=settings,
        keys=keys,
        history=history,
        presence=presence,
        fanout=fanout,
        clock=clock,
        node_id=node_id,
        distributed=redis is not None,
        local=local,
        redis=redis,
    )

    def start() -> HubActor:
        return HubActor(parts)

    specs: list[ChildSpec | ServiceSpec] = [
        ChildSpec(actor_id, start, shutdown_seconds=5.0, mailbox_size=8192)
    ]
    if parts.distributed:
        parts.canary = Canary(fanout, node_id, clock)
        specs.append(ServiceSpec(f"{actor_id}.presence", presence.run))
        specs.append(ServiceSpec(f"{actor_id}.canary", parts.canary.run))
    return specs, parts, Hub(parts)


def install(setup: NodeSetup) -> Hub:
    """Add the socket hub, its routes and statistics to a node; return its Python API."""
    specs, parts, hub = hub_child(
        settings=setup.section(HUB_SETTINGS),
        prefix=setup.settings.redis_prefix,
        clock=setup.clock,
        redis=setup.redis,
        fanout=setup.fanout,
    )
    parts.stopping = setup.stopping
    for spec in specs:
        setup.add_actor(spec)
    if parts.canary is not None:
        setup.add_readiness_check("socket_hub.fanout", parts.canary.reason)
    setup.add_blueprint(hub_blueprint())
    setup.add_statistics("hub", hub.statistics)
    setup.provide(HUB, hub)
    return hub
