"""The single ordered writer that carries the cache actor's changes to Redis.

The actor applies every change to L1 at once, in its own message order, and
queues the Redis side here. One writer task drains the queue in that same
order, so Redis ends up in the order L1 saw (two concurrent ``set`` calls on
one key cannot land in Redis the other way round). Consecutive writes are
sent together: a batch is split into segments in which no key repeats, and
the writes of one segment run concurrently. After each segment the writer
tells the other nodes which keys changed.

When Redis is unreachable, the write is counted as degraded and the caller
still succeeds: the value lives in L1, and the operation is replayed once
Redis returns.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
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

__all__ = ["BulkDelete", "Completion", "Delete", "OrderedWriter", "Put"]

logger = logging.getLogger("actors.cache")


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
    latest per key, in order) and performed again, in that order, once Redis
    is back: a delete or an invalidation made during an outage is not undone
    when Redis returns with its old data, and a write made during it is not
    lost. Past ``queue_size`` logged operations the oldest are dropped and
    counted (``replay_dropped``).
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
        replay_poll_seconds: float = 0.25,
    ) -> None:
        self._l2 = l2
        self._coherence = coherence
        self._clock = clock
        self._queue: deque[Operation] = deque()
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._invalidate_batch_size = invalidate_batch_size
        self._replay_poll_seconds = replay_poll_seconds
        self._replay: OrderedDict[tuple[str, object], Operation] = OrderedDict()
        self._bulk_seq = 0
        self._work = anyio.Event()
        self._room = anyio.Event()
        self.writes = 0
        self.degraded = 0
        self.replayed = 0
        self.replay_dropped = 0
        self._outage_logged = False
        self._backoff = False  # an operation just failed: wait before replaying

    @property
    def depth(self) -> int:
        """Operations queued and not yet written."""
        return len(self._queue)

    @property
    def replay_depth(self) -> int:
        """Operations kept in the replay log during an outage, replayed when Redis returns."""
        return len(self._replay)

    async def submit(self, operation: Operation) -> Completion:
        """Queue ``operation``; wait for room while the queue is full (backpressure)."""
        while len(self._queue) >= self._queue_size:
            self._room = anyio.Event()
            await self._room.wait()
        self._queue.append(operation)
        self._work.set()
        return operation.completion

    def abandon(self) -> int:
        """Release every caller still waiting on a queued operation; return how many.

        Called when the actor stops: the queue dies with the incarnation, and
        no caller may hang on it.
        """
        abandoned = len(self._queue)
        while self._queue:
            self._queue.popleft().completion.finish()
        self._room.set()
        return abandoned

    async def run(self) -> None:
        """Perform queued operations in order, forever (a background task of the actor)."""
        queue = self._queue
        while True:
            if self._replay and not self._backoff and self._l2.available:
                self._requeue_replay()
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
        # Operations wait for Redis: look again now and then, or sooner on new work.
        with self._clock.move_on_after(self._replay_poll_seconds) as scope:
            await self._work.wait()
        if scope.cancelled_caught:
            self._backoff = False

    def _requeue_replay(self) -> None:
        logger.info("redis is back: replaying %d cache operations", len(self._replay))
        self.replayed += len(self._replay)
        self._queue.extendleft(reversed(self._replay.values()))
        self._replay.clear()

    async def _write(self, segment: list[Put | Delete]) -> None:
        results = [0] * len(segment)
        if len(segment) == 1:  # the common case: no task group for one write
            await self._perform(segment[0], results, 0)
        else:
            async with anyio.create_task_group() as tg:
                for index, operation in enumerate(segment):
                    tg.start_soon(self._perform, operation, results, index)
        keys = tuple(
            key
            for operation in segment
            for key in ((operation.key,) if isinstance(operation, Put) else operation.keys)
        )
        # Callers are released only once the other nodes have been told.
        await self._coherence.publish(Invalidation(node=self._coherence.node, keys=keys))
        for operation, result in zip(segment, results, strict=True):
            operation.completion.finish(result)

    async def _perform(self, operation: Put | Delete, results: list[int], index: int) -> None:
        self.writes += 1
        if not self._l2.available:  # Redis is down: keep it in L1, do not wait on Redis
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
            self._outage_logged = False
        except RedisUnavailable as exc:
            self._degrade(operation, exc)

    async def _bulk(self, operation: BulkDelete) -> None:
        self.writes += 1
        if not self._l2.available:
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
            self._degrade(operation, exc)
            operation.completion.finish()
            return
        await self._coherence.publish(message)
        operation.completion.finish(removed)

    def _degrade(self, operation: Operation, exc: RedisUnavailable) -> None:
        # Logged once per outage; the count tells how many writes it cost.
        if not self._outage_logged:
            logger.warning("cache writes are kept in L1 only until Redis is back: %s", exc)
            self._outage_logged = True
        self.degraded += 1
        self._backoff = True
        self._log_for_replay(operation)

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
        while len(replay) > self._queue_size:
            replay.popitem(last=False)
            self.replay_dropped += 1


def _replayable(operation: Put | BulkDelete) -> Operation:
    """A copy of ``operation`` that nobody waits on."""
    return msgspec.structs.replace(operation, completion=Completion())


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
