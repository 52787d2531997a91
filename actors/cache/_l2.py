"""The cache's shared layer (L2): the :class:`L2Store` port, on Redis and in memory.

Keys arrive fully namespaced (the caller applies :class:`~actors.cache._keys.KeySpace`),
and values are opaque blobs (:func:`~actors.cache._codec.pack_entry`).

Tags: ``set(..., tags=...)`` takes tag KEYS (``KeySpace.tag_key(tag)``), not
tags. Each tag key is a set of entry keys. One atomic step writes the entry
and adds it to each of its tag sets, whose TTL is raised to at least the
entry's: a tag index never outlives its newest member, so it cannot leak. A
tag set keeps members that expired or were deleted; each write samples a
couple of its members and drops the dead ones, so dead members stay a small
fraction. A key rewritten without a tag stays in that tag's set and is
removed by the tag's next invalidation: invalidation may remove too much,
never too little.

``delete_tagged`` first renames the tag set to a private snapshot (atomic), then
deletes the snapshot's members in batches: an entry tagged while the
invalidation runs lands in a fresh set and is not lost from the index. (If
Redis fails midway, the snapshot expires with the tag's TTL.)

:class:`RedisL2` never blocks Redis for long: pattern and tag deletion walk
``SCAN``/``SSCAN`` cursors and ``UNLINK`` in batches (never ``KEYS``), and yield
to the event loop between batches. Every call runs inside
:meth:`RedisLink.map_errors`, so an outage raises :class:`runtime.RedisUnavailable`
naming the operation (``"cache get"``, ``"cache set"``, ...), and callers degrade.
"""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING, Final, Protocol, cast

import anyio.lowlevel
import redis.exceptions

from ._operations import Put

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from runtime import RedisLink

    from ._operations import Delete

__all__ = ["L2Store", "MemoryL2", "RedisL2"]

#: How many members of a tag set each tagged write checks (and drops if dead).
PRUNE_SAMPLES: Final = 2
_MAX_BATCH: Final = 100_000


def _ttl_ms(ttl_seconds: float) -> int:
    """Redis's unit: whole milliseconds, at least 1."""
    if not (isinstance(ttl_seconds, int | float) and 0 < ttl_seconds < math.inf):
        raise ValueError(f"ttl_seconds must be a finite number > 0, got {ttl_seconds!r}")
    return max(1, round(ttl_seconds * 1000))


def _check_batch(batch_size: int) -> None:
    if not 1 <= batch_size <= _MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {_MAX_BATCH}, got {batch_size!r}")


def _check_tags(tags: Collection[str]) -> list[str]:
    if isinstance(tags, str | bytes):
        raise TypeError(f"tags must be a collection of tag keys, not a single string {tags!r}")
    return list(dict.fromkeys(tags))


class L2Store(Protocol):
    """The shared cache layer; every key is fully namespaced by the caller."""

    @property
    def available(self) -> bool:
        """Whether the layer is believed reachable now; callers skip it while it is not."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The blob stored at ``key``, or ``None``."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The blobs of ``keys`` in order (``None`` where absent), in one round trip."""
        ...

    async def set(
        self, key: str, blob: bytes, *, ttl_seconds: float, tags: Collection[str] = ()
    ) -> None:
        """Store ``blob`` for ``ttl_seconds`` and index it under each tag KEY in ``tags``."""
        ...

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete ``keys``; return how many existed."""
        ...

    async def write(
        self, operations: Sequence[Put | Delete], *, publish: tuple[str, bytes] | None = None
    ) -> list[int]:
        """Perform ``operations`` in order, in one round trip where the store has trips.

        Returns one result per operation: how many keys a ``Delete`` removed, 0
        for a ``Put``. ``publish`` is a Redis ``(channel, payload)`` to ``PUBLISH``
        after the writes, in the same round trip; only a store on the fanout's own
        Redis takes it (:class:`RedisL2`; the memory store refuses it).
        """
        ...

    async def exists(self, key: str) -> bool:
        """Whether ``key`` exists (of any kind: entry, tag set or lock)."""
        ...

    async def delete_matching(self, pattern: str, *, batch_size: int = 1000) -> int:
        """Delete every key matching the Redis glob ``pattern``, in batches; return the count."""
        ...

    async def delete_tagged(self, tag_key: str, *, batch_size: int = 1000) -> int:
        """Delete the keys indexed under ``tag_key``, then the index; return the entries removed."""
        ...

    async def try_lock(self, lock_key: str, owner: str, ttl_seconds: float) -> bool:
        """Take ``lock_key`` for ``owner`` unless it exists; it expires after ``ttl_seconds``."""
        ...

    async def unlock(self, lock_key: str, owner: str) -> bool:
        """Release ``lock_key`` if ``owner`` holds it; return whether it did."""
        ...

    async def ttl_seconds(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` if absent, ``math.inf`` if it never expires."""
        ...


# -- Redis --------------------------------------------------------------------------------

# A write in one round trip: SET with a TTL, the entry indexed under each tag (members whose
# entry expired are pruned from a sample first), then an optional PUBLISH of the
# invalidation, so a write and the news of it travel together.
# KEYS[1]: the entry; KEYS[2..]: its tag keys. ARGV: blob, TTL in ms, members to sample,
# and optionally the channel and the payload to publish.
# Sampled members are entry keys not listed in KEYS: fine on a single Redis, not on a cluster.
_PUT_LUA: Final = """
local ttl = tonumber(ARGV[2])
local samples = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 2, #KEYS do
  local tag = KEYS[i]
  for _, member in ipairs(redis.call('SRANDMEMBER', tag, samples)) do
    if member ~= KEYS[1] and redis.call('EXISTS', member) == 0 then
      redis.call('SREM', tag, member)
    end
  end
  redis.call('SADD', tag, KEYS[1])
  if redis.call('PTTL', tag) < ttl then
    redis.call('PEXPIRE', tag, ttl)
  end
end
if ARGV[4] then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return #KEYS - 1
"""

# Compare-and-delete: only the owner releases its lock.
_UNLOCK_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Move a tag set aside (RENAME keeps its TTL), so later tagged writes start a new set.
_SNAPSHOT_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"""


class RedisL2:
    """:class:`L2Store` on Redis through the node's :class:`RedisLink`.

    Every method raises :class:`runtime.RedisUnavailable` when Redis cannot be reached.
    """

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        client = link.client
        self._put = client.register_script(_PUT_LUA)
        # The node's client offers a lane (one connection, no per-command bookkeeping) for a
        # caller that writes one batch at a time: the cache's ordered writer, through write().
        make_lane = getattr(client, "lane", None)
        self._lane: _Lane | None = make_lane() if callable(make_lane) else None
        self._lane_busy = False
        self._unlock = client.register_script(_UNLOCK_LUA)
        self._snapshot = client.register_script(_SNAPSHOT_LUA)

    @property
    def link(self) -> RedisLink:
        """The Redis link this store reads and writes through."""
        return self._link

    @property
    def available(self) -> bool:
        """Whether the layer is believed reachable now; callers skip it while it is not."""
        return self._link.up

    async def get(self, key: str) -> bytes | None:
        """The blob stored at ``key``, or ``None``."""
        with self._link.map_errors("cache get"):
            blob = await self._link.client.get(key)
        return cast("bytes | None", blob)  # the link's client never decodes responses

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The blobs of ``keys`` in order (``None`` where absent), in one round trip."""
        if not keys:
            return []
        with self._link.map_errors("cache get_many"):
            blobs = await self._link.client.mget(list(keys))
        return cast("list[bytes | None]", blobs)

    async def set(
        self, key: str, blob: bytes, *, ttl_seconds: float, tags: Collection[str] = ()
    ) -> None:
        """Store ``blob`` for ``ttl_seconds`` and index it under each tag key in ``tags``."""
        ttl_ms = _ttl_ms(ttl_seconds)
        tag_keys = _check_tags(tags)
        with self._link.map_errors("cache set"):
            if tag_keys:
                await self._put(keys=[key, *tag_keys], args=[blob, ttl_ms, PRUNE_SAMPLES])
            else:
                await self._link.client.set(key, blob, px=ttl_ms)

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete ``keys``; return how many existed."""
        if not keys:
            return 0
        with self._link.map_errors("cache delete"):
            removed: int = await self._link.client.unlink(*keys)
        return removed

    async def write(
        self, operations: Sequence[Put | Delete], *, publish: tuple[str, bytes] | None = None
    ) -> list[int]:
        """Perform ``operations`` in order, then ``PUBLISH`` ``publish``: one round trip.

        One ``Put`` is one ``EVALSHA`` (the write and the publish in one script);
        anything else is one pipeline without ``MULTI`` on one connection, so Redis
        applies the commands in order. A script Redis forgot (it restarted) is
        loaded again and the whole batch resent: every command in it is idempotent.
        """
        if not operations:
            return []
        with self._link.map_errors("cache write"):
            try:
                return await self._write_once(operations, publish)
            except redis.exceptions.NoScriptError:
                await self._link.client.script_load(_PUT_LUA)
                return await self._write_once(operations, publish)

    async def _write_once(
        self, operations: Sequence[Put | Delete], publish: tuple[str, bytes] | None
    ) -> list[int]:
        lane = self._lane
        if lane is not None and not self._lane_busy:
            self._lane_busy = True
            try:
                replies = await lane.execute(self._commands(operations, publish))
            finally:
                self._lane_busy = False
            return _results(operations, replies, publish)
        client = self._link.client
        sha = self._put.sha
        if len(operations) == 1 and isinstance(operations[0], Put):
            put = operations[0]
            numkeys, arguments = _put_arguments(put, publish)
            await client.evalsha(sha, numkeys, *arguments)
            return [0]
        async with client.pipeline(transaction=False) as pipe:
            for operation in operations:
                if not isinstance(operation, Put):
                    pipe.unlink(*operation.keys)
                elif operation.tag_keys:
                    numkeys, arguments = _put_arguments(operation, None)
                    pipe.evalsha(sha, numkeys, *arguments)
                else:
                    pipe.set(operation.key, operation.blob, px=_ttl_ms(operation.ttl_seconds))
            if publish is not None:
                pipe.publish(*publish)
            replies = await pipe.execute(raise_on_error=False)
        return _results(operations, replies, publish)

    def _commands(
        self, operations: Sequence[Put | Delete], publish: tuple[str, bytes] | None
    ) -> list[tuple[str | bytes | int, ...]]:
        """The raw commands of :meth:`write`, in order (as the pipeline sends them)."""
        sha = self._put.sha
        if len(operations) == 1 and isinstance(operations[0], Put):
            numkeys, arguments = _put_arguments(operations[0], publish)
            return [("EVALSHA", sha, numkeys, *arguments)]
        commands: list[tuple[str | bytes | int, ...]] = []
        for operation in operations:
            if not isinstance(operation, Put):
                commands.append(("UNLINK", *operation.keys))
            elif operation.tag_keys:
                numkeys, arguments = _put_arguments(operation, None)
                commands.append(("EVALSHA", sha, numkeys, *arguments))
            else:
                ttl_ms = _ttl_ms(operation.ttl_seconds)
                commands.append(("SET", operation.key, operation.blob, "PX", ttl_ms))
        if publish is not None:
            commands.append(("PUBLISH", *publish))
        return commands

    async def exists(self, key: str) -> bool:
        """Whether ``key`` exists (of any kind: entry, tag set or lock)."""
        with self._link.map_errors("cache exists"):
            count: int = await self._link.client.exists(key)
        return count == 1

    async def delete_matching(self, pattern: str, *, batch_size: int = 1000) -> int:
        """Delete every key matching the Redis glob ``pattern``, in batches; return the count."""
        _check_batch(batch_size)
        client = self._link.client
        removed = 0
        cursor = 0
        while True:
            with self._link.map_errors("cache delete_matching"):
                cursor, keys = await client.scan(cursor=cursor, match=pattern, count=batch_size)
                if keys:
                    removed += await client.unlink(*keys)
            if cursor == 0:
                return removed
            await anyio.lowlevel.checkpoint()

    async def delete_tagged(self, tag_key: str, *, batch_size: int = 1000) -> int:
        """Delete the keys indexed under ``tag_key``, then the index; return the entries removed."""
        _check_batch(batch_size)
        client = self._link.client
        # Tags have no whitespace, so no tag key can collide with a snapshot's name.
        snapshot = f"{tag_key} deleting {secrets.token_hex(8)}"
        with self._link.map_errors("cache delete_tagged"):
            moved = await self._snapshot(keys=[tag_key, snapshot])
        if not moved:
            return 0
        removed = 0
        cursor = 0
        while True:
            with self._link.map_errors("cache delete_tagged"):
                cursor, members = await client.sscan(snapshot, cursor=cursor, count=batch_size)
                if members:
                    removed += await client.unlink(*members)
            if cursor == 0:
                break
            await anyio.lowlevel.checkpoint()
        with self._link.map_errors("cache delete_tagged"):
            await client.unlink(snapshot)
        return removed

    async def try_lock(self, lock_key: str, owner: str, ttl_seconds: float) -> bool:
        """Take ``lock_key`` for ``owner`` unless it exists; it expires after ``ttl_seconds``."""
        ttl_ms = _ttl_ms(ttl_seconds)
        with self._link.map_errors("cache try_lock"):
            taken = await self._link.client.set(lock_key, owner, nx=True, px=ttl_ms)
        return bool(taken)

    async def unlock(self, lock_key: str, owner: str) -> bool:
        """Release ``lock_key`` if ``owner`` holds it; return whether it did."""
        with self._link.map_errors("cache unlock"):
            released = await self._unlock(keys=[lock_key], args=[owner])
        return bool(released)

    async def ttl_seconds(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` if absent, ``math.inf`` if it never expires."""
        with self._link.map_errors("cache ttl_seconds"):
            pttl: int = await self._link.client.pttl(key)
        if pttl == -2:
            return None
        if pttl == -1:
            return math.inf
        return pttl / 1000

    def __repr__(self) -> str:
        return f"RedisL2({self._link!r})"


class _Lane(Protocol):
    """What :meth:`RedisL2.write` needs of the client's lane (``runtime``'s ``CommandLane``)."""

    async def execute(self, commands: Sequence[tuple[str | bytes | int, ...]]) -> list[object]:
        """Send ``commands`` in one write; their raw replies, a refused one as its error."""
        ...


def _results(
    operations: Sequence[Put | Delete], replies: Sequence[object], publish: object
) -> list[int]:
    """Each operation's result from its reply; the first error among the replies is raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    if len(operations) == 1 and isinstance(operations[0], Put):
        return [0]
    return [
        0 if isinstance(operation, Put) else int(reply)  # type: ignore[call-overload]
        for operation, reply in zip(operations, replies, strict=False)
    ]


def _put_arguments(
    put: Put, publish: tuple[str, bytes] | None
) -> tuple[int, list[str | bytes | int]]:
    """``numkeys`` and ``KEYS..., ARGV...`` of :data:`_PUT_LUA` for ``put``."""
    tag_keys = _check_tags(put.tag_keys) if put.tag_keys else []
    arguments: list[str | bytes | int] = [
        put.key,
        *tag_keys,
        put.blob,
        _ttl_ms(put.ttl_seconds),
        PRUNE_SAMPLES,
    ]
    if publish is not None:
        arguments += publish
    return 1 + len(tag_keys), arguments


from ._l2_memory import MemoryL2  # noqa: E402  (re-exported: the memory twin lives there)
