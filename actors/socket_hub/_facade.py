"""The hub's Python API: send to users and rooms, push task progress, read presence.

Other packages get it with ``setup.require(HUB)`` (the queue pushes job
progress through it), routes with ``node_context().get(HUB)``, actors with
``self.context.get(HUB)``. Everything sent to a room goes into the room's
history first, so a member who was offline gets it when they rejoin with
``since``; a user's personal room ``user:<id>`` works the same, so progress
pushed while the user was away is there on reconnect.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

import msgspec

from runtime import CloseCode, Extension, RedisUnavailable, Rejected

from ._frames import NewMessage, PresenceFrame, TaskProgress
from ._messages import (
    Broadcast,
    Connect,
    Disconnect,
    JoinRoom,
    LeaveRoom,
    ListRooms,
    RoomPresence,
    SendToRoom,
)
from ._rooms import parse_room, personal_room
from ._statistics import HubStatistics

if TYPE_CHECKING:
    from runtime import ActorRef

    from ._connection import Connection
    from ._frames import MessageKind, PresenceMember
    from ._messages import HubMessage, Posted, RoomInfo
    from ._parts import HubParts
    from ._rooms import ProjectPolicy
    from ._settings import HubSettings

__all__ = ["HUB", "Hub"]

_encoder = msgspec.json.Encoder()

# How long a join, a send or a connect waits for the hub: its replies may wait on Redis
# (a room opening, a replay, an append), each command of which has its own deadline.
_REPLY_TIMEOUT_SECONDS = 20.0


def message_id() -> str:
    """A new message id: ``msg_`` and 16 random hex digits."""
    return "msg_" + secrets.token_hex(8)


class Hub:
    """The socket hub of one node (see the module docstring)."""

    def __init__(self, parts: HubParts) -> None:
        self._parts = parts

    @property
    def settings(self) -> HubSettings:
        """The hub's settings."""
        return self._parts.settings

    @property
    def project_policy(self) -> ProjectPolicy:
        """Who may join ``project:<id>`` rooms."""
        return self._parts.project_policy

    def set_project_policy(self, policy: ProjectPolicy) -> None:
        """Replace the project policy: ``async def policy(principal, project_id) -> bool``."""
        self._parts.project_policy = policy

    def _ref(self) -> ActorRef[HubMessage]:
        ref = self._parts.ref
        if ref is None:
            raise Rejected("unavailable", "the socket hub is not running; retry shortly")
        return ref

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _wait(self, future: asyncio.Future[Any]) -> Any:
        with self._parts.clock.move_on_after(_REPLY_TIMEOUT_SECONDS):
            return await future
        raise Rejected(
            "unavailable", f"the socket hub did not answer within {_REPLY_TIMEOUT_SECONDS:g}s"
        )

    # -- sending -----------------------------------------------------------------------------

    async def send_to_room(
        self,
        room: str,
        message: str,
        *,
        kind: MessageKind = "system",
        user_id: str = "system",
        user_name: str | None = None,
    ) -> Posted:
        """Post a ``new_message`` to ``room`` (stored in its history) from the server.

        Raises:
            Rejected: ``invalid_room``, or ``unavailable`` when the hub is restarting.
        """
        parse_room(room)
        frame = NewMessage(
            id=message_id(),
            room=room,
            user_id=user_id,
            user_name=user_name,
            message=message,
            kind=kind,
            ts=self._parts.clock.time(),
        )
        return await self.post(room, _encoder.encode(frame))

    async def send_to_user(
        self, user_id: str, message: str, *, kind: MessageKind = "notification"
    ) -> Posted:
        """Post a ``new_message`` to the personal room of ``user_id`` (every connection of it)."""
        return await self.send_to_room(personal_room(user_id), message, kind=kind)

    async def task_progress(
        self,
        user_id: str,
        task_id: str,
        percentage: float,
        *,
        stage: str | None = None,
        message: str | None = None,
        state: str = "running",
        result: object = None,
        error: str | None = None,
    ) -> Posted:
        """Push ``task_progress`` to the personal room of ``user_id``, into its history.

        ``state`` is ``running``, ``completed``, ``failed`` or ``cancelled``.
        Updates of one task coalesce in a slow client's outbox (the latest wins).
        """
        room = personal_room(user_id)
        frame = msgspec.convert(
            {
                "task_id": task_id,
                "room": room,
                "percentage": percentage,
                "stage": stage,
                "message": message,
                "state": state,
                "error": error,
                "ts": self._parts.clock.time(),
            },
            TaskProgress,
        )
        if result is not None:  # convert() takes no Raw: the encoded result goes in after
            frame = msgspec.structs.replace(frame, result=msgspec.Raw(_encoder.encode(result)))
        return await self.post(room, _encoder.encode(frame))

    async def post(
        self, room: str, template: bytes, connection: Connection | None = None
    ) -> Posted:
        """Append an encoded frame (a JSON object without ``offset``) to ``room`` and deliver it.

        The frame's offset is spliced in by the history. This is what the
        other ``send`` methods and the ``/ws`` route use.
        """
        reply: asyncio.Future[Posted] = self._future()
        await self._ref().tell(
            SendToRoom(room=room, template=template, reply=reply, connection=connection)
        )
        posted: Posted = await self._wait(reply)
        return posted

    async def broadcast(self, message: str, *, kind: MessageKind = "system") -> int:
        """Send a ``new_message`` (room ``*``, no history) to every connection on every node.

        Returns how many connections of this node it was queued to.
        """
        frame = NewMessage(
            id=message_id(),
            room="*",
            user_id="system",
            message=message,
            kind=kind,
            ts=self._parts.clock.time(),
        )
        sent: int = await self._ref().ask(Broadcast(frame=_encoder.encode(frame)))
        return sent

    # -- presence and rooms ------------------------------------------------------------------

    async def presence(self, room: str) -> list[PresenceMember]:
        """Who is in ``room`` across every node (this node's view while Redis is away)."""
        try:
            return await self._parts.presence.members(room)
        except RedisUnavailable:
            members: list[PresenceMember] = await self._ref().ask(RoomPresence(room=room))
            return members

    async def presence_frame(self, room: str) -> PresenceFrame:
        """The ``presence`` frame that follows a join (bounded for big rooms)."""
        most = self._parts.settings.presence_frame_max_members
        if self._parts.local.users(room) > most:  # big: this node's first members, no Redis read
            local = self._parts.local.members(room)
            return PresenceFrame(room=room, members=local[:most], partial=True)
        members = await self.presence(room)
        if len(members) > most:
            return PresenceFrame(room=room, members=members[:most], partial=True)
        return PresenceFrame(room=room, members=members)

    async def rooms(self) -> list[RoomInfo]:
        """Every room with members on this node, with counts and history positions."""
        infos: list[RoomInfo] = await self._ref().ask(ListRooms())
        return infos

    async def statistics(self) -> HubStatistics:
        """The hub's counters and sizes."""
        parts, counters = self._parts, self._parts.counters
        counts = {name: getattr(counters, name) for name in vars(counters)}
        users: set[str] = set()
        rooms: set[str] = set()
        for connection in parts.connections:
            users.add(connection.user_id)
            rooms.update(connection.rooms)
            if not connection.ended:  # open sessions count what they did so far
                session = connection.session.statistics()
                counts["coalesced"] += session.coalesced
                counts["bad_frames"] += session.bad_frames
        return HubStatistics(
            connections=len(parts.connections),
            users=len(users),
            rooms=len(rooms),
            fanout_deaf=parts.canary.deaf if parts.canary is not None else False,
            canary_round_trip_ms=parts.canary.round_trip_ms if parts.canary is not None else None,
            history=parts.history.statistics(),
            presence=parts.presence.statistics(),
            **counts,
        )

    # -- what the /ws route uses -------------------------------------------------------------

    async def connect(self, connection: Connection) -> None:
        """Register ``connection``; returns once its ``welcome`` is queued.

        Raises:
            Rejected: ``too_many_connections`` or ``node_stopping``.
        """
        reply: asyncio.Future[None] = self._future()
        await self._ref().tell(Connect(connection=connection, reply=reply))
        await self._wait(reply)

    async def disconnect(self, connection: Connection) -> None:
        """Unregister ``connection``; call it shielded, as the connection ends.

        Its session's coalesced and bad frames join the hub's counters, and a
        close for overflow (4008) counts as a slow disconnect.
        """
        if not connection.ended:
            connection.ended = True
            session, counters = connection.session, self._parts.counters
            statistics = session.statistics()
            counters.coalesced += statistics.coalesced
            counters.bad_frames += statistics.bad_frames
            closing = session.closing
            if closing is not None and closing.code == CloseCode.SLOW_CONSUMER:
                counters.slow_disconnects += 1
        ref = self._parts.ref
        if ref is not None:
            with self._parts.clock.move_on_after(5.0):
                await ref.tell(Disconnect(connection=connection))

    async def join(
        self,
        connection: Connection,
        room: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        ref: str | int | None = None,
    ) -> None:
        """Join ``room`` (access checked by the caller); the hub sends ``room_joined``."""
        reply: asyncio.Future[None] = self._future()
        await self._ref().tell(
            JoinRoom(
                connection=connection, room=room, reply=reply, since=since, epoch=epoch, ref=ref
            )
        )
        await self._wait(reply)

    async def leave(self, connection: Connection, room: str) -> None:
        """Leave ``room``."""
        await self._ref().ask(LeaveRoom(connection=connection, room=room))


HUB: Extension[Hub] = Extension("hub", Hub)
"""The typed key of the node's :class:`Hub` (``setup.require(HUB)``)."""
