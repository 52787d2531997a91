"""The hub's routes: the ``/ws`` WebSocket, and the room API under ``/api/rooms``.

``/ws`` authenticates (``Authorization: Bearer``, ``?token=``, or a first
``auth`` frame within ``SWITCHYARD_HUB_AUTH_TIMEOUT_SECONDS``), registers the
connection with the hub (which joins it to its personal room and sends
``welcome``), then serves its frames one at a time, so a connection's frames
are handled in order. Each frame first passes the connection's token bucket.

HTTP (JSON, bearer token):

* ``POST /api/rooms/<room>/messages`` ``{message, kind?}`` — role ``admin``
  (or ``service``, unless ``SWITCHYARD_HUB_ALLOW_SERVICE_SEND=false``): post a
  message into the room's history and to its members; 201 with
  ``{room, epoch, offset, id}``.
* ``GET /api/rooms/<room>/presence`` — anyone who may join the room: its
  members across every node.
* ``GET /api/rooms`` — role ``admin``: this node's rooms with member counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, assert_never

import anyio
import msgspec
from msgspec import Meta
from quart import Blueprint, Response
from quart_schema import document_request, document_response

from runtime import (
    ApiError,
    AuthError,
    CloseCode,
    FrameDecoder,
    Rejected,
    WebSocketSession,
    authenticate_websocket,
    current_principal,
    decode_body,
    document_errors,
    json_response,
    node_context,
    require_auth,
    run_session,
)

from ._connection import Connection, TokenBucket
from ._facade import HUB, message_id
from ._frames import (
    Ack,
    AuthRequest,
    ClientFrame,
    JoinRoom,
    LeaveRoom,
    MessageKind,
    NewMessage,
    Ping,
    Pong,
    PresenceFrame,
    RoomLeft,
    SendMessage,
)
from ._messages import RoomInfo
from ._rooms import check_access, parse_room, personal_room

if TYPE_CHECKING:
    from runtime import Principal

    from ._facade import Hub

__all__ = ["NodeRooms", "PostMessage", "PostedMessage", "hub_blueprint"]

_FRAMES: FrameDecoder[ClientFrame] = FrameDecoder(ClientFrame)
_encoder = msgspec.json.Encoder()


def _text(frame: object) -> str:
    """``frame`` as the text of a JSON text frame (``bytes`` would go out as a binary frame)."""
    return _encoder.encode(frame).decode()


class PostMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``POST /api/rooms/<room>/messages``: the message and its kind."""

    message: Annotated[str, Meta(min_length=1)]
    kind: MessageKind = "system"


class PostedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``POST /api/rooms/<room>/messages``: where the message landed, and its id."""

    room: str
    epoch: str
    offset: int
    id: str


class NodeRooms(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``GET /api/rooms``: this node's id and its rooms."""

    node: str
    rooms: list[RoomInfo]


def _hub() -> Hub:
    hub: Hub = node_context().get(HUB)
    return hub


def _check_message(hub: Hub, text: str) -> None:
    limit = hub.settings.max_message_chars
    if not text.strip():
        raise Rejected("invalid_message", "message is empty")
    if len(text) > limit:
        raise Rejected(
            "message_too_long", f"message has {len(text)} characters; the limit is {limit}"
        )


class _Frames:
    """Serves the frames of one connection (the ``on_frame`` of its session)."""

    __slots__ = ("connection", "hub")

    def __init__(self, hub: Hub, connection: Connection) -> None:
        self.hub = hub
        self.connection = connection

    async def __call__(self, session: WebSocketSession, frame: ClientFrame) -> None:
        hub, connection = self.hub, self.connection
        settings = hub.settings
        now = hub._parts.clock.time()
        connection.last_seen = now
        if not connection.bucket.take(now):
            counters = hub._parts.counters
            counters.rate_limited += 1
            connection.strikes += 1
            why = (
                f"more than {settings.rate_per_second:g} frames a second "
                f"(burst {settings.rate_burst}); slow down"
            )
            if connection.strikes >= settings.rate_strikes:
                counters.rate_limit_closes += 1
                # the last error frame first: a closing session queues nothing more
                session.send_error("rate_limited", why, ref=frame.ref)
                session.close(CloseCode.RATE_LIMITED, "rate_limited")
                return
            raise Rejected("rate_limited", why)
        connection.strikes = 0
        match frame:
            case SendMessage(room=room, message=text, kind=kind, ref=ref):
                _check_message(hub, text)
                parse_room(room)
                message = NewMessage(
                    id=message_id(),
                    room=room,
                    user_id=connection.user_id,
                    user_name=connection.user_name,
                    message=text,
                    kind=kind,
                    ts=now,
                )
                posted = await hub.post(room, _encoder.encode(message), connection)
                ack = Ack(ref=ref, id=message.id, offset=posted.offset or None)
                session.send_encoded(_text(ack), priority=True)
            case JoinRoom(room=room, room_type=room_type, since=since, epoch=epoch, ref=ref):
                await check_access(connection.principal, room, room_type, hub.project_policy)
                await hub.join(connection, room, since=since, epoch=epoch, ref=ref)
                session.send(await hub.presence_frame(room))
            case LeaveRoom(room=room, ref=ref):
                await hub.leave(connection, room)
                session.send_encoded(_text(RoomLeft(room=room, ref=ref)), priority=True)
            case Ping(ref=ref):
                session.send_encoded(_text(Pong(ref=ref, ts=now)), priority=True)
            case AuthRequest(token=token, ref=ref):
                self._refresh(session, token)
                session.send_encoded(_text(Ack(ref=ref)), priority=True)
                await self._recheck_rooms(session)
            case _:
                assert_never(frame)

    async def _recheck_rooms(self, session: WebSocketSession) -> None:
        """A refreshed token may grant less: leave the rooms it no longer lets the user into."""
        connection, hub = self.connection, self.hub
        for room in list(connection.rooms):
            if room == connection.personal_room:
                continue
            try:
                await check_access(connection.principal, room, None, hub.project_policy)
            except Rejected as refused:
                await hub.leave(connection, room)
                session.send_error(
                    refused.code,
                    f"the refreshed token does not allow room {room!r}: {refused.message}",
                )
                session.send_encoded(_text(RoomLeft(room=room)), priority=True)

    def _refresh(self, session: WebSocketSession, token: str) -> None:
        verifier = node_context().verifier
        if verifier is None:
            raise AuthError("missing_token", "this node accepts no token")
        principal = verifier.verify(token.strip())
        if principal.subject != self.connection.user_id:
            raise Rejected(
                "subject_mismatch",
                "a refreshed token must be for the same user as the connection's",
            )
        self.connection.principal = principal
        self.connection.warned_expiry = False
        self.hub._parts.counters.refreshes += 1
        session.refresh(principal)


async def _serve_socket() -> None:
    hub = _hub()
    settings = hub.settings
    principal = await authenticate_websocket(
        accept=("header", "query", "first_frame"),
        first_frame_timeout_seconds=settings.auth_timeout_seconds,
    )
    room = _personal_room(principal)
    session = WebSocketSession(
        principal=principal,
        outbox_size=settings.outbox_size,
        max_frame_bytes=settings.max_frame_bytes,
        close_on_stopping=False,  # the hub sends `reconnect` first, then closes
        close_on_expiry=False,  # the hub's sweeper warns, then closes: no timer task per socket
    )
    clock = hub._parts.clock
    bucket = TokenBucket(settings.rate_per_second, settings.rate_burst, clock.time())
    connection = Connection(session, principal, room, bucket, clock.time())
    try:
        await hub.connect(connection)
    except Rejected as exc:
        # only the per-user limit is the client's doing; the rest (stopping, restarting) is ours
        status = 429 if exc.code == "too_many_connections" else 503
        raise ApiError(status, exc.code, exc.message) from None
    try:
        await run_session(session, _FRAMES, _Frames(hub, connection))
    finally:
        with anyio.CancelScope(shield=True):
            await hub.disconnect(connection)


def _personal_room(principal: Principal) -> str:
    try:
        return personal_room(principal.subject)
    except Rejected:
        raise AuthError(
            "invalid_token",
            "the token's 'sub' cannot name a personal room (letters, digits, _ . : @ + = | -)",
        ) from None


def hub_blueprint() -> Blueprint:
    """The hub's WebSocket route ``/ws`` and its HTTP room API."""
    routes = Blueprint("socket_hub", __name__)

    @routes.websocket("/ws")
    async def socket() -> None:
        await _serve_socket()

    @routes.post("/api/rooms/<path:room>/messages")
    @document_request(PostMessage)
    @document_response(PostedMessage, 201)
    @document_errors(400, 401, 403, 422)
    @require_auth()
    async def post_message(room: str) -> Response:
        hub = _hub()
        principal = current_principal()
        service = hub.settings.allow_service_send and principal.has_role("service")
        if not (principal.has_role("admin") or service):
            raise AuthError(
                "insufficient_role",
                "posting to a room over HTTP needs the 'admin' (or 'service') role",
            )
        body = await decode_body(PostMessage)
        try:
            parse_room(room)
            _check_message(hub, body.message)
        except Rejected as exc:
            raise ApiError(422, exc.code, exc.message) from None
        message = NewMessage(
            id=message_id(),
            room=room,
            user_id=principal.subject,
            user_name=principal.name,
            message=body.message,
            kind=body.kind,
            ts=hub._parts.clock.time(),
        )
        posted = await hub.post(room, _encoder.encode(message))
        answer = PostedMessage(
            room=posted.room, epoch=posted.epoch, offset=posted.offset, id=message.id
        )
        return json_response(answer, 201)

    @routes.get("/api/rooms/<path:room>/presence")
    @document_response(PresenceFrame)
    @document_errors(401, 403, 422)
    @require_auth()
    async def presence(room: str) -> Response:
        hub = _hub()
        try:
            await check_access(current_principal(), room, None, hub.project_policy)
        except Rejected as exc:
            raise ApiError(403 if exc.code == "forbidden" else 422, exc.code, exc.message) from None
        members = await hub.presence(room)
        return json_response(PresenceFrame(room=room, members=members))

    @routes.get("/api/rooms")
    @document_response(NodeRooms)
    @document_errors(401, 403)
    @require_auth(role="admin")
    async def rooms() -> Response:
        return json_response(NodeRooms(node=_hub()._parts.node_id, rooms=await _hub().rooms()))

    return routes
