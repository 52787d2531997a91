"""Room history on Redis Streams, with the publish to other nodes in the same atomic step.

Per room (keys from :class:`~._keys.HubKeys`, all hash-tagged with the room):
the ``meta`` hash holds ``epoch`` and ``offset`` (the last one given), the
``history`` stream the last ``history_size`` frames with stream IDs
``0-<offset>`` (so the stream's IDs are the offsets, trimmed exactly with
``MAXLEN``), and the ``nodes`` sorted set (written by the presence module)
the nodes with members in the room, scored by their expiry in milliseconds of
Redis time. ``meta`` and ``history`` expire ``history_ttl_seconds`` after the
room's last append; ``nodes`` keeps the TTL presence gives it.

**Appending** is one Lua script per batch (:data:`_APPEND_LUA`, one
``EVALSHA``, one round trip). For each room it reads the epoch, or, when the
``meta`` hash is missing, makes the candidate epoch passed in (and drops any
stream left over from the lost epoch): a Redis restarted empty therefore
gives the room a NEW epoch, and offsets never silently restart under the old
one. It takes the next offsets (``HINCRBY``), adds each frame with its offset
spliced in (``XADD ... MAXLEN <size> 0-<offset>``), refreshes the TTLs and,
if ``ZRANGEBYSCORE nodes <now> +inf`` names a node other than this one,
``PUBLISH``-es each frame on the room's fanout channel. Offsets are therefore
strictly increasing and gap-free per room within an epoch, whatever the
number of nodes and tasks appending.

**Why nothing falls between the publish and a join.** A node that gets its
first member in a room (1) subscribes the room's channel, (2) registers in
``nodes`` (presence), (3) reads :meth:`RedisHistory.position` (or
:meth:`RedisHistory.replay`). An append runs ``XADD``, the ``nodes`` check
and ``PUBLISH`` atomically. If the append runs before (2), the joiner's
position, read after it, already covers the frame; if after (2), the frame is
published and the joiner, subscribed since (1), receives it. So the joiner
delivers what comes from the history up to its position, then the fanout's
frames with a higher offset, dropping those at or below it (duplicates), and
a frame whose offset is more than one past the last delivered one means a gap
(refill with :meth:`RedisHistory.read`).

Fanout payloads are ``<node>\\n<epoch>\\n<offset>\\n<frame>`` (ephemeral:
``<node>\\n\\n\\n<frame>``), read by :func:`~._history.parse_remote`; a node
subscribes with ``skip_prefix=echo_prefix(node_id)`` so that Redis's echo of
its own frames is dropped undecoded.

**When Redis fails**, every method raises :class:`runtime.RedisUnavailable`
(through :meth:`RedisLink.map_errors`). For an append the outcome is unknown
(a missed deadline may follow a script that ran). What the hub should do:
deliver the frame to its local members anyway, without an offset (it is not
recoverable), and count it; answer joins without recovery (``recovered:
false`` when the client asked for ``since``); when Redis is back, read each
local room's :meth:`RedisHistory.position` again: a changed epoch (Redis came
back empty) means ``room_joined {recovered: false}`` to its members, and a
higher offset in the same epoch means a refill with :meth:`RedisHistory.read`.

Redis Cluster: every script touches one room's keys except the batch append,
which touches every room of its batch; under Cluster the batch would be
split by slot (one ``EVALSHA`` per slot in a pipeline), a change in this
module only. ``PUBLISH`` from a script works there too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final, cast

from ._history import (
    Appended,
    HistoryCounters,
    HistoryStatistics,
    Position,
    Replay,
    check_node_id,
    check_since,
    check_template,
    new_epoch,
    remote_payload,
    splice_offset,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from runtime import RedisFanout, RedisLink

    from ._keys import HubKeys
    from ._settings import HubSettings

__all__ = ["RedisHistory"]

# Whether a node other than ARGV[1] has a live entry in the sorted set `nodes` (score: expiry
# in ms of Redis time). Two members are enough to know: one of them is not this node.
_OTHERS_LUA: Final = """
local function others(nodes, node)
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', nodes, now_ms, '+inf', 'LIMIT', 0, 2)) do
    if member ~= node then
      return true
    end
  end
  return false
end
"""

# Read the room's epoch, or start a new one (ARGV candidate) when its meta hash is gone; a
# stream left over from the lost epoch is dropped, so its IDs cannot collide with the new ones.
_EPOCH_LUA: Final = """
local function epoch_of(meta, history, candidate)
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch then
    return epoch, 0
  end
  redis.call('DEL', history)
  redis.call('HSET', meta, 'epoch', candidate, 'offset', 0)
  return candidate, 1
end
"""

# The batch append. KEYS: meta, history, nodes of each room in turn. ARGV[1]: this node's id,
# ARGV[2]: the history size, ARGV[3]: the TTL in ms; then per room: a candidate epoch, the
# Redis channel, the number of frames, and the frames' templates (JSON objects, no offset).
# Returns per room: epoch, first offset given, whether the epoch was made, whether published.
_APPEND_LUA: Final = (
    _OTHERS_LUA
    + _EPOCH_LUA
    + """
local node, size, ttl = ARGV[1], ARGV[2], ARGV[3]
local result = {}
local a = 4
for k = 1, #KEYS, 3 do
  local meta, history = KEYS[k], KEYS[k + 1]
  local channel, count = ARGV[a + 1], tonumber(ARGV[a + 2])
  local epoch, created = epoch_of(meta, history, ARGV[a])
  a = a + 3
  local first = redis.call('HINCRBY', meta, 'offset', count) - count + 1
  local publish = others(KEYS[k + 2], node)
  local head = node .. '\\n' .. epoch .. '\\n'
  for i = 0, count - 1 do
    local offset = string.format('%d', first + i)
    local template = ARGV[a + i]
    local frame
    if template == '{}' then
      frame = '{"offset":' .. offset .. '}'
    else
      frame = '{"offset":' .. offset .. ',' .. string.sub(template, 2)
    end
    redis.call('XADD', history, 'MAXLEN', size, '0-' .. offset, 'f', frame)
    if publish then
      redis.call('PUBLISH', channel, head .. offset .. '\\n' .. frame)
    end
  end
  a = a + count
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', history, ttl)
  result[#result + 1] = epoch
  result[#result + 1] = first
  result[#result + 1] = created
  result[#result + 1] = publish and 1 or 0
end
return result
"""
)

# An ephemeral frame: KEYS[1] nodes; ARGV: this node's id, the Redis channel, the payload.
_PUBLISH_LUA: Final = (
    _OTHERS_LUA
    + """
if others(KEYS[1], ARGV[1]) then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""
)

# Position and replay. KEYS: meta, history. ARGV: a candidate epoch, the TTL in ms (of a meta
# hash made here), since (-1: the position only), the client's epoch ('' for none).
# Returns epoch, offset, whether the epoch was made, a status, and the frames for 'ok'.
_REPLAY_LUA: Final = (
    _EPOCH_LUA
    + """
local epoch, created = epoch_of(KEYS[1], KEYS[2], ARGV[1])
if created == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local since = tonumber(ARGV[3])
if since < 0 then
  return {epoch, offset, created, 'position'}
end
if ARGV[4] ~= '' and ARGV[4] ~= epoch then
  return {epoch, offset, created, 'epoch'}
end
if since > offset then
  return {epoch, offset, created, 'ahead'}
end
if since == offset then
  return {epoch, offset, created, 'ok', {}}
end
local from = '0-' .. string.format('%d', since + 1)
local head = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', 1)
if #head == 0 or head[1][1] ~= from then
  return {epoch, offset, created, 'trimmed'}
end
return {epoch, offset, created, 'ok',
        redis.call('XRANGE', KEYS[2], from, '0-' .. string.format('%d', offset))}
"""
)


def _ttl_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _stream_offset(entry_id: bytes) -> int:
    """The offset of a stream entry ID ``0-<offset>``."""
    return int(entry_id[2:])


class RedisHistory:
    """:class:`~._history.RoomHistory` on Redis Streams; see the module docstring.

    Args:
        link: the node's Redis link (the fanout's Redis: scripts publish on it).
        keys: where the rooms' keys are.
        fanout: the node's Redis fanout, for the rooms' Redis channel names and its counters.
        node_id: this node's id as presence writes it in ``nodes`` (no newline).
        settings: ``history_size`` and ``history_ttl_seconds``.

    Every method raises :class:`runtime.RedisUnavailable` when Redis cannot be reached.
    """

    def __init__(
        self,
        link: RedisLink,
        keys: HubKeys,
        fanout: RedisFanout,
        node_id: str,
        settings: HubSettings,
    ) -> None:
        self._link = link
        self._keys = keys
        self._fanout = fanout
        self._node_id = check_node_id(node_id)
        self._size = settings.history_size
        self._ttl_ms = _ttl_ms(settings.history_ttl_seconds)
        client = link.client
        # redis-py's scripts send EVALSHA, and on NOSCRIPT (Redis restarted) load and resend.
        self._append = client.register_script(_APPEND_LUA)
        self._publish = client.register_script(_PUBLISH_LUA)
        self._replay = client.register_script(_REPLAY_LUA)
        self._counters = HistoryCounters()

    @property
    def node_id(self) -> str:
        """This node's id (the one whose entry in ``nodes`` does not count as another node)."""
        return self._node_id

    def _channel(self, room: str) -> str:
        return self._fanout.redis_channel(self._keys.channel(room))

    async def append_many(self, items: Sequence[tuple[str, bytes]]) -> list[Appended]:
        """Store each ``(room, template)`` under the room's next offset, in item order.

        One script for the whole batch; see the module docstring.
        """
        if not items:
            return []
        by_room: dict[str, list[bytes]] = {}
        for room, template in items:
            check_template(template)
            by_room.setdefault(room, []).append(template)
        keys = self._keys
        script_keys: list[str] = []
        args: list[str | bytes | int] = [self._node_id, self._size, self._ttl_ms]
        for room, templates in by_room.items():
            script_keys += (keys.meta(room), keys.history(room), keys.nodes(room))
            args += (new_epoch(), self._channel(room), len(templates), *templates)
        with self._link.map_errors("hub history append"):
            reply = await self._append(keys=script_keys, args=args)
        counters = self._counters
        next_offset: dict[str, tuple[str, int]] = {}
        published = 0
        for index, (room, templates) in enumerate(by_room.items()):
            epoch_b, first, created, publish = reply[4 * index : 4 * index + 4]
            next_offset[room] = (epoch_b.decode(), int(first))
            counters.epochs_created += int(created)
            if publish:
                published += len(templates)
        appended: list[Appended] = []
        for room, template in items:
            epoch, offset = next_offset[room]
            next_offset[room] = (epoch, offset + 1)
            frame = splice_offset(template, offset)
            appended.append(Appended(room=room, epoch=epoch, offset=offset, frame=frame))
        counters.appended += len(items)
        counters.batches += 1
        counters.publishes += published
        counters.publishes_skipped += len(items) - published
        if published:
            self._fanout.count_published(published)
        return appended

    async def publish(self, room: str, frame: bytes) -> None:
        """Publish an ephemeral frame if another live node has members in the room."""
        payload = remote_payload(self._node_id, None, None, frame)
        with self._link.map_errors("hub history publish"):
            sent = await self._publish(
                keys=[self._keys.nodes(room)], args=[self._node_id, self._channel(room), payload]
            )
        if sent:
            self._counters.publishes += 1
            self._fanout.count_published()
        else:
            self._counters.publishes_skipped += 1

    async def _read_meta(
        self, operation: str, room: str, since: int, epoch: str | None
    ) -> list[object]:
        keys = self._keys
        with self._link.map_errors(operation):
            reply: list[object] = await self._replay(
                keys=[keys.meta(room), keys.history(room)],
                args=[new_epoch(), self._ttl_ms, since, epoch or ""],
            )
        self._counters.epochs_created += int(reply[2])  # type: ignore[call-overload]
        return reply

    async def position(self, room: str) -> Position:
        """The room's epoch and last offset; a room seen for the first time gets its epoch."""
        reply = await self._read_meta("hub history position", room, -1, None)
        return _position(reply)

    async def replay(self, room: str, since: int, epoch: str | None) -> Replay:
        """The frames after ``since`` in order, and whether that is all of them (one script)."""
        check_since(since)
        reply = await self._read_meta("hub history replay", room, since, epoch)
        position = _position(reply)
        status = reply[3]
        counters = self._counters
        counters.replays += 1
        if status == b"epoch":
            counters.not_recovered_epoch += 1
        elif status == b"ahead":
            counters.not_recovered_ahead += 1
        elif status == b"ok":
            frames = _frames(reply[4])
            # The stream's IDs are gap-free offsets; anything else is a lost stretch.
            if len(frames) == position.offset - since:
                counters.replayed += len(frames)
                return Replay(position=position, frames=frames, recovered=True)
            counters.not_recovered_trimmed += 1
        else:
            counters.not_recovered_trimmed += 1
        return Replay(position=position, frames=[], recovered=False)

    async def read(self, room: str, after: int, until: int) -> list[tuple[int, bytes]]:
        """The frames the history holds with ``after < offset <= until``, in order (``XRANGE``)."""
        self._counters.reads += 1
        if until <= after:
            return []
        with self._link.map_errors("hub history read"):
            entries = cast(
                "list[tuple[bytes, dict[bytes, bytes]]]",
                await self._link.client.xrange(
                    self._keys.history(room), f"0-{after + 1}", f"0-{until}"
                ),
            )
        frames = [(_stream_offset(entry_id), fields[b"f"]) for entry_id, fields in entries]
        self._counters.read_frames += len(frames)
        return frames

    def statistics(self) -> HistoryStatistics:
        """A snapshot of the counters (``rooms`` is 0: the rooms live in Redis)."""
        return self._counters.snapshot(0)

    def __repr__(self) -> str:
        return f"RedisHistory(node={self._node_id!r}, size={self._size})"


def _position(reply: list[object]) -> Position:
    epoch, offset = reply[0], reply[1]
    assert isinstance(epoch, bytes) and isinstance(offset, int)
    return Position(epoch=epoch.decode(), offset=offset)


def _frames(entries: object) -> list[tuple[int, bytes]]:
    """``[(offset, frame)]`` from a script's raw ``XRANGE`` reply ``[[id, [b"f", frame]], ...]``."""
    assert isinstance(entries, list)
    return [(_stream_offset(entry_id), fields[1]) for entry_id, fields in entries]
