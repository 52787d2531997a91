"""The hub actor's protocol: what the routes, the facade and other actors send it.

Commands that the hub can answer at once are ``Request`` s typed with their
reply. Commands whose answer waits on Redis (a room opening, a replay, an
append) are told and carry a ``reply`` future the hub settles when it is done,
so the actor never waits on Redis itself. The events the hub sends itself
(from its room readers, history tasks and timers) start with ``_``.
Connections are registered by the ``/ws`` route with :class:`Connect` and
leave with :class:`Disconnect`; every frame of a connection that needs the
hub's state (join, leave, send) travels as one of these messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from runtime import Gap, Message, Request

from ._frames import PresenceMember

if TYPE_CHECKING:
    import asyncio

    from ._connection import Connection
    from ._history import Appended, Position, Replay

__all__ = [
    "Broadcast",
    "Connect",
    "Disconnect",
    "HubMessage",
    "JoinRoom",
    "LeaveRoom",
    "ListRooms",
    "Posted",
    "RoomInfo",
    "RoomPresence",
    "SendToRoom",
    "Stopping",
]


class Posted(msgspec.Struct, frozen=True, kw_only=True):
    """Where a posted frame landed: its room, epoch and offset."""

    room: str
    epoch: str
    offset: int


class RoomInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One room of this node: its local users and connections, and its history position."""

    room: str
    users: int
    connections: int
    epoch: str
    offset: int


class Connect(Message, tag="hub.connect", frozen=True, kw_only=True):
    """Register an authenticated connection; it joins its personal room.

    ``reply`` is set once ``welcome`` is queued (or fails with ``Rejected``).
    """

    connection: Connection
    reply: asyncio.Future[None]


class Disconnect(Message, tag="hub.disconnect", frozen=True, kw_only=True):
    """The connection ended: leave every room."""

    connection: Connection


class JoinRoom(Message, tag="hub.join", frozen=True, kw_only=True):
    """Join ``room`` (access already checked), replaying from ``since`` when given.

    The hub itself sends the replayed frames and ``room_joined`` to the
    connection, then sets ``reply``.
    """

    connection: Connection
    room: str
    reply: asyncio.Future[None]
    since: int | None = None
    epoch: str | None = None
    ref: str | int | None = None


class LeaveRoom(Request[None], tag="hub.leave", frozen=True, kw_only=True):
    """Leave ``room``."""

    connection: Connection
    room: str


class SendToRoom(Message, tag="hub.send", frozen=True, kw_only=True):
    """Append ``template`` (an encoded frame without ``offset``) to ``room`` and deliver it.

    With ``connection`` set, the sender must be a member of the room.
    ``reply`` gets where the frame landed (offset 0: Redis was unavailable and
    the frame went to this node's members only).
    """

    room: str
    template: bytes
    reply: asyncio.Future[Posted]
    connection: Connection | None = None


class Broadcast(Request[int], tag="hub.broadcast", frozen=True, kw_only=True):
    """Send ``frame`` to every connection on every node (no history). Reply: local deliveries."""

    frame: bytes


class RoomPresence(Request[list[PresenceMember]], tag="hub.presence", frozen=True, kw_only=True):
    """This node's members of ``room``."""

    room: str


class ListRooms(Request[list[RoomInfo]], tag="hub.rooms", frozen=True, kw_only=True):
    """Every room with members on this node."""


class Stopping(Message, tag="hub.stopping", frozen=True, kw_only=True):
    """The node drains: tell every client where to resume, then close it (1001)."""


# -- what the hub tells itself --------------------------------------------------------------


class _RoomOpened(Message, tag="hub._opened", frozen=True, kw_only=True):
    room: str
    position: Position | None
    error: str | None = None


class _Remote(Message, tag="hub._remote", frozen=True, kw_only=True):
    room: str
    item: bytes | Gap


class _Appended(Message, tag="hub._appended", frozen=True, kw_only=True):
    sends: list[SendToRoom]
    appended: list[Appended] | None


class _Replayed(Message, tag="hub._replayed", frozen=True, kw_only=True):
    join: JoinRoom
    replay: Replay | None


class _Refilled(Message, tag="hub._refilled", frozen=True, kw_only=True):
    room: str
    position: Position | None
    frames: list[tuple[int, bytes]]


class _Relayed(Message, tag="hub._relayed", frozen=True, kw_only=True):
    frame: bytes  # a broadcast another node published: deliver here, never publish again


class _Sweep(Message, tag="hub._sweep", frozen=True, kw_only=True):
    pass


class _GapTimeout(Message, tag="hub._gap_timeout", frozen=True, kw_only=True):
    room: str
    waiting_for: int


HubMessage = (
    Connect | Disconnect | JoinRoom | LeaveRoom | SendToRoom | Broadcast | RoomPresence
    | ListRooms | Stopping | _RoomOpened | _Remote | _Appended | _Replayed | _Refilled | _Relayed
    | _Sweep | _GapTimeout
)  # fmt: skip
"""Every message the hub actor handles."""
