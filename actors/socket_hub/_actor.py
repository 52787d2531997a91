"""The hub actor: every connection of this node, every room membership, delivery in order.

It never waits on Redis: opening a room (subscribe, register presence, read
the position), replaying a history and appending frames run in tasks of its
own that report back as messages, and commands that wait on them carry a
``reply`` future (see :mod:`._messages`). Local delivery queues the same
encoded bytes on every member's session, which never waits either.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, assert_never

import anyio
import msgspec

from runtime import Actor, CloseCode, Gap, RedisUnavailable, Rejected

from ._frames import Reconnect, RoomJoined, TokenExpiring, UserJoinedRoom, UserLeftRoom, Welcome
from ._history import echo_prefix, parse_remote
from ._messages import (
    Broadcast,
    Connect,
    Disconnect,
    JoinRoom,
    LeaveRoom,
    ListRooms,
    Posted,
    RoomInfo,
    RoomPresence,
    SendToRoom,
    Stopping,
    _Appended,
    _GapTimeout,
    _Refilled,
    _Relayed,
    _Remote,
    _Replayed,
    _RoomOpened,
    _Sweep,
)
from ._room import Room

if TYPE_CHECKING:
    import asyncio

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._connection import Connection
    from ._frames import PresenceMember
    from ._history import Appended, Position
    from ._messages import HubMessage
    from ._parts import HubParts

__all__ = ["BROADCAST_CHANNEL", "HubActor"]

logger = logging.getLogger("actors.socket_hub")

BROADCAST_CHANNEL = "hub.broadcast"
_encoder = msgspec.json.Encoder()
_APPEND_BATCH = 256
_SWEEP_SECONDS = 1.0
_REFILL_ATTEMPTS = 20
_REFILL_WAIT_SECONDS = 10.0


def _encode(frame: object) -> str:
    """A frame as the text of a text frame."""
    return _encoder.encode(frame).decode()


def _settle(future: asyncio.Future[Any], result: object = None) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class HubActor(Actor["HubMessage"]):
    """Owns the node's connections and rooms; see the package docstring for the protocol."""

    def __init__(self, parts: HubParts) -> None:
        self._parts = parts
        self._settings = parts.settings
        self._counters = parts.counters
        self._rooms: dict[str, Room] = {}
        self._users: dict[str, dict[Connection, None]] = {}
        self._presence = parts.local
        self._appends: MemoryObjectSendStream[SendToRoom] | None = None
        self._stopping = False
        self._echo = echo_prefix(parts.node_id)  # what this node's own publishes start with

    # -- life cycle --------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Close what an earlier incarnation left; start the sweeper (and, with Redis, the
        appender and the broadcast reader)."""
        self._parts.ref = self.self_ref
        left = list(self._parts.connections)
        self._parts.connections.clear()
        for connection in left:  # their rooms died with the incarnation: reconnect and recover
            connection.session.close(CloseCode.TRY_AGAIN_LATER, "hub_restarted")
        if self._presence.rooms():  # an earlier incarnation's members: gone with it
            self._presence.clear()
            self.start_soon(self._parts.presence.vacate_all)
        self.start_soon(self._sweep_loop)
        self.start_soon(self._watch_stopping)
        if self._parts.distributed:
            send, receive = anyio.create_memory_object_stream[SendToRoom](
                self._settings.outbox_size * 4
            )
            self._appends = send
            self.start_soon(self._append_loop, receive)
            self.start_soon(self._broadcast_reader)

    async def on_stop(self) -> None:
        """Close every connection: without the hub they can no longer be served."""
        if self._appends is not None:
            self._appends.close()
        for connection in list(self._parts.connections):
            connection.session.close(CloseCode.TRY_AGAIN_LATER, "hub_restarted")
        self._parts.connections.clear()

    async def handle(self, message: HubMessage) -> Any:
        """Dispatch one message (see :mod:`._messages`)."""
        match message:
            case SendToRoom():
                await self._send(message)
            case _Remote(room=room, item=item):
                self._remote(room, item)
            case _Appended(sends=sends, appended=appended):
                self._appended(sends, appended)
            case JoinRoom():
                self._join(message)
            case LeaveRoom(connection=connection, room=room):
                self._leave(connection, room, explicit=True)
            case Connect(connection=connection, reply=reply):
                self._connect(connection, reply)
            case Disconnect(connection=connection):
                self._disconnect(connection)
            case Broadcast(frame=frame):
                return self._broadcast(frame, publish=True)
            case _Relayed(frame=frame):
                self._broadcast(frame, publish=False)
            case RoomPresence(room=room):
                return self._presence.members(room)
            case ListRooms():
                return self._room_infos()
            case Stopping():
                self._drain()
            case _RoomOpened(room=room, position=position, error=error):
                self._opened(room, position, error)
            case _Replayed():
                self._replayed(message)
            case _Refilled(room=room, position=position, frames=frames):
                self._refilled(room, position, frames)
            case _GapTimeout(room=room, waiting_for=waiting_for):
                self._gap_timeout(room, waiting_for)
            case _Sweep():
                self._sweep()
            case _:
                assert_never(message)

    # -- connections -------------------------------------------------------------------------

    def _connect(self, connection: Connection, reply: asyncio.Future[None]) -> None:
        if self._stopping:
            self._counters.refused_connections += 1
            _fail(reply, Rejected("node_stopping", "this node is shutting down; reconnect"))
            return
        mine = self._users.get(connection.user_id)
        if mine is not None and len(mine) >= self._settings.connections_per_user:
            self._counters.refused_connections += 1
            _fail(
                reply,
                Rejected(
                    "too_many_connections",
                    f"user {connection.user_id!r} already holds "
                    f"{self._settings.connections_per_user} connections on this node",
                ),
            )
            return
        self._users.setdefault(connection.user_id, {})[connection] = None
        self._parts.connections.add(connection)
        self._counters.connects += 1
        join = JoinRoom(connection=connection, room=connection.personal_room, reply=reply)
        self._join(join, welcome=True)

    def _disconnect(self, connection: Connection) -> None:
        if connection not in self._parts.connections:
            return
        self._parts.connections.discard(connection)
        self._counters.disconnects += 1
        for room in list(connection.rooms):
            self._leave(connection, room, explicit=False)
        mine = self._users.get(connection.user_id)
        if mine is not None:
            mine.pop(connection, None)
            if not mine:
                del self._users[connection.user_id]

    # -- joining and leaving -----------------------------------------------------------------

    def _join(self, join: JoinRoom, *, welcome: bool = False) -> None:
        connection, name = join.connection, join.room
        if connection not in self._parts.connections:
            _fail(join.reply, Rejected("not_connected", "the connection is closed"))
            return
        if name not in connection.rooms and len(connection.rooms) >= self._rooms_limit():
            _fail(
                join.reply,
                Rejected(
                    "too_many_rooms",
                    f"a connection may be in at most {self._settings.rooms_per_connection} rooms",
                ),
            )
            return
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name)
            self._open(room)
        if not room.opened:
            room.waiting.append((join, welcome))
            return
        self._admit(room, join, welcome=welcome)

    def _rooms_limit(self) -> int:
        return self._settings.rooms_per_connection + 1  # the personal room does not count

    def _admit(self, room: Room, join: JoinRoom, *, welcome: bool) -> None:
        connection = join.connection
        if connection not in self._parts.connections:
            _settle(join.reply)  # it left while the room opened
            self._close_if_empty(room)
            return
        if room.name not in connection.rooms:
            connection.rooms[room.name] = None
            self._counters.joins += 1
            count = self._presence.join(room.name, connection.user_id, connection.user_name)
            if count == 1:
                self._announce(
                    room,
                    UserJoinedRoom(
                        room=room.name, user_id=connection.user_id, user_name=connection.user_name
                    ),
                )
            self._parts.presence.changed(room.name, connection.user_id, connection.user_name, count)
        if join.since is None:
            if connection not in room.members and connection not in room.catching_up:
                room.members[connection] = None
            if welcome:
                connection.session.send_encoded(
                    _encode(
                        Welcome(
                            user_id=connection.user_id,
                            user_name=connection.user_name,
                            room=room.name,
                            epoch=room.epoch,
                            offset=room.delivered,
                            expires_at=connection.principal.expires_at,
                            connection_id=connection.id,
                        )
                    )
                )
            else:
                connection.session.send_encoded(
                    _encode(
                        RoomJoined(
                            room=room.name, epoch=room.epoch, offset=room.delivered, ref=join.ref
                        )
                    ),
                    priority=True,
                )
            _settle(join.reply)
            return
        room.members.pop(connection, None)
        room.lagging.pop(connection, None)
        room.catching_up.setdefault(connection, [])
        self._counters.replays += 1
        self.start_soon(self._replay, join)

    def _leave(self, connection: Connection, name: str, *, explicit: bool) -> None:
        if explicit and name == connection.personal_room:
            raise Rejected("personal_room", "a connection cannot leave its personal room")
        if name not in connection.rooms:
            if explicit:
                raise Rejected("not_in_room", f"you are not in room {name!r}")
            return
        del connection.rooms[name]
        self._counters.leaves += 1
        room = self._rooms.get(name)
        left = self._presence.leave(name, connection.user_id)
        self._parts.presence.changed(name, connection.user_id, connection.user_name, left)
        if room is None:
            return
        room.members.pop(connection, None)
        room.catching_up.pop(connection, None)
        room.lagging.pop(connection, None)
        if left == 0:
            self._announce(
                room,
                UserLeftRoom(room=name, user_id=connection.user_id, user_name=connection.user_name),
            )
        self._close_if_empty(room)

    def _announce(self, room: Room, frame: UserJoinedRoom | UserLeftRoom) -> None:
        if self._presence.users(room.name) > self._settings.presence_events_max_members:
            return  # a big room: each event would go to every member (ask for presence instead)
        data = _encoder.encode(frame)
        self._counters.deliveries += room.send_live(data)
        if self._parts.distributed:
            self.start_soon(self._publish_ephemeral, room.name, data)

    def _close_if_empty(self, room: Room) -> None:
        if not room.empty or not room.opened or room.waiting:
            return
        del self._rooms[room.name]
        if room.reader is not None:
            room.reader.cancel()
        if self._parts.distributed:
            self.start_soon(self._vacate, room.name)

    # -- opening rooms -----------------------------------------------------------------------

    def _open(self, room: Room) -> None:
        if self._parts.distributed:
            scope = anyio.CancelScope()
            room.reader = scope
            self.start_soon(self._read_room, room.name, scope)
        else:
            self.start_soon(self._open_locally, room.name)

    async def _open_locally(self, name: str) -> None:
        position = await self._parts.history.position(name)
        await self.self_ref.tell(_RoomOpened(room=name, position=position))

    async def _read_room(self, name: str, scope: anyio.CancelScope) -> None:
        """Subscribe, register, read the position, then forward the room's fanout traffic."""
        parts = self._parts
        tell = self.self_ref.tell
        with scope:
            channel = parts.keys.channel(name)
            async with parts.fanout.subscribe(
                channel, buffer_size=self._settings.outbox_size, skip_prefix=self._echo
            ) as sub:
                position: Position | None = None
                error: str | None = None
                try:
                    await parts.presence.room_occupied(name)
                    position = await parts.history.position(name)
                except RedisUnavailable as exc:
                    error = str(exc)
                await tell(_RoomOpened(room=name, position=position, error=error))
                async for item in sub:
                    await tell(_Remote(room=name, item=item))

    async def _vacate(self, name: str) -> None:
        try:
            await self._parts.presence.room_vacated(name)
        except RedisUnavailable as exc:
            logger.info("room %s: presence not cleared in Redis (%s); it expires", name, exc)

    def _opened(self, name: str, position: Position | None, error: str | None) -> None:
        room = self._rooms.get(name)
        if room is None or room.opened:
            return
        room.opened = True
        if position is not None:
            room.epoch, room.delivered = position.epoch, position.offset
        else:
            logger.warning("room %s opened without its history position: %s", name, error)
        waiting = room.pending
        room.pending = {}
        for offset in sorted(waiting):
            if offset > room.delivered:
                room.pending[offset] = waiting[offset]
        self._drain_pending(room)
        joins, room.waiting = room.waiting, []
        for join, welcome in joins:
            self._admit(room, join, welcome=welcome)
        self._close_if_empty(room)

    # -- replay ------------------------------------------------------------------------------

    async def _replay(self, join: JoinRoom) -> None:
        try:
            replay = await self._parts.history.replay(join.room, join.since or 0, join.epoch)
        except RedisUnavailable as exc:
            logger.info("room %s: replay failed (%s); the client resynchronises", join.room, exc)
            replay = None
        await self.self_ref.tell(_Replayed(join=join, replay=replay))

    def _replayed(self, message: _Replayed) -> None:
        join, replay = message.join, message.replay
        connection = join.connection
        room = self._rooms.get(join.room)
        buffer = room.catching_up.pop(connection, None) if room is not None else None
        if room is None or buffer is None:
            _settle(join.reply)
            return
        session = connection.session
        since = join.since or 0
        recovered = replay is not None and replay.recovered
        last = since
        if replay is not None and replay.recovered:
            for offset, frame in replay.frames:
                if offset > last:
                    session.send_encoded(frame.decode(), bounded=False)
                    last = offset
            last = max(last, replay.position.offset)
        else:
            self._counters.replays_unrecovered += 1
            last = room.delivered
        for offset, frame in buffer:
            if offset > last:
                session.send_encoded(frame.decode(), bounded=False)
                last = offset
        room.members[connection] = None
        if last > room.delivered:
            room.lagging[connection] = last
        session.send_encoded(
            _encode(
                RoomJoined(
                    room=room.name,
                    epoch=room.epoch,
                    offset=max(last, room.delivered),
                    recovered=recovered,
                    ref=join.ref,
                )
            ),
            priority=True,
        )
        _settle(join.reply)

    # -- sending -----------------------------------------------------------------------------

    async def _send(self, send: SendToRoom) -> None:
        if send.connection is not None and send.room not in send.connection.rooms:
            _fail(send.reply, Rejected("not_in_room", f"join room {send.room!r} before sending"))
            return
        self._counters.messages += 1
        if self._appends is not None:
            try:
                self._appends.send_nowait(send)
            except anyio.WouldBlock:
                _fail(send.reply, Rejected("busy", "too many messages waiting for Redis; retry"))
            return
        appended = await self._parts.history.append_many([(send.room, send.template)])
        self._appended([send], appended)

    async def _append_loop(self, receive: MemoryObjectReceiveStream[SendToRoom]) -> None:
        """Append queued sends to the history in batches (one round trip each)."""
        history, tell = self._parts.history, self.self_ref.tell
        async with receive:
            async for first in receive:
                batch = [first]
                while len(batch) < _APPEND_BATCH:
                    try:
                        batch.append(receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                try:
                    appended: list[Appended] | None = await history.append_many(
                        [(send.room, send.template) for send in batch]
                    )
                except RedisUnavailable as exc:
                    logger.info("history append failed (%s): delivering on this node only", exc)
                    appended = None
                await tell(_Appended(sends=batch, appended=appended))

    def _appended(self, sends: list[SendToRoom], appended: list[Appended] | None) -> None:
        if appended is None:
            for send in sends:
                self._counters.degraded_sends += 1
                room = self._rooms.get(send.room)
                if room is not None:
                    self._counters.deliveries += room.send_live(send.template)
                _settle(send.reply, Posted(room=send.room, epoch="", offset=0))
            return
        for send, entry in zip(sends, appended, strict=True):
            room = self._rooms.get(entry.room)
            if room is not None:
                self._accept(room, entry.epoch, entry.offset, entry.frame)
            _settle(send.reply, Posted(room=entry.room, epoch=entry.epoch, offset=entry.offset))

    def _broadcast(self, frame: bytes, *, publish: bool) -> int:
        sent = 0
        text = frame.decode()
        for connection in self._parts.connections:
            if connection.session.send_encoded(text):
                sent += 1
        self._counters.deliveries += sent
        if publish and self._parts.distributed:
            self.start_soon(self._publish_broadcast, frame)
        return sent

    async def _publish_broadcast(self, frame: bytes) -> None:
        try:
            await self._parts.fanout.publish(
                BROADCAST_CHANNEL, self._parts.node_id.encode() + b"\n" + frame
            )
        except RedisUnavailable as exc:
            logger.info("broadcast reached this node only: %s", exc)

    async def _broadcast_reader(self) -> None:
        async with self._parts.fanout.subscribe(
            BROADCAST_CHANNEL, skip_prefix=self._echo
        ) as events:
            async for item in events:
                if isinstance(item, bytes):
                    _, _, frame = item.partition(b"\n")
                    await self.self_ref.tell(_Relayed(frame=frame))  # another node's broadcast

    async def _publish_ephemeral(self, room: str, frame: bytes) -> None:
        try:
            await self._parts.history.publish(room, frame)
        except RedisUnavailable as exc:
            logger.debug("presence event for %s stayed on this node: %s", room, exc)

    # -- remote frames, order and gaps -------------------------------------------------------

    def _remote(self, name: str, item: bytes | Gap) -> None:
        room = self._rooms.get(name)
        if room is None:
            return
        if isinstance(item, Gap):
            self._counters.gaps += 1
            self._refill(room, reregister=True)
            return
        try:
            remote = parse_remote(item)
        except ValueError:
            logger.warning("room %s: a fanout payload of %d bytes did not parse", name, len(item))
            return
        self._counters.remote_frames += 1
        if remote.offset is None:
            self._counters.deliveries += room.send_live(remote.frame)
            return
        self._accept(room, remote.epoch or "", remote.offset, remote.frame)

    def _accept(self, room: Room, epoch: str, offset: int, frame: bytes) -> None:
        if not room.opened:
            room.pending[offset] = frame
            return
        if epoch != room.epoch:
            if offset <= 1 or not room.epoch:
                self._reset_epoch(room, epoch, offset - 1)
            else:  # a frame of an epoch we did not see start: read the history's position
                room.pending[offset] = frame
                self._refill(room)
                return
        before = room.delivered
        _, duplicate = room.accept(offset, frame)
        if duplicate:
            self._counters.duplicates += 1
        self._counters.deliveries += (room.delivered - before) * len(room.members)
        if room.pending and not room.gap_armed and not room.refilling:
            room.gap_armed = True
            self.start_soon(self._gap_timer, room.name, room.delivered + 1)

    def _reset_epoch(self, room: Room, epoch: str, offset: int) -> None:
        """The room's history was lost (a Redis restarted empty): members must resynchronise."""
        if room.epoch:
            self._counters.epoch_changes += 1
            logger.warning(
                "room %s: history epoch changed from %s to %s (Redis lost it); members resync",
                room.name,
                room.epoch,
                epoch,
            )
        room.epoch, room.delivered = epoch, offset
        room.pending = {o: f for o, f in room.pending.items() if o > offset}
        room.lagging.clear()
        frame = _encoder.encode(
            RoomJoined(room=room.name, epoch=epoch, offset=offset, recovered=False)
        )
        room.send_live(frame)

    def _drain_pending(self, room: Room) -> None:
        if room.pending and room.delivered + 1 in room.pending:
            offset = room.delivered + 1
            self._accept(room, room.epoch, offset, room.pending.pop(offset))

    async def _gap_timer(self, name: str, waiting_for: int) -> None:
        await self.clock.sleep(self._settings.gap_wait_seconds)
        await self.self_ref.tell(_GapTimeout(room=name, waiting_for=waiting_for))

    def _gap_timeout(self, name: str, waiting_for: int) -> None:
        room = self._rooms.get(name)
        if room is None:
            return
        room.gap_armed = False
        if room.delivered >= waiting_for or not room.pending:
            if room.pending:  # another gap behind the one that filled
                room.gap_armed = True
                self.start_soon(self._gap_timer, name, room.delivered + 1)
            return
        self._refill(room)

    def _refill(self, room: Room, *, reregister: bool = False) -> None:
        """Read what the room may have missed from the history (one read at a time).

        After a fanout gap (a reconnect) the node first registers in the room's
        node set again (Redis may have come back empty), then reads the
        position: whatever is appended after the registration is published to
        this node, whatever before is covered by the read.
        """
        if not self._parts.distributed:
            return
        if room.refilling:
            room.refill_again = True
            room.reregister = room.reregister or reregister
            return
        room.refilling = True
        self._counters.refills += 1
        self.start_soon(self._read_missing, room.name, room.delivered, reregister)

    async def _read_missing(self, name: str, after: int, reregister: bool) -> None:
        parts = self._parts
        position: Position | None = None
        frames: list[tuple[int, bytes]] = []
        for attempt in range(1, _REFILL_ATTEMPTS + 1):
            try:
                if reregister:
                    await parts.presence.room_occupied(name)
                position = await parts.history.position(name)
                if position.offset > after:
                    frames = await parts.history.read(name, after, position.offset)
                break
            except RedisUnavailable as exc:
                position = None
                if parts.redis is None or attempt == _REFILL_ATTEMPTS:
                    logger.warning("room %s: refill from history failed: %s", name, exc)
                    break
                with self.clock.move_on_after(_REFILL_WAIT_SECONDS):
                    await parts.redis.wait_until(True)
                await self.clock.sleep(0.05 * attempt)
        await self.self_ref.tell(_Refilled(room=name, position=position, frames=frames))

    def _refilled(
        self, name: str, position: Position | None, frames: list[tuple[int, bytes]]
    ) -> None:
        room = self._rooms.get(name)
        if room is None:
            return
        room.refilling = False
        if room.refill_again:
            room.refill_again, reregister, room.reregister = False, room.reregister, False
            self._refill(room, reregister=reregister)
        if position is None:
            return  # Redis stayed away; the next gap (its reconnect) refills
        if position.epoch != room.epoch:
            self._reset_epoch(room, position.epoch, position.offset)
            return
        for offset, frame in frames:
            self._accept(room, room.epoch, offset, frame)
        if room.pending and min(room.pending) > room.delivered + 1:
            lost = room.skip_to_pending()  # the history no longer holds them
            self._counters.lost += lost
            logger.warning("room %s: %d frame(s) lost (trimmed before refill)", name, lost)

    # -- timers: idle connections, expiring tokens, shutdown ---------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await self.clock.sleep(_SWEEP_SECONDS)
            await self.self_ref.tell(_Sweep())

    def _sweep(self) -> None:
        now = self.clock.time()
        idle = self._settings.idle_timeout_seconds
        warn = self._settings.expiry_warning_seconds
        for connection in list(self._parts.connections):
            if now - connection.last_seen > idle:
                self._counters.idle_closes += 1
                connection.session.close(CloseCode.GOING_AWAY, "idle_timeout")
                continue
            expires_at = connection.principal.expires_at
            if expires_at <= now:
                connection.session.close(CloseCode.UNAUTHORIZED, "token_expired")
                continue
            if not connection.warned_expiry and expires_at - now <= warn:
                connection.warned_expiry = True
                self._counters.expiry_warnings += 1
                connection.session.send_encoded(
                    _encode(TokenExpiring(expires_at=expires_at)), priority=True
                )

    async def _watch_stopping(self) -> None:
        await self._parts.stopping.wait()
        await self.self_ref.tell(Stopping())

    def _drain(self) -> None:
        """Tell every client where to resume and when, then close it with 1001."""
        self._stopping = True
        most = self._settings.reconnect_max_ms
        for connection in list(self._parts.connections):
            positions: dict[str, tuple[str, int]] = {}
            for name in connection.rooms:
                room = self._rooms.get(name)
                if room is not None and connection in room.members:
                    positions[name] = (room.epoch, room.delivered)
            frame = Reconnect(after_ms=random.randint(0, most), positions=positions)
            connection.session.send_encoded(_encode(frame), priority=True)
            connection.session.close(CloseCode.GOING_AWAY, "node_stopping")

    # -- queries -----------------------------------------------------------------------------

    def _room_infos(self) -> list[RoomInfo]:
        return [
            RoomInfo(
                room=name,
                users=self._presence.users(name),
                connections=room.connections(),
                epoch=room.epoch,
                offset=room.delivered,
            )
            for name, room in sorted(self._rooms.items())
        ]

    def local_members(self, room: str) -> list[PresenceMember]:
        """This node's members of ``room`` (for tests; others ask with ``RoomPresence``)."""
        return self._presence.members(room)
