"""A room with members on this node: who is in it, and delivery in offset order.

A room delivers every frame of its history to its members exactly once and in
offset order, whatever order frames arrive in: this node's own appends come
back from the history, other nodes' frames from the fanout, refills from the
history again. :meth:`Room.accept` is the one way in:

* an offset at or below ``delivered`` is a duplicate and dropped;
* the next offset is delivered, then any that waited behind it;
* a later offset waits in ``pending`` (bounded) while the hub gives the
  fanout ``gap_wait_seconds`` to bring the missing ones, then reads them from
  the history (a publish skipped while this node was joining, a frame lost
  with a Redis reconnect).

Members joining with ``since`` are *catching up*: they receive nothing live
until their replay from the history is sent; what arrives meanwhile is
buffered for them and sent after the replay, without what the replay held.

Frames are delivered as the same bytes to every member (encode once).
Frames of ``task_progress`` in a personal room coalesce per task in each
member's outbox: a slow reader gets the latest progress, not every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    import anyio

    from ._connection import Connection
    from ._messages import JoinRoom

__all__ = ["Room"]

_TASK_PROGRESS = b'"type":"task_progress"'


class _TaskProbe(msgspec.Struct):
    task_id: str | None = None


_task_probe = msgspec.json.Decoder(_TaskProbe)


def coalesce_key(frame: bytes) -> tuple[str, str] | None:
    """``("task", task_id)`` for a ``task_progress`` frame, else ``None``."""
    if _TASK_PROGRESS not in frame[:64]:
        return None
    try:
        task_id = _task_probe.decode(frame).task_id
    except msgspec.DecodeError:
        return None
    return ("task", task_id) if task_id is not None else None


class Room:
    """One room's local state; only the hub actor touches it."""

    __slots__ = (
        "catching_up",
        "delivered",
        "epoch",
        "gap_armed",
        "kind",
        "lagging",
        "members",
        "name",
        "opened",
        "pending",
        "personal",
        "reader",
        "refill_again",
        "refilling",
        "reregister",
        "waiting",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind = name.partition(":")[0]
        self.personal = self.kind == "user"
        self.members: dict[Connection, None] = {}
        self.catching_up: dict[Connection, list[tuple[int, bytes]]] = {}
        self.lagging: dict[Connection, int] = {}  # member -> offset it already has up to
        self.pending: dict[int, bytes] = {}
        self.epoch = ""
        self.delivered = 0
        self.opened = False
        self.waiting: list[tuple[JoinRoom, bool]] = []  # joins (and welcome?) while opening
        self.reader: anyio.CancelScope | None = None  # the scope of its fanout reader (Redis)
        self.gap_armed = False
        self.refilling = False
        self.refill_again = False  # a gap came while a refill was in flight
        self.reregister = False

    def __repr__(self) -> str:
        return (
            f"Room({self.name!r}, members={len(self.members)}, epoch={self.epoch!r}, "
            f"delivered={self.delivered})"
        )

    @property
    def empty(self) -> bool:
        """No member, not even one catching up."""
        return not self.members and not self.catching_up

    def connections(self) -> int:
        """Members, including those catching up."""
        return len(self.members) + len(self.catching_up)

    def accept(self, offset: int, frame: bytes) -> tuple[int, bool]:
        """Take a frame of the history; returns ``(delivered frames, duplicate)``.

        Delivers it (and what waited behind it) when it is the next offset,
        keeps it in ``pending`` when it is ahead.
        """
        if offset <= self.delivered:
            return 0, True
        if offset != self.delivered + 1:
            self.pending[offset] = frame
            return 0, False
        self.deliver(offset, frame)
        count = 1
        pending = self.pending
        while pending:
            following = pending.pop(self.delivered + 1, None)
            if following is None:
                break
            self.deliver(self.delivered + 1, following)
            count += 1
        return count, False

    def skip_to_pending(self) -> int:
        """Give up on the missing offsets: deliver what waits, in order. Returns offsets lost."""
        lost = 0
        for offset in sorted(self.pending):
            lost += offset - self.delivered - 1
            self.deliver(offset, self.pending.pop(offset))
        return lost

    def deliver(self, offset: int, frame: bytes) -> None:
        """Send ``frame`` (offset ``offset``) to every member; buffer it for those catching up."""
        key = coalesce_key(frame) if self.personal else None
        text = frame.decode()  # once: every member gets the same text frame
        if self.lagging:
            for member in self.members:
                if self.lagging.get(member, 0) < offset:
                    member.session.send_encoded(text, coalesce=key)
            self.lagging = {m: at for m, at in self.lagging.items() if at > offset}
        elif key is None:
            for member in self.members:
                member.session.send_encoded(text)
        else:
            for member in self.members:
                member.session.send_encoded(text, coalesce=key)
        for buffer in self.catching_up.values():
            buffer.append((offset, frame))
        self.delivered = offset

    def send_live(self, frame: bytes) -> int:
        """Send a frame without an offset (presence events, degraded sends) to every member."""
        text = frame.decode()
        for member in self.members:
            member.session.send_encoded(text)
        return len(self.members)
