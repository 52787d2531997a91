"""INTERIM (replaced by the hub-presence branch): local presence and the memory store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import anyio

from ._frames import PresenceMember

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.abc import TaskStatus

__all__ = ["LocalPresence", "MemoryPresence", "PresenceStore"]


class LocalPresence:
    """This node's users per room."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, tuple[str | None, int]]] = {}

    def join(self, room: str, user_id: str, user_name: str | None) -> int:
        """Count a connection of ``user_id`` into ``room``; returns the user's count."""
        users = self._rooms.setdefault(room, {})
        count = users.get(user_id, (user_name, 0))[1] + 1
        users[user_id] = (user_name, count)
        return count

    def leave(self, room: str, user_id: str) -> int:
        """Count one out; returns what is left."""
        users = self._rooms.get(room)
        if users is None or user_id not in users:
            return 0
        name, count = users[user_id]
        left = count - 1
        users[user_id] = (name, left)
        if left <= 0:
            del users[user_id]
            if not users:
                del self._rooms[room]
        return max(left, 0)

    def members(self, room: str) -> list[PresenceMember]:
        """This node's members."""
        return [
            PresenceMember(user_id=u, user_name=e[0], connections=e[1])
            for u, e in self._rooms.get(room, {}).items()
        ]

    def users(self, room: str) -> int:
        """Users in ``room``."""
        return len(self._rooms.get(room, {}))

    def rooms(self) -> int:
        """Rooms with users."""
        return len(self._rooms)

    def room_names(self) -> Iterator[str]:
        """Rooms with users."""
        return iter(self._rooms)


class PresenceStore(Protocol):
    """The cluster's presence."""

    async def room_occupied(self, room: str) -> None:
        """Register."""
        ...

    async def room_vacated(self, room: str) -> None:
        """Unregister."""
        ...

    def changed(self, room: str, user_id: str, user_name: str | None, connections: int) -> None:
        """Count change."""
        ...

    async def members(self, room: str) -> list[PresenceMember]:
        """Members across nodes."""
        ...

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat."""
        ...


class MemoryPresence:
    """One node: its own presence."""

    def __init__(self, local: LocalPresence | None = None) -> None:
        self._members: dict[str, dict[str, PresenceMember]] = {}

    async def room_occupied(self, room: str) -> None:
        """Nothing."""

    async def room_vacated(self, room: str) -> None:
        """Nothing."""

    def changed(self, room: str, user_id: str, user_name: str | None, connections: int) -> None:
        """Mirror."""
        users = self._members.setdefault(room, {})
        if connections:
            users[user_id] = PresenceMember(
                user_id=user_id, user_name=user_name, connections=connections
            )
        else:
            users.pop(user_id, None)
            if not users:
                del self._members[room]

    async def members(self, room: str) -> list[PresenceMember]:
        """Members."""
        return list(self._members.get(room, {}).values())

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Nothing to beat."""
        task_status.started()
        await anyio.sleep_forever()
