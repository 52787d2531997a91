"""The single ordered writer that carries the cache's changes to Redis.

Every change is applied to L1 and handed to the writer in one synchronous step
(no ``await`` in between, so on the event loop the two are atomic): the order
of the writer's queue is the order L1 saw, and the writer carries the queue to
Redis in that order, so two concurrent ``set`` calls on one key cannot land in
Redis the other way round.

Two ways to Redis, never at the same time (:attr:`OrderedWriter.busy`):

* **direct**: when nothing is queued, in flight or waiting for replay,
  :meth:`OrderedWriter.send` lets the caller's own task carry its one write,
  with no hop to another task;
* **queued**: otherwise the operation joins the queue, and the writer task
  takes everything queued (up to ``batch_size``) at once.

Either way one round trip carries the batch and the news of it: the writes,
in order, on one connection (a pipeline without ``MULTI``; a lone ``set`` is
one script), followed by the invalidation's ``PUBLISH`` naming the keys
changed, when the fanout shares the L2's Redis (otherwise the invalidation is
published right after). Callers are released only then. A direct write whose
caller is cancelled is not lost: it goes back to the head of the queue.

When Redis is unreachable, the write is counted as degraded and the caller
still succeeds: the value lives in L1, and the operation goes to the replay
log. The log keeps the order of the operations: while it holds anything, no
later operation reaches Redis before it. Later operations made while Redis is
still unreachable join the log (a later write of a key replaces the key's
entry there); once Redis answers again the log is sent first, at once (not
when the writer next goes idle), and the operations queued behind it follow
in order. So an outage-era value never lands over a newer one. An operation
that did not reach Redis is told to the other nodes when it is replayed, so a
degraded write never waits on Redis a second time to publish.

While a key has an operation queued, in flight or logged, the actor keeps
Redis's (possibly older) value of that key out of L1
(:meth:`OrderedWriter.pending`), and each write that reaches Redis bumps the
key's write epoch, so a read that raced it cannot fill L1 either: the writing
node's L1 ends equal to Redis.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

import anyio
import msgspec

from runtime import RedisUnavailable

from ._completion import Completion
from ._messages import Invalidation
from ._operations import BulkDelete, Delete, Operation, Put

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from runtime import Clock

    from ._coherence import Coherence
    from ._l2 import L2Store
    from ._table import CacheTable

__all__ = ["BulkDelete", "Completion", "Delete", "OrderedWriter", "Put"]

logger = logging.getLogger("actors.cache")


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
        self._queued_keys: dict[str, int] = {}  # keys of queued (or running) Put/Delete
        self._queued_bulk = 0
        self._replay_bulk = 0  # bulk operations in the replay log
        self._busy = False  # a batch (the writer's, or a caller's direct write) is under way
        self._carrying: list[Operation] = []  # the writer task's batch under way
        self._direct_writes = 0  # a caller's direct write under way (0 or 1)
        # Where the invalidation is PUBLISHed in the write's own round trip (None: after it).
        self._channel = coherence.piggyback_channel(l2)

    @property
    def depth(self) -> int:
        """Operations queued and not yet written (those on their way to Redis included)."""
        return len(self._queue) + len(self._carrying) + self._direct_writes

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
            key in self._queued_keys
            or self._queued_bulk > 0
            or self._replay_bulk > 0
            or ("key", key) in self._replay
        )

    def holds_write(self, key: str) -> bool:
        """Whether a write of ``key`` itself (not a bulk invalidation) is queued or in the log.

        The node's L1 then holds the newest acknowledged value of ``key``, and Redis
        will get it: a coherence reset keeps that entry.
        """
        return key in self._queued_keys or ("key", key) in self._replay

    @property
    def busy(self) -> bool:
        """Whether a batch is on its way to Redis (the writer's, or a caller's direct write)."""
        return self._busy

    @property
    def full(self) -> bool:
        """Whether the queue is at ``queue_size``: wait for room before the next change."""
        return len(self._queue) >= self._queue_size

    async def wait_for_room(self) -> None:
        """Wait while the queue is full (backpressure); return at once when it is not.

        Call it before changing L1, then change L1 and :meth:`enqueue` (or
        :meth:`send`) without an ``await`` in between.
        """
        while len(self._queue) >= self._queue_size:
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()

    async def submit(self, operation: Operation) -> Completion:
        """Queue ``operation``; wait for room while the queue is full (backpressure)."""
        await self.wait_for_room()
        return self.enqueue(operation)

    def enqueue(self, operation: Operation) -> Completion:
        """Queue ``operation`` for the writer task, even past ``queue_size``; return its receipt."""
        self._enqueue(operation)
        self._work.set()
        return operation.completion

    def send(self, operation: Put | Delete) -> Awaitable[int]:
        """Carry ``operation`` to Redis; await the result (a delete's count, else 0).

        Starts at once, so call it right after the L1 change, with no ``await``
        in between. When nothing is queued, under way or waiting for replay and
        Redis is usable, the caller's task carries the write itself (the direct
        way); otherwise the operation is queued for the writer task.
        """
        if self._busy or self._queue or self._replay or not self._redis_usable():
            return self.enqueue(operation).wait()
        self._busy = True
        self._direct_writes = 1
        self._track(operation, 1)
        return self._direct(operation)

    async def _direct(self, operation: Put | Delete) -> int:
        try:
            if isinstance(operation, Put) and self._channel is not None:
                result = await self._carry_put(operation, self._channel)
            else:
                result = (await self._carry([operation], usable=True))[0]
        except BaseException:
            # Cancelled on the way (or an unexpected error): the change is in L1 and must
            # still reach Redis, in order. Nothing can have overtaken it: put it first.
            if not operation.completion.done:
                self._queue.appendleft(operation)
                self._work.set()
            raise
        finally:
            self._busy = False
            self._direct_writes = 0
            if self._queue or self._replay:
                self._work.set()
        return result

    async def _carry_put(self, put: Put, channel: str) -> int:
        """:meth:`_carry` for one ``Put`` whose invalidation rides in its round trip."""
        self.writes += 1
        coherence = self._coherence
        key = put.key
        try:
            await self._l2.write((put,), publish=(channel, coherence.encode_keys((key,))))
        except RedisUnavailable as exc:
            self._fail([put], exc, retry=True)
            return 0
        self._outage_logged = False
        if self._table is not None:
            self._table.wrote(key)  # a read that raced the write must not fill L1
        coherence.piggybacked()
        self._track(put, -1)
        put.completion.finish()
        return 0

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
            count = counts.get(key, 0) + delta
            if count > 0:
                counts[key] = count
            else:
                counts.pop(key, None)

    def _redis_usable(self) -> bool:
        """Redis is believed up, and no command failed within ``retry_seconds``."""
        return self._l2.available and (
            self._retry_at == -math.inf or self._clock.monotonic() >= self._retry_at
        )

    def abandon(self) -> int:
        """Release every caller still waiting on a queued operation; return how many.

        Called when the actor stops: the queue dies with the incarnation, and
        no caller may hang on it.
        """
        abandoned = len(self._queue) + len(self._carrying)
        while self._queue:
            self._queue.popleft().completion.finish()
        for operation in self._carrying:
            operation.completion.finish()
        self._carrying = []
        self._queued_keys.clear()
        self._queued_bulk = 0
        self._room.set()
        return abandoned

    async def run(self) -> None:
        """Perform queued operations in order, forever (a background task of the actor)."""
        queue = self._queue
        while True:
            if self._busy:  # a caller's direct write: what is queued goes after it
                await self._wait_for_work()
                continue
            if self._replay and self._redis_usable():
                self._requeue_replay()  # first, before anything queued after it
            if not queue:
                await self._wait_for_work()
                continue
            first = queue.popleft()
            self._busy = True  # (no await since the pop: no direct write can start meanwhile)
            try:
                if isinstance(first, BulkDelete):
                    self._carrying = [first]
                    await self._bulk(first)
                else:
                    batch: list[Put | Delete] = [first]
                    while queue and len(batch) < self._batch_size:
                        if isinstance(queue[0], BulkDelete):
                            break
                        batch.append(queue.popleft())  # type: ignore[arg-type]
                    self._carrying = list(batch)
                    await self._carry(batch)
                self._carrying = []  # (kept when cancelled: abandon() releases its callers)
            finally:
                self._busy = False
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

    async def _carry(self, batch: list[Put | Delete], *, usable: bool = False) -> list[int]:
        """Write ``batch`` in order and tell the other nodes: one round trip when it can.

        Returns each operation's result; every completion is finished. ``usable``:
        the caller has just checked that Redis is usable and nothing waits for replay.
        """
        self.writes += len(batch)
        # Redis is down, or older operations wait in the log: join them there, in order.
        if not usable and (self._replay or not self._redis_usable()):
            self._fail(batch, RedisUnavailable("cache write", "redis is down"), retry=False)
            return [0] * len(batch)
        keys = _keys_of(batch)
        invalidation = Invalidation(node=self._coherence.node, keys=keys)
        channel = self._channel
        publish = None if channel is None else (channel, self._coherence.encode_keys(keys))
        try:
            results = await self._l2.write(batch, publish=publish)
        except RedisUnavailable as exc:
            self._fail(batch, exc, retry=True)
            return [0] * len(batch)
        self._outage_logged = False
        if self._table is not None:
            for key in keys:  # a read that raced the write must not fill L1
                self._table.wrote(key)
        if publish is None:
            # Callers are released only once the other nodes have been told.
            await self._coherence.publish(invalidation)
        else:
            self._coherence.piggybacked()
        for operation, result in zip(batch, results, strict=True):
            self._track(operation, -1)
            operation.completion.finish(result)
        return results

    def _fail(self, batch: list[Put | Delete], exc: RedisUnavailable, *, retry: bool) -> None:
        """``batch`` did not reach Redis (as far as anyone knows): log it for replay."""
        if retry:  # a command failed, perhaps before the link noticed: wait a little
            self._retry_at = self._clock.monotonic() + self._retry_seconds
        for operation in batch:
            self._degrade(operation, exc)
            self._track(operation, -1)
            operation.completion.finish()

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
    """The keys ``operations`` change, in order, each once."""
    if len(operations) == 1 and isinstance(operations[0], Put):
        return (operations[0].key,)
    return tuple(
        dict.fromkeys(
            key
            for operation in operations
            for key in ((operation.key,) if isinstance(operation, Put) else operation.keys)
        )
    )
