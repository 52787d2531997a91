"""The cluster view of presence in Redis: each node's members, kept alive by heartbeats.

Per room and node, the hash ``keys.presence(room, node)`` maps each user id to
msgpack ``[user_name, connections]`` (this node's count); per room, the sorted
set ``keys.nodes(room)`` holds the nodes with members there, scored by their
expiry in milliseconds of Redis time (``TIME``, read inside the scripts, so
every node measures against the same clock).

Every heartbeat (``presence_heartbeat_seconds``, H) moves this node's expiry
in each of its rooms to now + 2H and gives its hashes a TTL of 2H, a thousand
rooms per script call: a node with 5,000 rooms beats in five round trips. A
node that stops beating (SIGKILL) is past its expiry 2H after its last beat:
``members()`` skips it from then on and prunes it (its entry and its hash).

Changes (:meth:`RedisPresence.changed`) never wait: they update a mirror of
what this node publishes and mark the (room, user) dirty; a background writer
sends the dirty entries in pipelined batches (coalesced: one write per user
however often it changed). Joining a room's first member
(:meth:`RedisPresence.room_occupied`) writes at once: the node is in the
room's ``nodes`` set when the call returns.

Healing: a heartbeat that finds its entry or its hash missing in a room
(Redis restarted empty, or it pruned this node after a stall) rewrites that
room from the mirror. When the link goes down, pending changes are dropped
(the mirror keeps the truth, so memory stays bounded by the presence itself)
and the first heartbeat once it is back rewrites every room of this node;
the link coming back wakes the heartbeat at once. Rooms left during an outage
are removed from Redis after it (or expire within 2H).

Scripts that refresh or rewrite a batch touch many rooms' keys, hence many
hash slots: fine on one Redis; a Redis Cluster would need the batches grouped
by slot. ``members()`` reads hashes named from the room's key prefix, within
the room's slot.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
import anyio.lowlevel
import msgspec

from runtime import RedisUnavailable

from ._frames import PresenceMember
from ._presence import PresenceStatistics

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anyio.abc import TaskStatus

    from runtime import Clock, RedisLink

    from ._keys import HubKeys
    from ._settings import HubSettings

__all__ = ["RedisPresence"]

logger = logging.getLogger("actors.socket_hub.presence")

#: Rooms one heartbeat script call refreshes (one round trip).
HEARTBEAT_ROOMS: Final = 1000
#: Rooms, and arguments, one rewrite script call carries at most (one round trip).
REWRITE_ROOMS: Final = 250
REWRITE_ARGUMENTS: Final = 20_000
#: Hash fields one pipeline of the writer carries at most (one round trip).
WRITE_FIELDS: Final = 5000
#: Dirty (room, user) pairs kept at most; past it the node rewrites its presence whole.
MAX_PENDING: Final = 100_000
#: Rooms left during an outage whose removal waits; past it the oldest are left to expire.
MAX_DEFERRED_VACATES: Final = 100_000
#: After a failure, the heartbeat and the writer try again after this share of the interval.
RETRY_FRACTION: Final = 0.25

# The time in ms by Redis's clock, shared by every script.
_NOW_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Drop a room's expired nodes: their entries and their hashes (named like this node's,
# presence(room, node), with the dead node's id in place of this one's), as members() does.
_PRUNE_LUA: Final = """
local function prune(nodes, presence, me)
  local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', now)
  if #dead > 0 then
    local prefix = string.sub(presence, 1, #presence - #me)
    for _, node in ipairs(dead) do
      if node ~= me then
        redis.call('DEL', prefix .. node)
      end
    end
    redis.call('ZREMRANGEBYSCORE', nodes, '-inf', now)
  end
end
"""

# Refresh this node in a batch of rooms. KEYS: nodes(room), presence(room, node) per room;
# ARGV: node id, TTL in ms. Dead nodes are pruned first (this node too, if it expired). Per
# room it returns 1 if this node's entry was missing (added now) + 2 if its hash was missing.
_HEARTBEAT_LUA: Final = (
    _NOW_LUA
    + _PRUNE_LUA
    + """
local ttl = tonumber(ARGV[2])
local codes = {}
for i = 1, #KEYS, 2 do
  local nodes = KEYS[i]
  prune(nodes, KEYS[i + 1], ARGV[1])
  local code = redis.call('ZADD', nodes, now + ttl, ARGV[1])
  if redis.call('PTTL', nodes) < ttl then
    redis.call('PEXPIRE', nodes, ttl)
  end
  if redis.call('PEXPIRE', KEYS[i + 1], ttl) == 0 then
    code = code + 2
  end
  codes[#codes + 1] = code
end
return codes
"""
)

# Register this node in a batch of rooms and write its hash there whole. KEYS as above;
# ARGV: node id, TTL in ms, then per room: its field count n and n pairs (user id, value).
_REWRITE_LUA: Final = (
    _NOW_LUA
    + _PRUNE_LUA
    + """
local ttl = tonumber(ARGV[2])
local a = 3
for i = 1, #KEYS, 2 do
  local nodes, presence = KEYS[i], KEYS[i + 1]
  redis.call('DEL', presence)
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    redis.call('HSET', presence, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  if n > 0 then
    redis.call('PEXPIRE', presence, ttl)
  end
  prune(nodes, presence, ARGV[1])
  redis.call('ZADD', nodes, now + ttl, ARGV[1])
  if redis.call('PTTL', nodes) < ttl then
    redis.call('PEXPIRE', nodes, ttl)
  end
end
return #KEYS / 2
"""
)

# The live nodes of one room and their hashes; dead ones are pruned (entry and hash).
# KEYS[1]: nodes(room); ARGV[1]: the prefix of the room's presence keys (presence(room, "")).
# Returns node, HGETALL-reply, node, HGETALL-reply, ...
_MEMBERS_LUA: Final = (
    _NOW_LUA
    + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #dead > 0 then
  for _, node in ipairs(dead) do
    redis.call('DEL', ARGV[1] .. node)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
end
local found = {}
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  found[#found + 1] = node
  found[#found + 1] = redis.call('HGETALL', ARGV[1] .. node)
end
return found
"""
)

_Entry = tuple[str | None, int]
_encode = msgspec.msgpack.Encoder().encode
_decode_entry = msgspec.msgpack.Decoder(_Entry).decode


class RedisPresence:
    """:class:`~._presence.PresenceStore` in Redis: this node's members, every node's view.

    Args:
        link: the node's Redis link (every call goes through ``link.map_errors``).
        keys: where the room's ``nodes`` set and presence hashes live.
        node_id: this node's id, unique in the cluster (a restarted node may reuse it).
        settings: the hub's settings (``presence_heartbeat_seconds``).
        clock: the time source of the heartbeat interval and the retries.

    :meth:`run` is the heartbeat and the writer (a supervised service). While
    Redis cannot be reached, :meth:`members` and :meth:`room_occupied` raise
    :class:`runtime.RedisUnavailable` (a room whose registration failed is still
    tracked: the first heartbeat after Redis returns registers it);
    :meth:`changed` keeps the truth in the mirror; :meth:`room_vacated` never
    raises (the removal waits for Redis, or the entries expire within 2H).
    """

    def __init__(
        self,
        link: RedisLink,
        keys: HubKeys,
        node_id: str,
        settings: HubSettings,
        clock: Clock,
    ) -> None:
        if not node_id:
            raise ValueError("node_id must not be empty")
        self._link = link
        self._keys = keys
        self._node_id = node_id
        self._clock = clock
        self._interval = settings.presence_heartbeat_seconds
        self._ttl_ms = max(1, round(2 * self._interval * 1000))
        client = link.client
        self._heartbeat_script = client.register_script(_HEARTBEAT_LUA)
        self._rewrite_script = client.register_script(_REWRITE_LUA)
        self._members_script = client.register_script(_MEMBERS_LUA)
        # What this node publishes: room -> user -> (name, connections). The truth to heal from.
        self._mirror: dict[str, dict[str, _Entry]] = {}
        self._entries = 0
        self._occupied: set[str] = set()
        # (room, user) pairs whose mirror entry Redis does not have yet.
        self._dirty: dict[str, set[str]] = {}
        self._pending = 0
        # Set while this node's presence in Redis cannot be trusted: the next heartbeat
        # rewrites it whole, and no dirty pair is kept meanwhile.
        self._resync = False
        self._deferred: dict[str, None] = {}  # rooms to remove from Redis, oldest first
        self._lock = anyio.Lock()  # one batch of writes at a time, in the mirror's order
        self._writer_wake = anyio.Event()
        self._beat_wake = anyio.Event()
        self._failing = False
        self._heartbeats = 0
        self._heartbeat_failures = 0
        self._round_trips = 0
        self._writes = 0
        self._written = 0
        self._write_failures = 0
        self._repairs = 0
        self._resyncs = 0
        self._vacates_dropped = 0

    @property
    def node_id(self) -> str:
        """This node's id in the rooms' ``nodes`` sets."""
        return self._node_id

    # -- the hub's calls ----------------------------------------------------------------------

    async def room_occupied(self, room: str) -> None:
        """Register this node in ``room`` (and write its members there) before returning.

        Raises:
            runtime.RedisUnavailable: Redis could not be reached. The room stays
                tracked; the first heartbeat after Redis returns registers it.
        """
        self._occupied.add(room)
        self._mirror.setdefault(room, {})
        self._deferred.pop(room, None)
        async with self._lock:
            if room not in self._occupied:  # vacated while this call waited
                return
            # Written whole now. (If this fails, the next heartbeat finds the room missing
            # and writes it whole then.)
            self._forget_dirty(room)
            with self._link.map_errors("presence room_occupied"):
                await self._rewrite([room])

    async def room_vacated(self, room: str) -> None:
        """Remove this node from ``room`` (its entry and its hash); never raises for Redis.

        While Redis cannot be reached the removal waits for it (bounded), and the
        entries expire within two heartbeats anyway.
        """
        self._occupied.discard(room)
        users = self._mirror.pop(room, None)
        if users:
            self._entries -= len(users)
        self._forget_dirty(room)
        async with self._lock:
            if room in self._occupied:  # occupied again while this call waited
                return
            try:
                with self._link.map_errors("presence room_vacated"):
                    await self._remove([room])
            except RedisUnavailable as exc:
                logger.debug("presence: %s left during an outage (%s); removal deferred", room, exc)
                self._defer_vacate(room)

    async def vacate_all(self) -> None:
        """Take this node out of every room (a hub restarting with an empty tally calls it).

        Like :meth:`room_vacated` for each room, a thousand rooms per round trip;
        it never raises for Redis either.
        """
        rooms = list(self._occupied | self._mirror.keys())
        self._occupied.clear()
        self._mirror.clear()
        self._entries = 0
        self._dirty = {}
        self._pending = 0
        for start in range(0, len(rooms), HEARTBEAT_ROOMS):
            async with self._lock:
                chunk = rooms[start : start + HEARTBEAT_ROOMS]
                batch = [room for room in chunk if room not in self._occupied]  # not joined again
                try:
                    with self._link.map_errors("presence vacate_all"):
                        await self._remove(batch)
                except RedisUnavailable as exc:
                    logger.debug("presence: removal of %s rooms deferred (%s)", len(batch), exc)
                    for room in batch:
                        self._defer_vacate(room)

    def changed(self, room: str, user_id: str, user_name: str | None, connections: int) -> None:
        """Record this node's count for ``user_id`` in ``room`` (0: gone); the writer sends it."""
        if connections < 0:
            raise ValueError(f"connections must be >= 0, got {connections}")
        users = self._mirror.get(room)
        if connections > 0:
            if users is None:
                users = self._mirror[room] = {}
            known = users.get(user_id)
            if known is None:
                self._entries += 1
            elif user_name is None:
                user_name = known[0]
            users[user_id] = (user_name, connections)
        else:
            if users is None or user_id not in users:
                return
            del users[user_id]
            self._entries -= 1
            if not users and room not in self._occupied:
                del self._mirror[room]
        if self._resync:
            return  # the coming rewrite sends the mirror whole
        pending = self._dirty.get(room)
        if pending is None:
            pending = self._dirty[room] = set()
        if user_id not in pending:
            pending.add(user_id)
            self._pending += 1
            if self._pending > MAX_PENDING:
                logger.warning(
                    "presence: over %s changes wait for Redis; rewriting this node's presence",
                    MAX_PENDING,
                )
                self._start_resync()
                self._beat_wake.set()
                return
        self._writer_wake.set()

    async def members(self, room: str) -> list[PresenceMember]:
        """The members of ``room`` on every live node, connections summed per user.

        This node's own members come from its mirror (so they include changes the
        writer has not sent yet); other nodes' from Redis, skipping expired ones.

        Raises:
            runtime.RedisUnavailable: Redis could not be reached.
        """
        with self._link.map_errors("presence members"):
            reply = await self._members_script(
                keys=[self._keys.nodes(room)], args=[self._keys.presence(room, "")]
            )
        merged: dict[str, list[Any]] = {
            user_id: [name, count] for user_id, (name, count) in self._mirror.get(room, {}).items()
        }
        found = cast("list[Any]", reply)
        for index in range(0, len(found), 2):
            if found[index].decode() == self._node_id:
                continue
            fields: list[bytes] = found[index + 1]
            for field in range(0, len(fields), 2):
                user_id = fields[field].decode()
                name, count = _decode_entry(fields[field + 1])
                entry = merged.get(user_id)
                if entry is None:
                    merged[user_id] = [name, count]
                else:
                    entry[1] += count
                    if entry[0] is None:
                        entry[0] = name
        return [
            PresenceMember(user_id=user_id, user_name=name, connections=count)
            for user_id, (name, count) in merged.items()
        ]

    def statistics(self) -> PresenceStatistics:
        """A snapshot of the store's counters."""
        return PresenceStatistics(
            redis=True,
            rooms=len(self._occupied),
            members=self._entries,
            pending=self._pending,
            heartbeats=self._heartbeats,
            heartbeat_failures=self._heartbeat_failures,
            heartbeat_round_trips=self._round_trips,
            writes=self._writes,
            written=self._written,
            write_failures=self._write_failures,
            repairs=self._repairs,
            resyncs=self._resyncs,
            deferred_vacates=len(self._deferred),
            vacates_dropped=self._vacates_dropped,
        )

    # -- the service ----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat every ``presence_heartbeat_seconds`` and write changes, until cancelled.

        A heartbeat runs at once, then every interval, and at once when the Redis
        link comes back (a failed one is retried after a quarter interval).
        """
        remove = self._link.on_transition(self._on_transition)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._write_loop)
                task_status.started()
                await self._heartbeat_loop()
        finally:
            remove()

    def _on_transition(self, up: bool) -> None:
        """Redis went down or came back: what it holds of this node is rewritten whole."""
        self._start_resync()
        if up:
            self._beat_wake.set()

    def _start_resync(self) -> None:
        self._resync = True
        self._dirty = {}
        self._pending = 0

    async def _heartbeat_loop(self) -> None:
        while True:
            self._beat_wake = anyio.Event()  # a wake during the beat makes the next one at once
            delay = self._interval if await self._beat_safely() else self._interval * RETRY_FRACTION
            with self._clock.move_on_after(delay):
                await self._beat_wake.wait()

    async def _beat_safely(self) -> bool:
        try:
            done = await self._beat()
        except RedisUnavailable as exc:
            self._heartbeat_failures += 1
            if not self._failing:
                logger.warning("presence heartbeat of node %s failed: %s", self._node_id, exc)
                self._failing = True
            return False
        if done and self._failing:
            logger.info("presence heartbeat of node %s works again", self._node_id)
            self._failing = False
        return done

    async def _beat(self) -> bool:
        """One heartbeat (or the full rewrite owed after an outage); whether it completed."""
        if self._resync:
            await self._rewrite_everything()
        else:
            rooms = list(self._occupied)
            for start in range(0, len(rooms), HEARTBEAT_ROOMS):
                async with self._lock:
                    if self._resync:  # the link went down meanwhile
                        return False
                    batch = [
                        room
                        for room in rooms[start : start + HEARTBEAT_ROOMS]
                        if room in self._occupied
                    ]
                    if batch:
                        await self._refresh(batch)
        await self._vacate_deferred()
        self._heartbeats += 1
        return True

    async def _refresh(self, rooms: list[str]) -> None:
        """Refresh this node in ``rooms`` (one round trip); rewrite the rooms Redis lost."""
        with self._link.map_errors("presence heartbeat"):
            codes = await self._heartbeat_script(
                keys=self._room_keys(rooms), args=[self._node_id, self._ttl_ms]
            )
            self._round_trips += 1
            lost = [
                room
                for room, code in zip(rooms, cast("list[int]", codes), strict=True)
                if code & 1 or (code & 2 and self._mirror.get(room))
            ]
            if lost:
                logger.info(
                    "presence: Redis had lost node %s in %s rooms; rewriting them",
                    self._node_id,
                    len(lost),
                )
                self._round_trips += await self._rewrite(lost)
                self._repairs += len(lost)

    async def _rewrite_everything(self) -> None:
        """Write every room of this node whole (after an outage); changes go on meanwhile."""
        async with self._lock:
            self._resync = False  # changes from now on are recorded (and written) again
            rooms = list(self._occupied)
        try:
            for start in range(0, len(rooms), REWRITE_ROOMS):
                async with self._lock:
                    batch = [
                        room
                        for room in rooms[start : start + REWRITE_ROOMS]
                        if room in self._occupied
                    ]
                    if batch:
                        with self._link.map_errors("presence rewrite"):
                            self._round_trips += await self._rewrite(batch)
        except RedisUnavailable:
            self._start_resync()
            raise
        self._resyncs += 1
        if rooms:
            logger.info("presence of node %s rewritten in %s rooms", self._node_id, len(rooms))

    async def _write_loop(self) -> None:
        retry = self._interval * RETRY_FRACTION
        while True:
            await self._writer_wake.wait()
            self._writer_wake = anyio.Event()
            try:
                await self._flush()
            except RedisUnavailable as exc:
                self._write_failures += 1
                logger.debug("presence writer of node %s failed: %s", self._node_id, exc)
                await self._clock.sleep(retry)
                self._writer_wake.set()

    async def _flush(self) -> None:
        """Send the dirty (room, user) pairs, in batches of one round trip each."""
        async with self._lock:
            if self._resync or not self._dirty:
                return
            batch, self._dirty, self._pending = self._dirty, {}, 0
            rooms = list(batch.items())
            sent = 0
            try:
                while sent < len(rooms):
                    sent = await self._write(rooms, sent)
            except RedisUnavailable:
                if not self._resync:
                    for room, users in rooms[sent:]:
                        if room in self._mirror:
                            self._mark_dirty(room, users)
                raise

    async def _write(self, rooms: list[tuple[str, set[str]]], start: int) -> int:
        """One pipeline of the writer from ``rooms[start]`` on; the index it stopped at."""
        fields = 0
        index = start
        async with self._link.client.pipeline(transaction=False) as pipe:
            while index < len(rooms) and fields < WRITE_FIELDS:
                room, users = rooms[index]
                index += 1
                fields += len(users)
                key = self._keys.presence(room, self._node_id)
                mirror = self._mirror.get(room, {})
                values: dict[str, bytes] = {}
                gone: list[str] = []
                for user_id in users:
                    entry = mirror.get(user_id)
                    if entry is None:
                        gone.append(user_id)
                    else:
                        values[user_id] = _encode(entry)
                if values:
                    pipe.hset(key, mapping=values)  # type: ignore[arg-type]
                    pipe.pexpire(key, self._ttl_ms)
                if gone:
                    pipe.hdel(key, *gone)
            with self._link.map_errors("presence write"):
                await pipe.execute()
        self._writes += 1
        self._written += fields
        return index

    def _mark_dirty(self, room: str, users: Iterable[str]) -> None:
        pending = self._dirty.setdefault(room, set())
        before = len(pending)
        pending.update(users)
        self._pending += len(pending) - before

    def _forget_dirty(self, room: str) -> None:
        pending = self._dirty.pop(room, None)
        if pending:
            self._pending -= len(pending)

    async def _rewrite(self, rooms: list[str]) -> int:
        """Register this node in ``rooms`` and write its hashes whole; the round trips taken.

        The caller maps errors.
        """
        trips = 0
        keys: list[str] = []
        arguments: list[str | int | bytes] = [self._node_id, self._ttl_ms]
        for room in rooms:
            users = self._mirror.get(room, {})
            if keys and len(arguments) + 2 * len(users) > REWRITE_ARGUMENTS:
                await self._rewrite_script(keys=keys, args=arguments)
                trips += 1
                keys, arguments = [], [self._node_id, self._ttl_ms]
            keys += [self._keys.nodes(room), self._keys.presence(room, self._node_id)]
            arguments.append(len(users))
            for user_id, entry in users.items():
                arguments += [user_id, _encode(entry)]
        if keys:
            await self._rewrite_script(keys=keys, args=arguments)
            trips += 1
        return trips

    async def _remove(self, rooms: list[str]) -> None:
        """Take this node out of ``rooms`` (entries, hashes): one round trip; caller maps errors."""
        async with self._link.client.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.zrem(self._keys.nodes(room), self._node_id)
                pipe.delete(self._keys.presence(room, self._node_id))
            await pipe.execute()

    def _defer_vacate(self, room: str) -> None:
        if len(self._deferred) >= MAX_DEFERRED_VACATES:
            del self._deferred[next(iter(self._deferred))]  # it expires within 2H by itself
            self._vacates_dropped += 1
        self._deferred[room] = None

    async def _vacate_deferred(self) -> None:
        """Remove the rooms left during an outage (under the lock, a thousand per round trip)."""
        while self._deferred:
            async with self._lock:
                chunk = list(self._deferred)[:HEARTBEAT_ROOMS]
                rooms = [room for room in chunk if room not in self._occupied]
                if rooms:
                    with self._link.map_errors("presence room_vacated"):
                        await self._remove(rooms)
                    self._round_trips += 1
                for room in chunk:
                    self._deferred.pop(room, None)

    def _room_keys(self, rooms: list[str]) -> list[str]:
        keys: list[str] = []
        for room in rooms:
            keys += [self._keys.nodes(room), self._keys.presence(room, self._node_id)]
        return keys

    def __repr__(self) -> str:
        rooms = len(self._occupied)
        return f"RedisPresence(node={self._node_id!r}, rooms={rooms}, link={self._link!r})"
