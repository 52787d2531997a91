"""Who is in a room: this node's incremental counts, and the cluster view behind a Protocol.

:class:`LocalPresence` is the node's own tally, owned by the hub actor (one per
node, pure and synchronous). Every count it answers is kept incrementally: a
join or a leave is O(1), and ``users``/``connections``/``rooms`` never scan.
A room whose last user left is forgotten at once (no state is left behind).

:class:`PresenceStore` is the cluster view the hub writes its changes to and
reads merged members from. :class:`MemoryPresence` is the twin for a node
without Redis (the node's own tally is the whole cluster);
:class:`~._presence_redis.RedisPresence` keeps every node's members in Redis,
refreshed by heartbeats, so a node that died disappears within two heartbeats.

The hub's calls, in order, for one connection of ``user`` joining and leaving
``room``::

    count = local.join(room, user, name)        # 1: announce user_joined_room
    if local.connections(room) == 1:            # the room is new on this node
        await store.room_occupied(room)         # registered before it returns
    store.changed(room, user, name, count)      # batched, never waits
    ...
    count = local.leave(room, user)             # 0: announce user_left_room
    store.changed(room, user, name, count)
    if local.users(room) == 0:
        await store.room_vacated(room)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import anyio
import msgspec

from ._frames import PresenceMember

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.abc import TaskStatus

__all__ = ["LocalPresence", "MemoryPresence", "PresenceStatistics", "PresenceStore"]


class _Member:
    """One user's connections in one room of this node."""

    __slots__ = ("connections", "user_name")

    def __init__(self, user_name: str | None) -> None:
        self.user_name = user_name
        self.connections = 0


class _Room:
    """One room of this node: its users and the sum of their connections."""

    __slots__ = ("connections", "members")

    def __init__(self) -> None:
        self.members: dict[str, _Member] = {}
        self.connections = 0


class LocalPresence:
    """This node's members of every room, counted incrementally (no scans).

    Pure and synchronous: the hub actor owns it and calls it from its handler
    loop only. A user may hold several connections in a room; :meth:`join` and
    :meth:`leave` return the user's connection count after the change, so the
    hub announces ``user_joined_room`` on 1 after a join and
    ``user_left_room`` on 0 after a leave. A user's name is the last one a
    join gave (``None`` keeps the one known).
    """

    __slots__ = ("_memberships", "_rooms")

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}
        self._memberships = 0

    def clear(self) -> None:
        """Forget every member (a restarted hub starts from no connections)."""
        self._rooms.clear()
        self._memberships = 0

    def join(self, room: str, user_id: str, user_name: str | None) -> int:
        """Count one more connection of ``user_id`` in ``room``; return the user's count now."""
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _Room()
        member = state.members.get(user_id)
        if member is None:
            member = state.members[user_id] = _Member(user_name)
            self._memberships += 1
        elif user_name is not None:
            member.user_name = user_name
        member.connections += 1
        state.connections += 1
        return member.connections

    def leave(self, room: str, user_id: str) -> int:
        """Count one connection of ``user_id`` less in ``room``; return the user's count now.

        At 0 the user is forgotten, and the room too once it has no user left.

        Raises:
            KeyError: the user has no connection in the room (a leave without its join).
        """
        state = self._rooms.get(room)
        member = None if state is None else state.members.get(user_id)
        if state is None or member is None:
            raise KeyError(f"user {user_id!r} has no connection in room {room!r} on this node")
        member.connections -= 1
        state.connections -= 1
        if member.connections == 0:
            del state.members[user_id]
            self._memberships -= 1
            if not state.members:
                del self._rooms[room]
        return member.connections

    def member(self, room: str, user_id: str) -> PresenceMember | None:
        """``user_id`` in ``room`` on this node (name and connections), or ``None``."""
        state = self._rooms.get(room)
        member = None if state is None else state.members.get(user_id)
        if member is None:
            return None
        return PresenceMember(
            user_id=user_id, user_name=member.user_name, connections=member.connections
        )

    def members(self, room: str) -> list[PresenceMember]:
        """This node's members of ``room``, in the order they joined."""
        state = self._rooms.get(room)
        if state is None:
            return []
        return [
            PresenceMember(
                user_id=user_id, user_name=member.user_name, connections=member.connections
            )
            for user_id, member in state.members.items()
        ]

    def users(self, room: str) -> int:
        """How many distinct users ``room`` has on this node (O(1))."""
        state = self._rooms.get(room)
        return 0 if state is None else len(state.members)

    def connections(self, room: str) -> int:
        """How many connections ``room`` has on this node, all users together (O(1))."""
        state = self._rooms.get(room)
        return 0 if state is None else state.connections

    def rooms(self) -> int:
        """How many rooms have members on this node (O(1))."""
        return len(self._rooms)

    def memberships(self) -> int:
        """How many (room, user) pairs this node holds, every room together (O(1))."""
        return self._memberships

    def room_names(self) -> Iterator[str]:
        """The rooms with members on this node (a snapshot: joins and leaves may follow)."""
        return iter(tuple(self._rooms))

    def __repr__(self) -> str:
        return f"LocalPresence(rooms={len(self._rooms)}, memberships={self._memberships})"


class PresenceStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """What a presence store counts, for ``statistics()`` and metrics.

    Attributes:
        redis: whether the store keeps the cluster view in Redis.
        rooms: rooms this node has members in (registered in the cluster view).
        members: (room, user) pairs this node publishes.
        pending: (room, user) changes waiting for the writer (coalesced, bounded).
        heartbeats: heartbeats that refreshed every room of this node.
        heartbeat_failures: heartbeats that could not reach Redis.
        heartbeat_round_trips: Redis round trips the heartbeats took, all together (their
            refreshes, and the repairs and full rewrites they made).
        writes: batches of changes the writer wrote (one round trip each).
        written: (room, user) changes those batches carried.
        write_failures: batches that could not reach Redis (kept, and written later).
        repairs: rooms rewritten whole because Redis had lost them (restart, expiry).
        resyncs: full rewrites of this node's presence after an outage.
        deferred_vacates: rooms left during an outage whose removal from Redis waits.
        vacates_dropped: deferred removals given up past their bound (those entries
            expire by themselves within two heartbeats).
    """

    redis: bool
    rooms: int
    members: int
    pending: int = 0
    heartbeats: int = 0
    heartbeat_failures: int = 0
    heartbeat_round_trips: int = 0
    writes: int = 0
    written: int = 0
    write_failures: int = 0
    repairs: int = 0
    resyncs: int = 0
    deferred_vacates: int = 0
    vacates_dropped: int = 0


class PresenceStore(Protocol):
    """The cluster view of presence: this node writes its members, and reads everyone's."""

    async def room_occupied(self, room: str) -> None:
        """This node now has members in ``room``: registered in the cluster view on return.

        Raises:
            runtime.RedisUnavailable: Redis could not be reached; the room stays
                tracked and is registered by the first heartbeat after Redis returns.
        """
        ...

    async def room_vacated(self, room: str) -> None:
        """This node has no member left in ``room``: its entries leave the cluster view.

        It never raises for Redis: while Redis cannot be reached the removal waits
        for it, and the entries expire within two heartbeats anyway.
        """
        ...

    async def vacate_all(self) -> None:
        """Take this node out of every room: for a hub that (re)starts with an empty tally."""
        ...

    def changed(self, room: str, user_id: str, user_name: str | None, connections: int) -> None:
        """This node's count for a user in a room is now ``connections`` (0: gone); never waits."""
        ...

    async def members(self, room: str) -> list[PresenceMember]:
        """The members of ``room`` on every live node, connections summed per user.

        Raises:
            runtime.RedisUnavailable: Redis could not be reached (fall back to local members).
        """
        ...

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The store's background work (heartbeats, the writer): a supervised service."""
        ...

    def statistics(self) -> PresenceStatistics:
        """A snapshot of the store's counters."""
        ...


class MemoryPresence:
    """:class:`PresenceStore` for a node without Redis: the node's own tally is the cluster.

    It reads the hub's :class:`LocalPresence` (the same object the hub updates),
    so there is nothing to write: the writes are no-ops and :meth:`run` only waits.
    """

    __slots__ = ("_local",)

    def __init__(self, local: LocalPresence) -> None:
        self._local = local

    async def room_occupied(self, room: str) -> None:
        """Nothing to register: the node's tally already holds the room."""
        await anyio.lowlevel.checkpoint()

    async def room_vacated(self, room: str) -> None:
        """Nothing to remove: the node's tally already forgot the room."""
        await anyio.lowlevel.checkpoint()

    async def vacate_all(self) -> None:
        """Nothing to remove: the store holds nothing but the tally it reads."""
        await anyio.lowlevel.checkpoint()

    def changed(self, room: str, user_id: str, user_name: str | None, connections: int) -> None:
        """Nothing to write: the node's tally already holds the change."""

    async def members(self, room: str) -> list[PresenceMember]:
        """The node's members of ``room`` (there is no other node)."""
        await anyio.lowlevel.checkpoint()
        return self._local.members(room)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Report started, then wait until cancelled (there is no background work)."""
        task_status.started()
        await anyio.sleep_forever()

    def statistics(self) -> PresenceStatistics:
        """The node's rooms and (room, user) pairs; nothing else happens here."""
        return PresenceStatistics(
            redis=False, rooms=self._local.rooms(), members=self._local.memberships()
        )

    def __repr__(self) -> str:
        return f"MemoryPresence({self._local!r})"
