"""The hub client's memory of each room: its epoch, the last offset seen, and deduplication.

:class:`RoomTracker` decides, frame by frame, what the application gets:

* a ``new_message`` or ``task_progress`` whose offset is at or below the
  room's last offset was seen already (a replay overlapping live traffic, or
  a failover node replaying what the old one delivered): it is dropped and
  counted in ``duplicates``;
* while a rejoin with ``since`` is under way (:meth:`begin_recovery`), a frame
  that skips ahead of the last offset is held back until the ``room_joined``
  answer, so live frames that overtake the replay are delivered after it, in
  offset order; a frame that skips ahead otherwise is delivered and counted
  in ``gaps`` (the personal room's coalesced ``task_progress`` skips offsets
  on purpose);
* frames of rooms the client does not track are delivered as they are.

``room_joined`` sets the room's position: a successful recovery in the same
epoch keeps the last offset the client itself saw; a new epoch (the history
was lost) starts from the offset the server gives.
"""

from __future__ import annotations

from typing import NamedTuple

from ._frames import NewMessage, RoomJoined, TaskProgress

__all__ = ["OffsetFrame", "RoomPosition", "RoomTracker"]

OffsetFrame = NewMessage | TaskProgress
"""The frames that carry a room offset and live in a room's history."""

_HOLD_LIMIT = 100_000  # the longest history a hub keeps (HubSettings.history_size's bound)


class RoomPosition(NamedTuple):
    """Where the client is in one room: the history's epoch and the last offset seen."""

    epoch: str
    offset: int


class RoomTracker:
    """Positions, deduplication and replay ordering for every room a client is in."""

    def __init__(self, *, hold_limit: int = _HOLD_LIMIT) -> None:
        self._positions: dict[str, RoomPosition] = {}
        self._held: dict[str, list[OffsetFrame]] = {}
        self._hold_limit = hold_limit
        self.duplicates = 0
        """Frames dropped because their offset was seen already."""
        self.gaps = 0
        """Frames delivered that skipped ahead of the room's last offset."""

    @property
    def positions(self) -> dict[str, tuple[str, int]]:
        """A copy of every room's ``(epoch, last offset seen)``."""
        return {room: (pos.epoch, pos.offset) for room, pos in self._positions.items()}

    def position(self, room: str) -> RoomPosition | None:
        """The position of ``room``, or ``None`` when the client has none."""
        return self._positions.get(room)

    def set_position(self, room: str, epoch: str, offset: int) -> None:
        """Start tracking ``room`` at ``(epoch, offset)`` (e.g. from ``welcome``)."""
        self._positions[room] = RoomPosition(epoch, offset)

    def forget(self, room: str) -> None:
        """Stop tracking ``room`` (left, or joined afresh without recovery)."""
        self._positions.pop(room, None)
        self._held.pop(room, None)

    def recovering(self, room: str) -> bool:
        """Whether a rejoin of ``room`` with ``since`` awaits its answer."""
        return room in self._held

    def begin_recovery(self, room: str) -> None:
        """A ``join_room`` with ``since`` is about to be sent: hold frames that skip ahead."""
        if room in self._positions:
            self._held.setdefault(room, [])

    def accept(self, frame: OffsetFrame) -> list[OffsetFrame]:
        """The frames to deliver now that ``frame`` arrived (none, it, or it after nothing)."""
        position = self._positions.get(frame.room)
        if position is None:
            return [frame]
        if frame.offset <= position.offset:
            self.duplicates += 1
            return []
        held = self._held.get(frame.room)
        skips = frame.offset > position.offset + 1
        if held is not None and skips and len(held) < self._hold_limit:
            held.append(frame)
            return []
        if skips:
            self.gaps += 1
        self._positions[frame.room] = RoomPosition(position.epoch, frame.offset)
        return [frame]

    def joined(self, frame: RoomJoined) -> list[OffsetFrame]:
        """Take ``room_joined`` as the room's position; return the held frames to deliver now."""
        held = self._held.pop(frame.room, [])
        position = self._positions.get(frame.room)
        if position is not None and position.epoch == frame.epoch:
            last = position.offset if frame.recovered else max(position.offset, frame.offset)
        else:
            last = frame.offset
        self._positions[frame.room] = RoomPosition(frame.epoch, last)
        return self._release(frame.room, held)

    def abandon_recovery(self, room: str) -> list[OffsetFrame]:
        """The rejoin of ``room`` was refused: deliver what was held, in offset order."""
        return self._release(room, self._held.pop(room, []))

    def drop_recoveries(self) -> None:
        """The connection is gone: forget held frames (the next rejoin replays them)."""
        self._held.clear()

    def _release(self, room: str, held: list[OffsetFrame]) -> list[OffsetFrame]:
        released: list[OffsetFrame] = []
        for frame in sorted(held, key=lambda held_frame: held_frame.offset):
            released.extend(self.accept(frame))
        return released
