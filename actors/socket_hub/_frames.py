"""The hub's wire protocol: JSON text frames, each a tagged msgspec Struct (tag field ``type``).

Client → server (:data:`ClientFrame`): ``auth``, ``join_room``, ``leave_room``,
``send_message``, ``ping``. Every one may carry a ``ref`` (a string or an
integer the client chooses); the answer to a frame with a ``ref`` carries the
same ``ref``: an ``ack`` (or the frame the request produced, such as
``room_joined``) or an ``error {code, message, ref}``.

Server → client: ``welcome`` (once, after authentication), ``ack``,
``room_joined``, ``room_left``, ``user_joined_room``, ``user_left_room``,
``new_message``, ``task_progress``, ``presence``, ``token_expiring``,
``reconnect``, ``pong`` and ``error``. :data:`ServerFrame` is their union; the
Python client decodes it.

Offsets: every room has a history of its last N frames (``new_message`` and
``task_progress``), each with an ``offset`` that grows by one per frame within
an ``epoch``. A client that remembers the last offset (and the epoch) of each
room it was in rejoins with ``since``/``epoch`` and gets what it missed, in
order, before the live frames.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "Ack",
    "AuthRequest",
    "ClientFrame",
    "HubError",
    "JoinRoom",
    "LeaveRoom",
    "MessageKind",
    "NewMessage",
    "Ping",
    "Pong",
    "PresenceFrame",
    "PresenceMember",
    "Reconnect",
    "Ref",
    "RoomJoined",
    "RoomLeft",
    "SendMessage",
    "ServerFrame",
    "TaskProgress",
    "TokenExpiring",
    "UserJoinedRoom",
    "UserLeftRoom",
    "Welcome",
]

Ref = str | int
"""What a client puts in ``ref`` to match an answer to its frame."""

MessageKind = Literal["text", "system", "notification"]
"""The kinds of chat message a ``send_message`` may carry."""

_RoomName = Annotated[str, Meta(min_length=1, max_length=300)]
_Offset = Annotated[int, Meta(ge=0)]


class _Frame(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Base of every frame: tagged on ``type``; default fields are left out on the wire."""


# -- client → server -------------------------------------------------------------------------


class AuthRequest(_Frame, tag="auth", frozen=True, kw_only=True):
    """``auth {token}``: the first frame of first-frame authentication, or a token refresh."""

    token: Annotated[str, Meta(max_length=8192)]
    ref: Ref | None = None


class JoinRoom(_Frame, tag="join_room", frozen=True, kw_only=True):
    """``join_room {room, room_type?, since?, epoch?}``: join, and recover from ``since`` on.

    ``room`` is ``<type>:<name>`` (``public:lobby``, ``project:42``); a
    ``room_type``, when given, must equal the part before the colon.
    ``since`` is the last offset the client saw in this room (and ``epoch``
    the epoch it saw it in): the reply replays every later frame first.
    """

    room: _RoomName
    room_type: str | None = None
    since: _Offset | None = None
    epoch: Annotated[str, Meta(max_length=64)] | None = None
    ref: Ref | None = None


class LeaveRoom(_Frame, tag="leave_room", frozen=True, kw_only=True):
    """``leave_room {room}``: stop receiving the room's frames (not the personal room)."""

    room: _RoomName
    ref: Ref | None = None


class SendMessage(_Frame, tag="send_message", frozen=True, kw_only=True):
    """``send_message {room, message, kind}``: post a chat message to a room the client joined."""

    room: _RoomName
    message: str
    kind: MessageKind = "text"
    ref: Ref | None = None


class Ping(_Frame, tag="ping", frozen=True, kw_only=True):
    """``ping``: answered with ``pong`` (an application-level round trip)."""

    ref: Ref | None = None


ClientFrame = AuthRequest | JoinRoom | LeaveRoom | SendMessage | Ping
"""Every frame a client may send."""


# -- server → client -------------------------------------------------------------------------


class Welcome(_Frame, tag="welcome", frozen=True, kw_only=True):
    """Sent once a connection is authenticated: who it is and its personal room."""

    user_id: str
    user_name: str | None = None
    room: str
    epoch: str
    offset: int
    expires_at: float
    connection_id: str


class Ack(_Frame, tag="ack", frozen=True, kw_only=True):
    """The answer to a client frame that has nothing else to say (``leave_room``, ``auth``...).

    For ``send_message`` it carries the message's ``id`` and ``offset``.
    """

    ref: Ref | None = None
    id: str | None = None
    offset: int | None = None


class HubError(_Frame, tag="error", frozen=True, kw_only=True):
    """``error {code, message, ref}``: a frame was refused; the connection goes on."""

    code: str
    message: str
    ref: Ref | None = None


class RoomJoined(_Frame, tag="room_joined", frozen=True, kw_only=True):
    """``room_joined {room, epoch, offset, recovered?}``.

    ``offset`` is the room's last offset when the join took effect. For a join
    with ``since``, ``recovered`` says whether every frame after ``since`` was
    replayed (``true``) or the history no longer reaches back that far, or the
    epoch changed (``false``: the client must resynchronise, e.g. by reloading).
    The server also sends ``room_joined`` with ``recovered: false`` on its own
    when a room's history was lost while the client was in it.
    """

    room: str
    epoch: str
    offset: int
    recovered: bool | None = None
    ref: Ref | None = None


class RoomLeft(_Frame, tag="room_left", frozen=True, kw_only=True):
    """The answer to ``leave_room``."""

    room: str
    ref: Ref | None = None


class UserJoinedRoom(_Frame, tag="user_joined_room", frozen=True, kw_only=True):
    """A user's first connection (on a node) joined a room the client is in."""

    room: str
    user_id: str
    user_name: str | None = None


class UserLeftRoom(_Frame, tag="user_left_room", frozen=True, kw_only=True):
    """A user's last connection (on a node) left a room the client is in."""

    room: str
    user_id: str
    user_name: str | None = None


class NewMessage(_Frame, tag="new_message", frozen=True, kw_only=True):
    """``new_message {id, room, offset, user_id, user_name, message, kind, ts}``."""

    id: str
    room: str
    offset: int = 0
    user_id: str
    user_name: str | None = None
    message: str
    kind: MessageKind = "text"
    ts: float


class TaskProgress(_Frame, tag="task_progress", frozen=True, kw_only=True):
    """``task_progress {task_id, percentage, stage, message, ts}``, in the user's personal room.

    ``state`` is ``running`` while a task runs and ``completed``, ``failed`` or
    ``cancelled`` at its end; ``result`` and ``error`` come with the end.
    """

    task_id: str
    room: str
    offset: int = 0
    percentage: Annotated[float, Meta(ge=0, le=100)]
    stage: str | None = None
    message: str | None = None
    state: Literal["running", "completed", "failed", "cancelled"] = "running"
    result: msgspec.Raw | None = None
    error: str | None = None
    ts: float


class PresenceMember(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One user in a room: id, name and how many connections they have in it."""

    user_id: str
    user_name: str | None = None
    connections: int


class PresenceFrame(_Frame, tag="presence", frozen=True, kw_only=True):
    """Who is in a room, across every node (sent after ``room_joined``).

    In a room with more users than ``SWITCHYARD_HUB_PRESENCE_FRAME_MAX_MEMBERS``
    the frame after a join lists only that many of this node's members and
    sets ``partial``; ``GET /api/rooms/<room>/presence`` has the whole list.
    """

    room: str
    members: list[PresenceMember]
    partial: bool = False


class TokenExpiring(_Frame, tag="token_expiring", frozen=True, kw_only=True):
    """The token expires at ``expires_at``: send ``auth {token}`` with a fresh one before."""

    expires_at: float


class Reconnect(_Frame, tag="reconnect", frozen=True, kw_only=True):
    """The node is going away: reconnect after ``after_ms`` and rejoin from ``positions``.

    ``positions`` maps each room the connection was in to ``[epoch, offset]``,
    its last offset as this connection saw it.
    """

    after_ms: int
    positions: dict[str, tuple[str, int]]


class Pong(_Frame, tag="pong", frozen=True, kw_only=True):
    """The answer to ``ping``."""

    ref: Ref | None = None
    ts: float


ServerFrame = (
    Welcome | Ack | HubError | RoomJoined | RoomLeft | UserJoinedRoom | UserLeftRoom
    | NewMessage | TaskProgress | PresenceFrame | TokenExpiring | Reconnect | Pong
)  # fmt: skip
"""Every frame the server sends."""
