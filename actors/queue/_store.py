"""Where jobs live: one Protocol with a memory twin and a Redis twin that pass the same tests.

Every operation is one atomic step of the store (one Lua script in Redis,
one uninterrupted method in memory), so two nodes never both claim, promote
or finish the same attempt. Times are the caller's clock (Unix seconds).

The lifecycle the store enforces:

* ``add``: a job is ``delayed`` if its ``run_at`` is in the future, else
  ``waiting``; an unfinished job with the same ``dedup_key`` in the queue
  makes ``add`` return that job's id instead (``created=False``).
* ``claim``: due ``delayed`` jobs are promoted and ``active`` jobs whose lease
  ran out are taken back first (to ``waiting``, or ``failed`` when their
  attempts are spent); then up to ``limit`` waiting jobs, highest priority
  first and oldest first within a priority, become ``active`` with
  ``attempt + 1``, a fresh ``token`` and ``lease_until = now + lease``.
  Nothing is claimed from a paused queue.
* ``renew``: extends the leases of attempts still current; returns the ids
  whose attempt is no longer current (the handler should stop).
* ``finish``: records an outcome for an attempt if its token is still
  current, else does nothing and returns ``False`` (fencing). Retention is
  applied in the same step, and the outcome's :class:`JobEvent` (if any) is
  appended to the outbox in the same step.
* ``events``/``ack_events``: the outbox, drained into the socket hub at least
  once; bounded by the store. With several nodes, one store drains each
  queue's outbox (:meth:`JobStore.drains_outbox`); ``events`` of the others
  returns nothing for it.
"""

from __future__ import annotations

from collections.abc import Sequence  # noqa: TC003 (the Protocol's signatures)
from typing import Literal, Protocol

import msgspec

from ._model import Job, JobError, JobEvent, JobState, NewJob, Progress

__all__ = [
    "USER_SCAN_LIMIT",
    "Added",
    "CancelOutcome",
    "Claim",
    "Finish",
    "JobPage",
    "JobStore",
    "OutboxEntry",
    "QueueCounts",
    "StoreLost",
]


class Added(msgspec.Struct, frozen=True, kw_only=True):
    """The id a job got, and whether ``add`` created it (``False``: a dedup hit)."""

    id: str
    created: bool


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt a worker now holds: the job (``state="active"``) and its fencing token."""

    job: Job
    token: int


class Finish(msgspec.Struct, frozen=True, kw_only=True):
    """How an attempt ended.

    ``outcome`` ``completed`` stores ``result``; ``retry`` puts the job back
    as ``delayed`` until ``retry_at`` with ``error``; ``failed`` fails it for
    good with ``error``; ``handed_back`` returns it to ``waiting`` without
    spending the attempt (graceful shutdown); ``cancelled`` ends it cancelled.
    """

    job_id: str
    token: int
    outcome: Literal["completed", "retry", "failed", "handed_back", "cancelled"]
    finished_at: float
    result: bytes | None = None
    error: JobError | None = None
    retry_at: float | None = None
    event: JobEvent | None = None


CancelOutcome = Literal["cancelled", "signalled", "finished", "missing"]
"""``cancelled``: was waiting/delayed, now cancelled; ``signalled``: active, flagged for
its worker; ``finished``: already completed/failed/cancelled; ``missing``: no such job."""


class QueueCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Jobs per state in one queue, and whether it is paused."""

    waiting: int = 0
    delayed: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    paused: bool = False


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One event waiting to reach the hub, with the id ``ack_events`` takes."""

    id: str
    event: JobEvent


USER_SCAN_LIMIT = 5_000
"""Positions of a state's list one filtered :meth:`JobStore.jobs` call examines at most.

Finished lists are bounded by retention and ``active`` by the cluster's
concurrency, so a user's listing of them is usually complete in one call; a
``waiting`` or ``delayed`` backlog is not bounded. One call is one Lua script,
which blocks Redis while it runs: a scan that examines all 5,000 positions
(one ``HGET`` each) takes about 9 ms of Redis time (18 ms for 10,000, measured
on a 2-core machine), well inside the link's command deadline. A call that
stops at the bound says where to go on (:class:`JobPage`).
"""


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of :meth:`JobStore.jobs`, and where the next one starts.

    ``next_cursor`` is ``None`` when the page reached the end of the state's
    list; otherwise the next page is ``cursor=next_cursor, offset=next_offset``
    (``next_offset`` is 0 unless a filtered scan stopped at its bound while
    still skipping ``offset`` jobs). A filtered page holds fewer than ``limit``
    jobs only at the end of the list or at the bound (:data:`USER_SCAN_LIMIT`).
    """

    jobs: list[Job]
    next_cursor: int | None = None
    next_offset: int = 0


class StoreLost(Exception):
    """The store's marker is gone: Redis lost its data (restarted empty or a stale replica)."""


class JobStore(Protocol):
    """The queue's storage, memory or Redis; see the module docstring for the rules."""

    async def open(self) -> None:
        """Check or write the store's marker; raise :class:`StoreLost` if the data is gone."""
        ...

    async def add(self, jobs: Sequence[NewJob], now: float) -> list[Added]:
        """Store a batch in one step (one round trip); dedup per queue by ``dedup_key``."""
        ...

    async def claim(self, queue: str, limit: int, now: float, lease_seconds: float) -> list[Claim]:
        """Promote due jobs, reclaim expired leases, then claim up to ``limit`` jobs."""
        ...

    async def claim_due(
        self, queue: str, limit: int, now: float, lease_seconds: float
    ) -> tuple[list[Claim], float | None]:
        """:meth:`claim`, then :meth:`next_due`, in one step (the worker's one round trip)."""
        ...

    async def finish_claim(
        self,
        finishes: Sequence[Finish],
        queue: str,
        limit: int,
        now: float,
        lease_seconds: float,
    ) -> tuple[list[bool], list[Claim], float | None]:
        """:meth:`finish`, then :meth:`claim_due` on ``queue``, in one step (one round trip)."""
        ...

    async def next_due(self, queue: str) -> float | None:
        """When the earliest delayed job of ``queue`` is due, or ``None``."""
        ...

    async def renew(
        self, queue: str, attempts: Sequence[tuple[str, int]], now: float, lease_seconds: float
    ) -> list[str]:
        """Extend the leases of ``(job_id, token)`` pairs; return the ids no longer theirs."""
        ...

    async def progress(
        self, job_id: str, token: int, progress: Progress, event: JobEvent | None
    ) -> bool:
        """Record the attempt's progress (and queue its event) if ``token`` is current."""
        ...

    async def finish(self, finishes: Sequence[Finish]) -> list[bool]:
        """Record outcomes in one step; each is applied only if its token is current."""
        ...

    async def cancel(self, job_id: str, now: float, event: JobEvent | None) -> CancelOutcome:
        """Cancel a waiting or delayed job, or flag an active one for its worker."""
        ...

    async def cancel_requested(self, queue: str, job_ids: Sequence[str]) -> list[str]:
        """Which of these active jobs have been asked to stop (on any node)."""
        ...

    async def retry(self, job_id: str, now: float) -> bool:
        """Put a failed or cancelled job back to waiting with fresh attempts, else ``False``."""
        ...

    async def get(self, job_id: str) -> Job | None:
        """A job's record, or ``None``."""
        ...

    async def jobs(
        self,
        queue: str,
        state: JobState,
        offset: int,
        limit: int,
        *,
        user_id: str | None = None,
        cursor: int = 0,
    ) -> JobPage:
        """Jobs of one state: waiting/delayed in run order, others newest first.

        The page starts at position ``cursor`` of the state's list, skips
        ``offset`` jobs that match (with ``user_id``: that user's jobs, else
        every job) and holds the next ``limit`` that match. A ``user_id``
        scan examines at most :data:`USER_SCAN_LIMIT` positions per call.
        """
        ...

    async def counts(self, queue: str) -> QueueCounts:
        """Jobs per state."""
        ...

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume claiming from ``queue`` (for every node)."""
        ...

    async def events(self, limit: int) -> list[OutboxEntry]:
        """Up to ``limit`` outbox events not yet acknowledged, oldest first."""
        ...

    async def ack_events(self, ids: Sequence[str]) -> None:
        """Drop delivered outbox events."""
        ...

    def drains_outbox(self) -> bool:
        """Whether this store drained an outbox at its last ``events`` (memory: always)."""
        ...

    async def wait_events(self, seconds: float) -> None:
        """Return when new events may be there for ``events``, or after about ``seconds``.

        The memory twin waits for its next event and ignores ``seconds``: bound
        the wait with the clock.
        """
        ...

    async def release_outbox(self) -> None:
        """Stop draining (shutdown): let another node's store drain the outbox now."""
        ...

    async def claim_schedule(self, key: str, slot: float, ttl_seconds: float) -> bool:
        """``True`` for exactly one caller per ``(key, slot)`` in the cluster (repeatable jobs)."""
        ...
