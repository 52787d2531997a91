"""The cache's shared layer in process memory: :class:`MemoryL2`, the twin of ``RedisL2``.

Same semantics as :class:`~actors.cache._l2.RedisL2` (see :mod:`._l2`), for
nodes without Redis and for tests.
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio.lowlevel

from ._keys import compile_glob
from ._l2 import PRUNE_SAMPLES, _check_batch, _check_tags, _ttl_ms
from ._operations import Put

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from runtime import Clock

    from ._operations import Delete

__all__ = ["MemoryL2"]

V = TypeVar("V")


class _Item(Generic[V]):
    __slots__ = ("deadline", "value")

    def __init__(self, value: V, deadline: float) -> None:
        self.value = value
        self.deadline = deadline


class _Table(Generic[V]):
    """Keys with deadlines: lazy expiry, and past ``max_items`` the soonest deadline goes."""

    def __init__(self, max_items: int) -> None:
        self.items: dict[str, _Item[V]] = {}
        self._max_items = max_items
        self._heap: list[tuple[float, str]] = []  # (deadline, key); stale rows are skipped

    def live(self, key: str, now: float) -> _Item[V] | None:
        item = self.items.get(key)
        if item is not None and item.deadline <= now:
            del self.items[key]
            return None
        return item

    def put(self, key: str, item: _Item[V]) -> list[_Item[V]]:
        """Store ``item`` (a changed deadline must be put again); return what was evicted."""
        self.items[key] = item
        heapq.heappush(self._heap, (item.deadline, key))
        evicted: list[_Item[V]] = []
        while len(self.items) > self._max_items:
            deadline, victim = heapq.heappop(self._heap)
            current = self.items.get(victim)
            if current is not None and current.deadline == deadline:
                del self.items[victim]
                evicted.append(current)
        if len(self._heap) > 2 * len(self.items) + 64:
            self._heap = [(entry.deadline, k) for k, entry in self.items.items()]
            heapq.heapify(self._heap)
        return evicted


class MemoryL2:
    """:class:`L2Store` in process memory, for nodes without Redis and for tests.

    Same semantics as :class:`RedisL2`, on ``clock.monotonic()`` time: a key is
    gone once its deadline is reached. Entries, tag sets and locks are each
    bounded by ``max_entries``. Past the bound, the item that expires soonest
    is dropped (Redis's ``volatile-ttl`` policy); a dropped tag set takes its
    entries with it, so an invalidation is never missed, and a dropped lock
    merely allows a second filler.
    """

    def __init__(self, clock: Clock, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"MemoryL2 max_entries must be >= 1, got {max_entries!r}")
        self._clock = clock
        self._entries: _Table[bytes] = _Table(max_entries)
        self._locks: _Table[str] = _Table(max_entries)
        self._tags: _Table[dict[str, None]] = _Table(max_entries)
        self._tables = (self._entries, self._locks, self._tags)

    @property
    def available(self) -> bool:
        """Whether the layer is believed reachable now; callers skip it while it is not."""
        return True

    def __len__(self) -> int:
        """Entries held, including expired ones not yet dropped."""
        return len(self._entries.items)

    def _delete_one(self, key: str, now: float) -> int:
        removed = 0
        for table in self._tables:
            if table.live(key, now) is not None:
                del table.items[key]
                removed = 1
        return removed

    def _get_string(self, key: str, now: float) -> bytes | None:
        if (entry := self._entries.live(key, now)) is not None:
            return entry.value
        if (lock := self._locks.live(key, now)) is not None:
            return lock.value.encode()
        return None

    async def get(self, key: str) -> bytes | None:
        """The blob stored at ``key``, or ``None``."""
        return self._get_string(key, self._clock.monotonic())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The blobs of ``keys`` in order (``None`` where absent), in one round trip."""
        now = self._clock.monotonic()
        return [self._get_string(key, now) for key in keys]

    async def set(
        self, key: str, blob: bytes, *, ttl_seconds: float, tags: Collection[str] = ()
    ) -> None:
        """Store ``blob`` for ``ttl_seconds`` and index it under each tag key in ``tags``."""
        now = self._clock.monotonic()
        deadline = now + _ttl_ms(ttl_seconds) / 1000
        tag_keys = _check_tags(tags)
        self._locks.items.pop(key, None)  # SET replaces a key of any kind
        self._tags.items.pop(key, None)
        self._entries.put(key, _Item(bytes(blob), deadline))
        for tag_key in tag_keys:
            index: _Item[dict[str, None]] | None = self._tags.live(tag_key, now)
            if index is None:
                index = _Item({}, deadline)
            else:
                self._prune(index.value, key, now)
            index.value[key] = None
            index.deadline = max(index.deadline, deadline)
            for dropped in self._tags.put(tag_key, index):
                for member in dropped.value:
                    self._entries.items.pop(member, None)

    def _prune(self, members: dict[str, None], key: str, now: float) -> None:
        """Check the oldest members (round robin): drop the dead, move the live to the end."""
        for member in list(itertools.islice(members, PRUNE_SAMPLES)):
            if member == key:
                continue
            del members[member]
            if any(table.live(member, now) is not None for table in self._tables):
                members[member] = None

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete ``keys``; return how many existed."""
        now = self._clock.monotonic()
        return sum(self._delete_one(key, now) for key in keys)

    async def write(
        self, operations: Sequence[Put | Delete], *, publish: tuple[str, bytes] | None = None
    ) -> list[int]:
        """Perform ``operations`` in order; results as :meth:`L2Store.write`.

        Raises:
            ValueError: with ``publish``: this store shares no Redis with a fanout.
        """
        if publish is not None:
            raise ValueError("MemoryL2 cannot publish: it shares no Redis with a fanout")
        results: list[int] = []
        for operation in operations:
            if isinstance(operation, Put):
                await self.set(
                    operation.key,
                    operation.blob,
                    ttl_seconds=operation.ttl_seconds,
                    tags=operation.tag_keys,
                )
                results.append(0)
            else:
                results.append(await self.delete(operation.keys))
        return results

    async def exists(self, key: str) -> bool:
        """Whether ``key`` exists (of any kind: entry, tag set or lock)."""
        now = self._clock.monotonic()
        return any(table.live(key, now) is not None for table in self._tables)

    async def delete_matching(self, pattern: str, *, batch_size: int = 1000) -> int:
        """Delete every key matching the Redis glob ``pattern``, in batches; return the count."""
        _check_batch(batch_size)
        matches = compile_glob(pattern)
        snapshot = [key for table in self._tables for key in table.items]
        removed = 0
        for start in range(0, len(snapshot), batch_size):
            now = self._clock.monotonic()
            for key in snapshot[start : start + batch_size]:
                if matches(key):
                    removed += self._delete_one(key, now)
            await anyio.lowlevel.checkpoint()
        return removed

    async def delete_tagged(self, tag_key: str, *, batch_size: int = 1000) -> int:
        """Delete the keys indexed under ``tag_key``, then the index; return the entries removed."""
        _check_batch(batch_size)
        index = self._tags.live(tag_key, self._clock.monotonic())
        if index is None:
            return 0
        del self._tags.items[tag_key]  # the snapshot: later tagged writes start a new set
        members = list(index.value)
        removed = 0
        for start in range(0, len(members), batch_size):
            now = self._clock.monotonic()
            batch = members[start : start + batch_size]
            removed += sum(self._delete_one(key, now) for key in batch)
            await anyio.lowlevel.checkpoint()
        return removed

    async def try_lock(self, lock_key: str, owner: str, ttl_seconds: float) -> bool:
        """Take ``lock_key`` for ``owner`` unless it exists; it expires after ``ttl_seconds``."""
        now = self._clock.monotonic()
        deadline = now + _ttl_ms(ttl_seconds) / 1000
        if any(table.live(lock_key, now) is not None for table in self._tables):
            return False
        self._locks.put(lock_key, _Item(owner, deadline))
        return True

    async def unlock(self, lock_key: str, owner: str) -> bool:
        """Release ``lock_key`` if ``owner`` holds it; return whether it did."""
        lock = self._locks.live(lock_key, self._clock.monotonic())
        if lock is None or lock.value != owner:
            return False
        del self._locks.items[lock_key]
        return True

    async def ttl_seconds(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` if absent, ``math.inf`` if it never expires."""
        now = self._clock.monotonic()
        for table in self._tables:
            if (item := table.live(key, now)) is not None:
                return item.deadline - now
        return None

    def __repr__(self) -> str:
        return f"MemoryL2({len(self._entries.items)} entries, {len(self._tags.items)} tags)"
