"""Where the queue keeps things in Redis, built in one place.

Every key of a queue carries the queue name as its hash tag, so each store
script touches one slot (Redis Cluster ready)::

    {prefix}:queue:{<q>}:meta        hash: seq, token (counters), paused, dropped
    {prefix}:queue:{<q>}:waiting     zset: id -> (1000 - priority) * 2**40 + seq
    {prefix}:queue:{<q>}:delayed     zset: id -> run_at
    {prefix}:queue:{<q>}:active      zset: id -> lease_until
    {prefix}:queue:{<q>}:completed   zset: id -> finished_at (also failed, cancelled)
    {prefix}:queue:{<q>}:dedup       hash: dedup key -> id of the unfinished job
    {prefix}:queue:{<q>}:cancel      set: active ids asked to stop
    {prefix}:queue:{<q>}:expires     zset: id -> when a completed record expires
    {prefix}:queue:{<q>}:outbox      stream: JobEvents not yet acknowledged
    {prefix}:queue:{<q>}:outbox:owner  string: the token of the store draining the outbox (PX)
    {prefix}:queue:{<q>}:rate        counter of claims in the rate window (PEXPIRE)
    {prefix}:queue:{<q>}:marker      string: the store's epoch
    {prefix}:queue:{<q>}:job:<id>    hash: msgpack record ``r`` + mutable fields

The wake-up fanout channel of a queue is ``queue.wake.<q>``.
"""

from __future__ import annotations

from runtime import redis_key

__all__ = ["QUEUE_KEY_PARTS", "QueueKeys"]

QUEUE_KEY_PARTS = (
    "meta",
    "waiting",
    "delayed",
    "active",
    "completed",
    "failed",
    "cancelled",
    "dedup",
    "cancel",
    "expires",
    "outbox",
    "rate",
)
"""The per-queue keys every store script receives as ``KEYS``, in this order."""


class QueueKeys:
    """The Redis keys and wake-up channel of every queue, under one deployment ``prefix``."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _queue(self, queue: str, part: str) -> str:
        return redis_key(self.prefix, "queue", "{" + queue + "}", part)

    def keys(self, queue: str) -> list[str]:
        """The queue's keys in :data:`QUEUE_KEY_PARTS` order."""
        return [self._queue(queue, part) for part in QUEUE_KEY_PARTS]

    def job_prefix(self, queue: str) -> str:
        """The job hashes' key prefix: the job's key is this plus its id."""
        return self._queue(queue, "job:")

    def job(self, job_id: str, queue: str) -> str:
        """The hash of one job."""
        return self.job_prefix(queue) + job_id

    def marker(self, queue: str) -> str:
        """The string holding the store's epoch (gone = Redis lost the queue's data)."""
        return self._queue(queue, "marker")

    def outbox_owner(self, queue: str) -> str:
        """The lease naming the one store that drains the queue's outbox (``SET NX PX``)."""
        return self._queue(queue, "outbox:owner")

    def schedule(self, key: str, slot: float) -> str:
        """The claim of one repeatable job's slot."""
        return redis_key(self.prefix, "queue", "schedule", "{" + key + "}", repr(slot))

    @staticmethod
    def channel(queue: str) -> str:
        """The fanout channel carrying the queue's wake-ups."""
        return f"queue.wake.{queue}"
