"""The single ordered writer that carries the cache actor's changes to Redis.

The actor applies every change to L1 at once, in its own message order, and
queues the Redis side here. One writer task drains the queue in that same
order, so Redis ends up in the order L1 saw (two concurrent ``set`` calls on
one key cannot land in Redis the other way round). Consecutive writes are
sent together: a batch is split into segments in which no key repeats, and
the writes of one segment run concurrently. After each segment the writer
tells the other nodes which keys changed in Redis (an operation that did not
reach Redis is told when it is replayed, so a degraded write never waits on
Redis a second time to publish).

When Redis is unreachable, the write is counted as degraded and the caller
still succeeds: the value lives in L1, and the operation goes to the replay
log. The log keeps the order of the operations: while it holds anything, no
later operation reaches Redis before it. Later operations made while Redis is
still unreachable join the log (a later write of a key replaces the key's
entry there); once Redis answers again the log is sent first, at once (not
when the writer next goes idle), and the operations queued behind it follow
in order. So an outage-era value never lands over a newer one.

While a key has an operation queued or logged, the actor keeps Redis's
(possibly older) value of that key out of L1 (:meth:`OrderedWriter.pending`),
and each write that reaches Redis bumps the key's write epoch, so a read that
raced it cannot fill L1 either: the writing node's L1 ends equal to Redis.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict, deque
from typing import TYPE_CHECKING

import anyio
import msgspec

from runtime import RedisUnavailable

from ._completion import Completion
from ._messages import Invalidation

if TYPE_CHECKING:
    from runtime import Clock

    from ._coherence import Coherence
    from ._l2 import L2Store
    from ._table import CacheTable

__all__ = ["BulkDelete", "Completion", "Delete", "OrderedWriter", "Put"]

logger = logging.getLogger("actors.cache")

#: Writes of one segment in flight at once: well under the Redis client's connection pool
#: (a replay of hundreds of keys must not exhaust it, which the link would take for an outage).
MAX_CONCURRENT_WRITES = 32


class Put(msgspec.Struct, kw_only=True):
    """Store ``blob`` at ``key`` for ``ttl_seconds``, indexed under ``tag_keys``."""

    key: str
    blob: bytes
    ttl_seconds: float
    tag_keys: tuple[str, ...]
    completion: Completion


class Delete(msgspec.Struct, kw_only=True):
    """Delete ``keys`` (full, namespaced keys)."""

    keys: tuple[str, ...]
    completion: Completion


class BulkDelete(msgspec.Struct, kw_only=True):
    """Delete by a full-key glob (``pattern``) or by a tag (``tag`` and its ``tag_key``)."""

    completion: Completion
    pattern: str | None = None
    tag: str | None = None
    tag_key: str | None = None


Operation = Put | Delete | BulkDelete


class OrderedWriter:
    """A bounded queue of L2 operations and the task that performs them in order.

    Operations that find Redis down are kept in a bounded replay log (the
    latest per key, in order) and performed again, in that order, as soon as
    Redis is back and before anything queued after them: a delete or an
    invalidation made during an outage is not undone when Redis returns with
    its old data, a write made during it is not lost, and no write made after
    it is overwritten by it. After a failed command the writer does not try
    Redis again for ``retry_seconds`` (operations meanwhile join the log, in
    order). Past ``queue_size`` logged operations the oldest are dropped and
    counted (``replay_dropped``).

    With ``table``, each operation that reaches Redis bumps its keys' write
    epochs there, so an L1 fill read before it is refused.
    """

    def __init__(
        self,
        l2: L2Store,
        coherence: Coherence,
        *,
        clock: Clock,
        queue_size: int,
        batch_size: int,
        invalidate_batch_size: int,
        retry_seconds: float = 0.05,
        table: CacheTable | None = None,
    ) -> None:
        self._l2 = l2
        self._coherence = coherence
        self._clock = clock
        self._queue: deque[Operation] = deque()
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._invalidate_batch_size = invalidate_batch_size
        self._retry_seconds = retry_seconds
        self._table = table
        self._replay: OrderedDict[tuple[str, object], Operation] = OrderedDict()
        self._bulk_seq = 0
        self._work = anyio.Event()
        self._room = anyio.Event()
        self.writes = 0
        self.degraded = 0
        self.replayed = 0
        self.replay_dropped = 0
        self._outage_logged = False
        self._retry_at = -math.inf  # after a failure, no Redis command before this (monotonic)
        self._queued_keys: Counter[str] = Counter()  # keys of queued (or running) Put/Delete
        self._queued_bulk = 0
        self._replay_bulk = 0  # bulk operations in the replay log

    @property
    def depth(self) -> int:
        """Operations queued and not yet written."""
        return len(self._queue)

    @property
    def replay_depth(self) -> int:
        """Operations kept in the replay log during an outage, replayed when Redis returns."""
        return len(self._replay)

    def pending(self, key: str) -> bool:
        """Whether an operation that may change ``key`` is queued, running or in the replay log.

        Redis may still hold an older value of ``key`` meanwhile: the actor does
        not fill L1 from it.
        """
        return (
            self._queued_keys[key] > 0
            or self._queued_bulk > 0
            or self._replay_bulk > 0
            or ("key", key) in self._replay
        )

    def holds_write(self, key: str) -> bool:
        """Whether a write of ``key`` itself (not a bulk invalidation) is queued or in the log.

        The node's L1 then holds the newest acknowledged value of ``key``, and Redis
        will get it: a coherence reset keeps that entry.
        """
        return self._queued_keys[key] > 0 or ("key", key) in self._replay

    async def submit(self, operation: Operation) -> Completion:
        """Queue ``operation``; wait for room while the queue is full (backpressure)."""
        while len(self._queue) >= self._queue_size:
            self._room = anyio.Event()
            await self._room.wait()
        self._enqueue(operation)
        self._work.set()
        return operation.completion

    def _enqueue(self, operation: Operation, *, front: bool = False) -> None:
        if front:
            self._queue.appendleft(operation)
        else:
            self._queue.append(operation)
        self._track(operation, 1)

    def _track(self, operation: Operation, delta: int) -> None:
        if isinstance(operation, BulkDelete):
            self._queued_bulk += delta
            return
        keys = (operation.key,) if isinstance(operation, Put) else operation.keys
        counts = self._queued_keys
        for key in keys:
            counts[key] += delta
            if counts[key] <= 0:
                del counts[key]

    def _redis_usable(self) -> bool:
        """Redis is believed up, and no command failed within ``retry_seconds``."""
        return self._l2.available and self._clock.monotonic() >= self._retry_at

    def abandon(self) -> int:
        """Release every caller still waiting on a queued operation; return how many.

        Called when the actor stops: the queue dies with the incarnation, and
        no caller may hang on it.
        """
        abandoned = len(self._queue)
        while self._queue:
            self._queue.popleft().completion.finish()
        self._queued_keys.clear()
        self._queued_bulk = 0
        self._room.set()
        return abandoned

    async def run(self) -> None:
        """Perform queued operations in order, forever (a background task of the actor)."""
        queue = self._queue
        while True:
            if self._replay and self._redis_usable():
                self._requeue_replay()  # first, before anything queued after it
            if not queue:
                await self._wait_for_work()
                continue
            first = queue.popleft()
            if isinstance(first, BulkDelete):
                await self._bulk(first)
            else:
                batch: list[Put | Delete] = [first]
                while queue and len(batch) < self._batch_size:
                    if isinstance(queue[0], BulkDelete):
                        break
                    batch.append(queue.popleft())  # type: ignore[arg-type]
                for segment in _segments(batch):
                    await self._write(segment)
            self._room.set()

    async def _wait_for_work(self) -> None:
        self._work = anyio.Event()
        if not self._replay:
            await self._work.wait()
            return
        # Operations wait for Redis: look again soon, or sooner on new work.
        with self._clock.move_on_after(self._retry_seconds):
            await self._work.wait()

    def _requeue_replay(self) -> None:
        logger.info("redis is back: replaying %d cache operations", len(self._replay))
        self.replayed += len(self._replay)
        for operation in reversed(self._replay.values()):
            self._enqueue(operation, front=True)
        self._replay.clear()
        self._replay_bulk = 0

    async def _write(self, segment: list[Put | Delete]) -> None:
        results = [0] * len(segment)
        reached = [False] * len(segment)  # which operations changed Redis
        if len(segment) == 1:  # the common case: no task group for one write
            await self._perform(segment[0], results, reached, 0)
        else:
            limiter = anyio.CapacityLimiter(MAX_CONCURRENT_WRITES)

            async def perform(operation: Put | Delete, index: int) -> None:
                async with limiter:
                    await self._perform(operation, results, reached, index)

            async with anyio.create_task_group() as tg:
                for index, operation in enumerate(segment):
                    tg.start_soon(perform, operation, index)
        if self._table is not None:
            for key in _keys_of(segment):  # a read that raced the write must not fill L1
                self._table.wrote(key)
        for operation in segment:
            self._track(operation, -1)
        # Only what reached Redis is news to the other nodes; a degraded operation is told
        # when it is replayed. (Publishing it now would also wait a whole command deadline
        # on a stalled Redis, for every degraded write, while the link is known to be down.)
        changed = _keys_of([op for op, done in zip(segment, reached, strict=True) if done])
        if changed:
            # Callers are released only once the other nodes have been told.
            await self._coherence.publish(Invalidation(node=self._coherence.node, keys=changed))
        for operation, result in zip(segment, results, strict=True):
            operation.completion.finish(result)

    async def _perform(
        self, operation: Put | Delete, results: list[int], reached: list[bool], index: int
    ) -> None:
        self.writes += 1
        # Redis is down, or older operations wait in the log: join them there, in order.
        if self._replay or not self._redis_usable():
            self._degrade(operation, RedisUnavailable("cache write", "redis is down"))
            return
        try:
            if isinstance(operation, Put):
                await self._l2.set(
                    operation.key,
                    operation.blob,
                    ttl_seconds=operation.ttl_seconds,
                    tags=operation.tag_keys,
                )
            else:
                results[index] = await self._l2.delete(operation.keys)
            reached[index] = True
            self._outage_logged = False
        except RedisUnavailable as exc:
            self._failed(operation, exc)

    async def _bulk(self, operation: BulkDelete) -> None:
        try:
            await self._bulk_once(operation)
        finally:
            self._track(operation, -1)

    async def _bulk_once(self, operation: BulkDelete) -> None:
        self.writes += 1
        if self._replay or not self._redis_usable():
            self._degrade(operation, RedisUnavailable("cache invalidation", "redis is down"))
            operation.completion.finish()
            return
        try:
            if operation.pattern is not None:
                removed = await self._l2.delete_matching(
                    operation.pattern, batch_size=self._invalidate_batch_size
                )
                message = Invalidation(node=self._coherence.node, pattern=operation.pattern)
            else:
                assert operation.tag_key is not None  # built by the actor
                removed = await self._l2.delete_tagged(operation.tag_key)
                message = Invalidation(node=self._coherence.node, tag=operation.tag)
        except RedisUnavailable as exc:
            self._failed(operation, exc)
            operation.completion.finish()
            return
        if self._table is not None:
            self._table.wrote_everything()
        await self._coherence.publish(message)
        operation.completion.finish(removed)

    def _degrade(self, operation: Operation, exc: RedisUnavailable) -> None:
        # Logged once per outage; the count tells how many writes it cost.
        if not self._outage_logged:
            logger.warning("cache writes are kept in L1 only until Redis is back: %s", exc)
            self._outage_logged = True
        self.degraded += 1
        self._log_for_replay(operation)

    def _failed(self, operation: Operation, exc: RedisUnavailable) -> None:
        """A command failed (perhaps before the link noticed): log it and wait a little."""
        self._retry_at = self._clock.monotonic() + self._retry_seconds
        self._degrade(operation, exc)

    def _log_for_replay(self, operation: Operation) -> None:
        replay = self._replay
        if isinstance(operation, BulkDelete):
            self._bulk_seq += 1
            entries: list[tuple[tuple[str, object], Operation]] = [
                (("bulk", self._bulk_seq), _replayable(operation))
            ]
        elif isinstance(operation, Put):
            entries = [(("key", operation.key), _replayable(operation))]
        else:
            entries = [
                (("key", key), Delete(keys=(key,), completion=Completion()))
                for key in operation.keys
            ]
        for slot, replayable in entries:
            replay.pop(slot, None)  # only the latest operation on a key matters
            replay[slot] = replayable
            if isinstance(replayable, BulkDelete):
                self._replay_bulk += 1
        while len(replay) > self._queue_size:
            _, dropped = replay.popitem(last=False)
            self.replay_dropped += 1
            if isinstance(dropped, BulkDelete):
                self._replay_bulk -= 1


def _replayable(operation: Put | BulkDelete) -> Operation:
    """A copy of ``operation`` that nobody waits on."""
    return msgspec.structs.replace(operation, completion=Completion())


def _keys_of(operations: list[Put | Delete]) -> tuple[str, ...]:
    """The keys ``operations`` change, in order."""
    return tuple(
        key
        for operation in operations
        for key in ((operation.key,) if isinstance(operation, Put) else operation.keys)
    )


def _segments(batch: list[Put | Delete]) -> list[list[Put | Delete]]:
    """Split ``batch`` so that no key appears twice in a segment (order is kept)."""
    segments: list[list[Put | Delete]] = [[]]
    seen: set[str] = set()
    for operation in batch:
        keys = (operation.key,) if isinstance(operation, Put) else operation.keys
        if seen.intersection(keys):
            segments.append([])
            seen = set()
        segments[-1].append(operation)
        seen.update(keys)
    return segments
