"""The single ordered writer that carries the cache actor's changes to Redis.

The actor applies every change to L1 at once, in its own message order, and
queues the Redis side here. One writer task drains the queue in that same
order, so Redis ends up in the order L1 saw (two concurrent ``set`` calls on
one key cannot land in Redis the other way round). Consecutive writes are
sent together: a batch is split into segments in which no key repeats, and
the writes of one segment run concurrently. After each segment the writer
tells the other nodes which keys changed.

When Redis is unreachable, the write is counted as degraded and the caller
still succeeds: the value lives in L1 until Redis returns.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import anyio
import msgspec

from runtime import RedisUnavailable

from ._messages import Invalidation

if TYPE_CHECKING:
    from ._coherence import Coherence
    from ._l2 import L2Store

__all__ = ["BulkDelete", "Completion", "Delete", "OrderedWriter", "Put"]

logger = logging.getLogger("actors.cache")


class Completion:
    """Set when the writer has carried an operation to Redis (or given up on it)."""

    __slots__ = ("_done", "result")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.result = 0

    def finish(self, result: int = 0) -> None:
        self.result = result
        self._done.set()

    async def wait(self) -> int:
        await self._done.wait()
        return self.result


class Put(msgspec.Struct, kw_only=True):
    key: str
    blob: bytes
    ttl_seconds: float
    tag_keys: tuple[str, ...]
    completion: Completion


class Delete(msgspec.Struct, kw_only=True):
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
    """A bounded queue of L2 operations and the task that performs them in order."""

    def __init__(
        self,
        l2: L2Store,
        coherence: Coherence,
        *,
        queue_size: int,
        batch_size: int,
        invalidate_batch_size: int,
    ) -> None:
        self._l2 = l2
        self._coherence = coherence
        self._queue: deque[Operation] = deque()
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._invalidate_batch_size = invalidate_batch_size
        self._work = anyio.Event()
        self._room = anyio.Event()
        self.writes = 0
        self.degraded = 0
        self._outage_logged = False

    @property
    def depth(self) -> int:
        return len(self._queue)

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
            if not queue:
                self._work = anyio.Event()
                await self._work.wait()
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

    async def _write(self, segment: list[Put | Delete]) -> None:
        async with anyio.create_task_group() as tg:
            for operation in segment:
                tg.start_soon(self._perform, operation)
        keys = tuple(
            key
            for operation in segment
            for key in ((operation.key,) if isinstance(operation, Put) else operation.keys)
        )
        await self._coherence.publish(Invalidation(node=self._coherence.node, keys=keys))

    async def _perform(self, operation: Put | Delete) -> None:
        self.writes += 1
        if not self._l2.available:  # Redis is down: keep it in L1, do not wait on Redis
            self._degrade(RedisUnavailable("cache write", "redis is down"))
            operation.completion.finish()
            return
        try:
            if isinstance(operation, Put):
                await self._l2.set(
                    operation.key,
                    operation.blob,
                    ttl_seconds=operation.ttl_seconds,
                    tags=operation.tag_keys,
                )
                operation.completion.finish()
            else:
                operation.completion.finish(await self._l2.delete(operation.keys))
            self._outage_logged = False
        except RedisUnavailable as exc:
            self._degrade(exc)
            operation.completion.finish()

    async def _bulk(self, operation: BulkDelete) -> None:
        self.writes += 1
        removed = 0
        if not self._l2.available:
            self._degrade(RedisUnavailable("cache invalidation", "redis is down"))
            operation.completion.finish()
            return
        try:
            if operation.pattern is not None:
                removed = await self._l2.delete_matching(
                    operation.pattern, batch_size=self._invalidate_batch_size
                )
                message = Invalidation(node=self._coherence.node, pattern=operation.pattern)
            else:
                assert operation.tag_key is not None
                removed = await self._l2.delete_tagged(operation.tag_key)
                message = Invalidation(node=self._coherence.node, tag=operation.tag)
        except RedisUnavailable as exc:
            self._degrade(exc)
            operation.completion.finish()
            return
        await self._coherence.publish(message)
        operation.completion.finish(removed)

    def _degrade(self, exc: RedisUnavailable) -> None:
        # Logged once per outage; the count tells how many writes it cost.
        if not self._outage_logged:
            logger.warning("cache writes are kept in L1 only until Redis is back: %s", exc)
            self._outage_logged = True
        self.degraded += 1


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
