"""Resumable room history: offsets, epochs, replay; the :class:`RoomHistory` port, in memory.

Every room has an **epoch** (a random name made when the room is first
seen) and a counter: each stored frame gets the room's next **offset**
(1, 2, 3, ... within the epoch, gap-free and strictly increasing) and the
room keeps its last ``history_size`` frames. When the history is lost (a node
without Redis forgot the room, a Redis restarted empty) the room gets a new
epoch, so a client that remembers ``(epoch, offset)`` can tell "nothing
missed" from "the history is gone" (``recovered: false``): offsets never
silently start again at 1 under an old epoch.

The hub encodes a frame once, without its offset (a *template*: a JSON
object, ``NewMessage``/``TaskProgress`` with the default ``offset=0``, which
``omit_defaults`` leaves out); the store assigns the offset and splices it
in front (:func:`splice_offset`), so the stored and published bytes are the
frame with its offset, encoded once.

:class:`MemoryHistory` is the store of a node without Redis; the Redis twin
(:class:`~._history_redis.RedisHistory`, Redis Streams) also publishes each
frame to the room's fanout channel when another node has members in the
room. Both pass the same contract tests.

Fanout payloads (Redis only) are ``<node>\\n<epoch>\\n<offset>\\n<frame>``, and
``<node>\\n\\n\\n<frame>`` for an ephemeral frame (presence events: no offset,
not stored). :func:`parse_remote` reads them; :func:`echo_prefix` is the
``skip_prefix`` a node subscribes with so that its own frames are dropped
undecoded when Redis sends them back.
"""

from __future__ import annotations

import collections
import itertools
import secrets
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from runtime import Clock

    from ._settings import HubSettings

__all__ = [
    "Appended",
    "HistoryCounters",
    "HistoryStatistics",
    "MemoryHistory",
    "Position",
    "RemoteFrame",
    "Replay",
    "RoomHistory",
    "check_node_id",
    "check_since",
    "check_template",
    "echo_prefix",
    "new_epoch",
    "parse_remote",
    "remote_payload",
    "splice_offset",
]


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """Where a room stands: its epoch and the last offset given in it (0: none yet)."""

    epoch: str
    offset: int


class Appended(msgspec.Struct, frozen=True, kw_only=True):
    """A frame stored in a room's history: its epoch, its offset and the frame with the offset."""

    room: str
    epoch: str
    offset: int
    frame: bytes


class Replay(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a rejoin: the frames after ``since`` and whether that is all of them.

    ``recovered`` is ``False`` when the epoch changed, ``since`` is ahead of the
    room, or the history no longer holds ``since + 1``; then ``frames`` is empty
    and the client must resynchronise. ``position`` is the room's position the
    frames were read at: when frames are given, the last one's offset is
    ``position.offset``.
    """

    position: Position
    frames: list[tuple[int, bytes]]
    recovered: bool


class RemoteFrame(msgspec.Struct, frozen=True, kw_only=True):
    """A frame that came over the fanout: with its epoch and offset, or ephemeral (both ``None``).

    ``node`` is the id of the node that published it.
    """

    epoch: str | None
    offset: int | None
    frame: bytes
    node: str = ""


class HistoryStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """What a room history counts since it was made (for ``statistics()`` and metrics).

    ``appended`` frames were stored (in ``batches`` calls of ``append_many``);
    ``replays`` rejoins were answered, ``replayed`` frames sent back by them,
    and ``not_recovered_epoch`` / ``_ahead`` / ``_trimmed`` count the rejoins
    answered ``recovered: false`` because the epoch differed, ``since`` was past
    the room's offset, or the history no longer reached back (trimmed or
    expired); ``reads`` refills returned ``read_frames`` frames.
    ``epochs_created`` rooms got a new epoch here. ``publishes`` frames (stored
    and ephemeral) were published to other nodes and ``publishes_skipped``
    were not, no other live node having members in the room (always 0 in
    memory: there are no other nodes). ``rooms`` is how many rooms a memory
    store holds (0 on Redis), ``rooms_evicted`` and ``rooms_expired`` the rooms
    it forgot for its bound and for their TTL.
    """

    appended: int
    batches: int
    replays: int
    replayed: int
    not_recovered_epoch: int
    not_recovered_ahead: int
    not_recovered_trimmed: int
    reads: int
    read_frames: int
    epochs_created: int
    publishes: int
    publishes_skipped: int
    rooms: int
    rooms_evicted: int
    rooms_expired: int


class RoomHistory(Protocol):
    """Each room's bounded, resumable history (memory, or Redis Streams with fanout)."""

    async def append_many(self, items: Sequence[tuple[str, bytes]]) -> list[Appended]:
        """Store each ``(room, template)`` under the room's next offset, in item order.

        Returns one :class:`Appended` per item, in order. On Redis the batch is
        one round trip, and each frame is published to the room's channel when
        another live node has members in the room.

        Raises:
            ValueError: a template is not a JSON object (does not start with ``{``).
            RedisUnavailable: (Redis) Redis cannot be reached; whether the frames
                were stored is unknown.
        """
        ...

    async def publish(self, room: str, frame: bytes) -> None:
        """Send an ephemeral frame (not stored, no offset) to the other nodes with members.

        A no-op in memory. Raises :class:`~runtime.RedisUnavailable` (Redis).
        """
        ...

    async def position(self, room: str) -> Position:
        """The room's epoch and last offset; a room seen for the first time gets its epoch."""
        ...

    async def replay(self, room: str, since: int, epoch: str | None) -> Replay:
        """The frames after ``since`` (the last offset the client saw, in ``epoch``), in order.

        ``epoch=None`` trusts ``since`` to be in the room's current epoch. An
        unknown room gets its epoch, as with :meth:`position`.

        Raises:
            ValueError: ``since`` is negative.
        """
        ...

    async def read(self, room: str, after: int, until: int) -> list[tuple[int, bytes]]:
        """The frames the history holds with ``after < offset <= until``, in order.

        For refilling a gap seen on the fanout: if the first one returned is not
        ``after + 1``, the history no longer holds what is missing.
        """
        ...

    def statistics(self) -> HistoryStatistics:
        """A snapshot of the counters."""
        ...


def new_epoch() -> str:
    """A fresh random epoch name: 16 hex digits."""
    return secrets.token_hex(8)


def splice_offset(template: bytes, offset: int) -> bytes:
    """``template`` (a JSON object without ``"offset"``) with ``"offset": offset`` first.

    Raises:
        ValueError: ``template`` does not start with ``{``.
    """
    check_template(template)
    if template == b"{}":
        return b'{"offset":%d}' % offset
    return b'{"offset":%d,' % offset + template[1:]


def check_template(template: bytes) -> None:
    """Raise ``ValueError`` unless ``template`` can be spliced (a JSON object's bytes)."""
    if template[:1] != b"{":
        raise ValueError(f"a frame template must be a JSON object, got {template[:40]!r}")


def check_node_id(node_id: str) -> str:
    """``node_id`` if it can head a fanout payload (non-empty, no newline); else ``ValueError``."""
    if not node_id or "\n" in node_id:
        raise ValueError(f"a node id must be non-empty and have no newline, got {node_id!r}")
    return node_id


def echo_prefix(node_id: str) -> bytes:
    """What every payload ``node_id`` publishes starts with: its subscriptions' ``skip_prefix``."""
    return check_node_id(node_id).encode() + b"\n"


def remote_payload(node_id: str, epoch: str | None, offset: int | None, frame: bytes) -> bytes:
    """The fanout payload of ``frame`` (its offset already spliced in), as the scripts build it.

    ``epoch`` and ``offset`` are both given (a stored frame) or both ``None`` (ephemeral).
    """
    head = echo_prefix(node_id)
    if epoch is None and offset is None:
        return head + b"\n\n" + frame
    if epoch is None or offset is None:
        raise ValueError("epoch and offset are given together, or neither")
    return head + epoch.encode() + b"\n%d\n" % offset + frame


def parse_remote(data: bytes) -> RemoteFrame:
    """Decode a fanout payload (see the module docstring); ``ValueError`` on anything else."""
    parts = data.split(b"\n", 3)
    if len(parts) != 4:
        raise ValueError(f"not a room frame payload: {data[:60]!r}")
    node, epoch, offset, frame = parts
    if not node or not frame:
        raise ValueError(f"not a room frame payload (no node or no frame): {data[:60]!r}")
    if not epoch and not offset:
        return RemoteFrame(epoch=None, offset=None, frame=frame, node=node.decode())
    if not epoch or not offset.isdigit() or offset[:1] == b"0":
        raise ValueError(f"not a room frame payload (bad epoch or offset): {data[:60]!r}")
    return RemoteFrame(
        epoch=epoch.decode("ascii"), offset=int(offset), frame=frame, node=node.decode()
    )


# -- memory ---------------------------------------------------------------------------------


class _Room:
    """One room of a :class:`MemoryHistory`: its epoch, last offset and ring of frames."""

    __slots__ = ("epoch", "expires_at", "frames", "offset")

    def __init__(self, epoch: str, expires_at: float) -> None:
        self.epoch = epoch
        self.offset = 0
        self.expires_at = expires_at
        # Made at the first append: a room that is only joined holds no ring.
        self.frames: collections.deque[tuple[int, bytes]] | None = None


class HistoryCounters:
    """The counters behind :class:`HistoryStatistics` (both stores count the same things)."""

    __slots__ = (
        "appended",
        "batches",
        "epochs_created",
        "not_recovered_ahead",
        "not_recovered_epoch",
        "not_recovered_trimmed",
        "publishes",
        "publishes_skipped",
        "read_frames",
        "reads",
        "replayed",
        "replays",
        "rooms_evicted",
        "rooms_expired",
    )

    def __init__(self) -> None:
        self.appended = 0
        self.batches = 0
        self.replays = 0
        self.replayed = 0
        self.not_recovered_epoch = 0
        self.not_recovered_ahead = 0
        self.not_recovered_trimmed = 0
        self.reads = 0
        self.read_frames = 0
        self.epochs_created = 0
        self.publishes = 0
        self.publishes_skipped = 0
        self.rooms_evicted = 0
        self.rooms_expired = 0

    def snapshot(self, rooms: int) -> HistoryStatistics:
        """The counters now, with ``rooms`` held."""
        return HistoryStatistics(
            appended=self.appended,
            batches=self.batches,
            replays=self.replays,
            replayed=self.replayed,
            not_recovered_epoch=self.not_recovered_epoch,
            not_recovered_ahead=self.not_recovered_ahead,
            not_recovered_trimmed=self.not_recovered_trimmed,
            reads=self.reads,
            read_frames=self.read_frames,
            epochs_created=self.epochs_created,
            publishes=self.publishes,
            publishes_skipped=self.publishes_skipped,
            rooms=rooms,
            rooms_evicted=self.rooms_evicted,
            rooms_expired=self.rooms_expired,
        )


def check_since(since: int) -> None:
    """Raise ``ValueError`` for a negative ``since``."""
    if since < 0:
        raise ValueError(f"since must be >= 0, got {since}")


class MemoryHistory:
    """:class:`RoomHistory` of a node without Redis: a ring of frames per room, bounded twice.

    At most ``settings.memory_history_rooms`` rooms are kept (the least
    recently appended to or read go first), each with its last
    ``settings.history_size`` frames; a room is forgotten
    ``settings.history_ttl_seconds`` after its last append (or its creation),
    read on ``clock``. A forgotten room that is seen again gets a new epoch.
    A room that is only joined holds its epoch and counter, no ring.
    """

    def __init__(self, settings: HubSettings, clock: Clock) -> None:
        self._size = settings.history_size
        self._ttl = settings.history_ttl_seconds
        self._max_rooms = settings.memory_history_rooms
        self._clock = clock
        self._rooms: collections.OrderedDict[str, _Room] = collections.OrderedDict()
        self._counters = HistoryCounters()

    def __len__(self) -> int:
        """How many rooms are held (expired ones not yet noticed included)."""
        return len(self._rooms)

    def _room(self, room: str, *, create: bool) -> _Room | None:
        """The room's state, made fresh when absent or expired (``create``); marks it recent."""
        rooms = self._rooms
        now = self._clock.monotonic()
        state = rooms.get(room)
        if state is not None and state.expires_at <= now:
            del rooms[room]
            self._counters.rooms_expired += 1
            state = None
        if state is not None:
            rooms.move_to_end(room)
            return state
        if not create:
            return None
        self._drop_stale(now)
        state = rooms[room] = _Room(new_epoch(), now + self._ttl)
        self._counters.epochs_created += 1
        while len(rooms) > self._max_rooms:
            rooms.popitem(last=False)
            self._counters.rooms_evicted += 1
        return state

    def _drop_stale(self, now: float) -> None:
        """Forget expired rooms at the cold end (a couple per new room: no scans)."""
        rooms = self._rooms
        for _ in range(2):
            if not rooms:
                return
            oldest = next(iter(rooms.values()))
            if oldest.expires_at > now:
                return
            rooms.popitem(last=False)
            self._counters.rooms_expired += 1

    async def append_many(self, items: Sequence[tuple[str, bytes]]) -> list[Appended]:
        """Store each ``(room, template)`` under the room's next offset, in item order."""
        for _, template in items:
            check_template(template)
        appended: list[Appended] = []
        if not items:
            return appended
        expires_at = self._clock.monotonic() + self._ttl
        for room, template in items:
            state = self._room(room, create=True)
            assert state is not None  # create=True always gives one
            offset = state.offset = state.offset + 1
            state.expires_at = expires_at
            frame = splice_offset(template, offset)
            frames = state.frames
            if frames is None:
                frames = state.frames = collections.deque(maxlen=self._size)
            frames.append((offset, frame))
            appended.append(Appended(room=room, epoch=state.epoch, offset=offset, frame=frame))
        self._counters.appended += len(items)
        self._counters.batches += 1
        return appended

    async def publish(self, room: str, frame: bytes) -> None:
        """Nothing to do: a node without Redis has no other nodes to tell."""

    async def position(self, room: str) -> Position:
        """The room's epoch and last offset; a room seen for the first time gets its epoch."""
        state = self._room(room, create=True)
        assert state is not None
        return Position(epoch=state.epoch, offset=state.offset)

    async def replay(self, room: str, since: int, epoch: str | None) -> Replay:
        """The frames after ``since`` in order, and whether that is all of them."""
        check_since(since)
        state = self._room(room, create=True)
        assert state is not None
        position = Position(epoch=state.epoch, offset=state.offset)
        counters = self._counters
        counters.replays += 1
        if epoch is not None and epoch != state.epoch:
            counters.not_recovered_epoch += 1
            return Replay(position=position, frames=[], recovered=False)
        if since > state.offset:
            counters.not_recovered_ahead += 1
            return Replay(position=position, frames=[], recovered=False)
        frames = _slice(state, since, state.offset)
        if since < state.offset and (not frames or frames[0][0] != since + 1):
            counters.not_recovered_trimmed += 1
            return Replay(position=position, frames=[], recovered=False)
        counters.replayed += len(frames)
        return Replay(position=position, frames=frames, recovered=True)

    async def read(self, room: str, after: int, until: int) -> list[tuple[int, bytes]]:
        """The frames the history holds with ``after < offset <= until``, in order."""
        self._counters.reads += 1
        state = self._room(room, create=False)
        if state is None:
            return []
        frames = _slice(state, after, until)
        self._counters.read_frames += len(frames)
        return frames

    def statistics(self) -> HistoryStatistics:
        """A snapshot of the counters."""
        return self._counters.snapshot(len(self._rooms))

    def __repr__(self) -> str:
        return f"MemoryHistory(rooms={len(self._rooms)}, size={self._size})"


def _slice(state: _Room, after: int, until: int) -> list[tuple[int, bytes]]:
    """The ring's frames with ``after < offset <= until``, walked from the recent end."""
    frames = state.frames
    if not frames:
        return []
    first = frames[0][0]
    start = max(after + 1, first)
    stop = min(until, state.offset)
    if start > stop:
        return []
    skip = state.offset - stop
    picked = list(itertools.islice(reversed(frames), skip, skip + stop - start + 1))
    picked.reverse()
    return picked
