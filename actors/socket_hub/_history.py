"""INTERIM (replaced by the hub-history branch): the memory history and the shared types."""

from __future__ import annotations

import collections
import secrets
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from runtime import Clock

    from ._settings import HubSettings

__all__ = [
    "Appended",
    "MemoryHistory",
    "Position",
    "RemoteFrame",
    "Replay",
    "RoomHistory",
    "parse_remote",
    "splice_offset",
]


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """A room's epoch and last offset."""

    epoch: str
    offset: int


class Appended(msgspec.Struct, frozen=True, kw_only=True):
    """Where an appended frame landed, and the frame with its offset."""

    room: str
    epoch: str
    offset: int
    frame: bytes


class Replay(msgspec.Struct, frozen=True, kw_only=True):
    """The frames after ``since``, and whether they are all of them."""

    position: Position
    frames: list[tuple[int, bytes]]
    recovered: bool


class RemoteFrame(msgspec.Struct, frozen=True, kw_only=True):
    """A frame from the fanout: its epoch and offset (``None``: ephemeral)."""

    epoch: str | None
    offset: int | None
    frame: bytes


def splice_offset(template: bytes, offset: int) -> bytes:
    """Put ``"offset": offset`` first into the JSON object ``template``."""
    return b'{"offset":%d,' % offset + template[1:]


def parse_remote(data: bytes) -> RemoteFrame:
    """Decode a fanout payload ``epoch\\noffset\\nframe``."""
    epoch, _, rest = data.partition(b"\n")
    offset, _, frame = rest.partition(b"\n")
    if not frame.startswith(b"{"):
        raise ValueError("not a hub fanout payload")
    return RemoteFrame(
        epoch=epoch.decode() or None, offset=int(offset) if offset else None, frame=frame
    )


class RoomHistory(Protocol):
    """The rooms' history."""

    async def append_many(self, items: Sequence[tuple[str, bytes]]) -> list[Appended]:
        """Append frames."""
        ...

    async def publish(self, room: str, frame: bytes) -> None:
        """Publish an ephemeral frame."""
        ...

    async def position(self, room: str) -> Position:
        """The room's position."""
        ...

    async def replay(self, room: str, since: int, epoch: str | None) -> Replay:
        """Frames after ``since``."""
        ...

    async def read(self, room: str, after: int, until: int) -> list[tuple[int, bytes]]:
        """Frames in ``(after, until]``."""
        ...


class _Ring:
    def __init__(self, size: int) -> None:
        self.epoch = secrets.token_hex(8)
        self.offset = 0
        self.frames: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=size)


class MemoryHistory:
    """Rings in memory."""

    def __init__(self, settings: HubSettings, clock: Clock) -> None:
        self._size = settings.history_size
        self._rings: dict[str, _Ring] = {}

    def _ring(self, room: str) -> _Ring:
        ring = self._rings.get(room)
        if ring is None:
            ring = self._rings[room] = _Ring(self._size)
        return ring

    async def append_many(self, items: Sequence[tuple[str, bytes]]) -> list[Appended]:
        """Append frames."""
        out = []
        for room, template in items:
            ring = self._ring(room)
            ring.offset += 1
            frame = splice_offset(template, ring.offset)
            ring.frames.append((ring.offset, frame))
            out.append(Appended(room=room, epoch=ring.epoch, offset=ring.offset, frame=frame))
        return out

    async def publish(self, room: str, frame: bytes) -> None:
        """Nothing to do on one node."""

    async def position(self, room: str) -> Position:
        """The room's position."""
        ring = self._ring(room)
        return Position(epoch=ring.epoch, offset=ring.offset)

    async def replay(self, room: str, since: int, epoch: str | None) -> Replay:
        """Frames after ``since``."""
        ring = self._ring(room)
        position = Position(epoch=ring.epoch, offset=ring.offset)
        first = ring.frames[0][0] if ring.frames else ring.offset + 1
        ok = (epoch is None or epoch == ring.epoch) and since <= ring.offset and first <= since + 1
        if not ok:
            return Replay(position=position, frames=[], recovered=False)
        return Replay(
            position=position, frames=[f for f in ring.frames if f[0] > since], recovered=True
        )

    async def read(self, room: str, after: int, until: int) -> list[tuple[int, bytes]]:
        """Frames in ``(after, until]``."""
        return [f for f in self._ring(room).frames if after < f[0] <= until]
