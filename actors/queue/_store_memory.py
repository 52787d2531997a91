"""The queue's memory twin: one node's jobs in dicts, the same rules as the Redis store.

Every method runs without awaiting anything, so each is one atomic step of
the store. Times are the caller's (the ``now`` arguments); sweeps that need a
time (due delayed jobs, expired leases, ``result_ttl_seconds``, retention by
age) run in ``claim``, ``finish`` and ``cancel``.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msgspec.structs import replace

from ._model import Job, JobError, JobEvent, JobState, NewJob, Progress, Retention
from ._parts import Waker
from ._store import (
    USER_SCAN_LIMIT,
    Added,
    CancelOutcome,
    Claim,
    Finish,
    JobPage,
    OutboxEntry,
    QueueCounts,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["LEASE_EXPIRED", "MemoryJobStore", "lease_expired_event"]

LEASE_EXPIRED = JobError(kind="LeaseExpired", message="the worker's lease ran out")
"""The error a job gets when its last attempt's lease runs out (its worker vanished)."""

_FINISHED: tuple[JobState, ...] = ("completed", "failed", "cancelled")


def lease_expired_event(job: Job, kind: str) -> JobEvent | None:
    """The event both twins queue when a reclaimed job ends ``failed`` or ``cancelled``."""
    if job.user_id is None:
        return None
    percentage = job.progress.percentage if job.progress is not None else 0.0
    if kind == "failed":
        return JobEvent(
            job_id=job.id,
            user_id=job.user_id,
            kind="failed",
            percentage=percentage,
            error=LEASE_EXPIRED.message,
        )
    return JobEvent(job_id=job.id, user_id=job.user_id, kind="cancelled", percentage=percentage)


@dataclass
class _Queue:
    waiting: list[tuple[int, int, int, str]] = field(default_factory=list)  # heap
    live: set[str] = field(default_factory=set)  # the ids now waiting (the heap keeps stale ones)
    delayed: dict[str, float] = field(default_factory=dict)
    active: dict[str, float] = field(default_factory=dict)
    finished: dict[JobState, dict[str, float]] = field(
        default_factory=lambda: {state: {} for state in _FINISHED}
    )
    dedup: dict[str, str] = field(default_factory=dict)
    cancel_flags: set[str] = field(default_factory=set)
    paused: bool = False
    window_start: float = float("-inf")
    window_count: int = 0


class MemoryJobStore:
    """The :class:`~actors.queue._store.JobStore` of a node without Redis.

    ``outbox_size`` bounds the outbox: when full, the oldest event is dropped
    and counted in :attr:`dropped_events`. ``rate_limits`` maps a queue to
    ``(max_jobs, period_seconds)``: ``claim`` hands out at most ``max_jobs``
    per window of ``period_seconds`` (windows start at the first claim after
    the previous one ended, by the caller's ``now``).
    """

    def __init__(
        self,
        queues: Sequence[str],
        *,
        outbox_size: int = 10_000,
        rate_limits: Mapping[str, tuple[int, float]] | None = None,
    ) -> None:
        self._queues = {name: _Queue() for name in queues}
        self._jobs: dict[str, Job] = {}
        self._seq: dict[str, int] = {}
        self._gen: dict[str, int] = {}
        self._expires: dict[str, float] = {}
        self._counter = itertools.count(1)
        self._tokens = itertools.count(1)
        self._outbox: OrderedDict[str, JobEvent] = OrderedDict()
        self._outbox_ids = itertools.count(1)
        self._outbox_size = outbox_size
        self._new_event = Waker()
        self._rate_limits = dict(rate_limits or {})
        self._schedules: dict[str, float] = {}
        self.dropped_events = 0
        """Outbox events dropped because the outbox was full."""
        self.epoch = "memory"
        """The store's identity (constant: a memory store cannot lose its data)."""

    # -- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        """Nothing to check: the memory store lives as long as the node."""

    async def check(self) -> None:
        """Nothing to check (the Redis twin raises ``StoreLost`` here)."""

    # -- internals -------------------------------------------------------------

    def _queue(self, name: str) -> _Queue:
        try:
            return self._queues[name]
        except KeyError:
            raise ValueError(f"unknown queue {name!r}") from None

    def _push_waiting(self, q: _Queue, job: Job) -> None:
        gen = next(self._counter)
        self._gen[job.id] = gen
        heapq.heappush(q.waiting, (-job.options.priority, self._seq[job.id], gen, job.id))
        q.live.add(job.id)

    def _valid_waiting(self, entry: tuple[int, int, int, str]) -> bool:
        job = self._jobs.get(entry[3])
        return job is not None and job.state == "waiting" and self._gen.get(job.id) == entry[2]

    def _emit(self, event: JobEvent | None) -> None:
        if event is None:
            return
        while len(self._outbox) >= self._outbox_size > 0:
            self._outbox.popitem(last=False)
            self.dropped_events += 1
        if self._outbox_size <= 0:
            self.dropped_events += 1
            return
        self._outbox[f"{next(self._outbox_ids):016d}"] = event
        self._new_event.notify()

    def _remove(self, job_id: str) -> None:
        job = self._jobs.pop(job_id, None)
        self._seq.pop(job_id, None)
        self._gen.pop(job_id, None)
        self._expires.pop(job_id, None)
        if job is None:
            return
        q = self._queues[job.queue]
        q.live.discard(job_id)
        q.delayed.pop(job_id, None)
        q.active.pop(job_id, None)
        q.cancel_flags.discard(job_id)
        for entries in q.finished.values():
            entries.pop(job_id, None)
        if job.options.dedup_key is not None and q.dedup.get(job.options.dedup_key) == job_id:
            del q.dedup[job.options.dedup_key]

    def _end(self, q: _Queue, job: Job, now: float) -> None:
        """Store a job that just reached a finished state; apply retention and the TTL."""
        self._jobs[job.id] = job
        q.live.discard(job.id)
        q.active.pop(job.id, None)
        q.delayed.pop(job.id, None)
        q.cancel_flags.discard(job.id)
        key = job.options.dedup_key
        if key is not None and q.dedup.get(key) == job.id:
            del q.dedup[key]
        finished_at = job.finished_at if job.finished_at is not None else now
        entries = q.finished[job.state]
        entries.pop(job.id, None)
        last = next(reversed(entries.items()), None)
        entries[job.id] = finished_at
        if last is not None and (last[1], last[0]) > (finished_at, job.id):  # rare: re-sort
            ordered = sorted(entries.items(), key=lambda item: (item[1], item[0]))
            entries.clear()
            entries.update(ordered)
        if job.state == "completed" and job.options.result_ttl_seconds is not None:
            self._expires[job.id] = finished_at + job.options.result_ttl_seconds
        retention = (
            job.options.remove_on_complete
            if job.state == "completed"
            else job.options.remove_on_fail
        )
        self._retain(q.finished[job.state], retention, now)

    def _retain(self, entries: dict[str, float], retention: Retention, now: float) -> None:
        # ``entries`` is ordered by (finished_at, id) (see _end): the oldest come first.
        if retention.age_seconds is not None:
            cutoff = now - retention.age_seconds
            old = list(itertools.takewhile(lambda item: item[1] < cutoff, entries.items()))
            for job_id, _ in old:
                self._remove(job_id)
        if retention.count is not None and len(entries) > retention.count:
            excess = len(entries) - retention.count
            for job_id, _ in list(itertools.islice(entries.items(), excess)):
                self._remove(job_id)

    def _sweep(self, now: float) -> None:
        if self._expires:
            for job_id in [j for j, at in self._expires.items() if at <= now]:
                self._remove(job_id)

    def _promote_and_reclaim(self, q: _Queue, now: float) -> None:
        for job_id in [j for j, at in q.delayed.items() if at <= now]:
            del q.delayed[job_id]
            job = replace(self._jobs[job_id], state="waiting")
            self._jobs[job_id] = job
            self._push_waiting(q, job)
        for job_id in [j for j, until in q.active.items() if until <= now]:
            job = self._jobs[job_id]
            if job_id in q.cancel_flags:
                ended = replace(job, state="cancelled", finished_at=now, lease_until=None)
                self._end(q, ended, now)
                self._emit(lease_expired_event(job, "cancelled"))
            elif job.attempt >= job.options.attempts:
                ended = replace(
                    job, state="failed", finished_at=now, lease_until=None, error=LEASE_EXPIRED
                )
                self._end(q, ended, now)
                self._emit(lease_expired_event(job, "failed"))
            else:
                del q.active[job_id]
                back = replace(job, state="waiting", lease_until=None)
                self._jobs[job_id] = back
                self._push_waiting(q, back)

    def _current(self, job_id: str, token: int) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.state != "active" or job.token != token:
            return None
        return job

    # -- the Protocol -----------------------------------------------------------

    async def add(self, jobs: Sequence[NewJob], now: float) -> list[Added]:
        """Store a batch in one step; dedup per queue by ``dedup_key``."""
        for new in jobs:
            self._queue(new.queue)
        added: list[Added] = []
        for new in jobs:
            q = self._queues[new.queue]
            key = new.options.dedup_key
            if key is not None and key in q.dedup:
                added.append(Added(id=q.dedup[key], created=False))
                continue
            if new.id in self._jobs:
                added.append(Added(id=new.id, created=False))
                continue
            state: JobState = "delayed" if new.run_at > now else "waiting"
            job = Job(
                id=new.id,
                queue=new.queue,
                type=new.type,
                payload=new.payload,
                options=new.options,
                user_id=new.user_id,
                state=state,
                created_at=new.created_at,
                run_at=new.run_at,
                repeat_key=new.repeat_key,
            )
            self._jobs[job.id] = job
            self._seq[job.id] = next(self._counter)
            if key is not None:
                q.dedup[key] = job.id
            if state == "delayed":
                q.delayed[job.id] = job.run_at
            else:
                self._push_waiting(q, job)
            added.append(Added(id=job.id, created=True))
        return added

    async def claim(self, queue: str, limit: int, now: float, lease_seconds: float) -> list[Claim]:
        """Promote due jobs, reclaim expired leases, then claim up to ``limit`` jobs."""
        q = self._queue(queue)
        self._sweep(now)
        self._promote_and_reclaim(q, now)
        if q.paused or limit <= 0:
            return []
        rate = self._rate_limits.get(queue)
        if rate is not None:
            max_jobs, period = rate
            if now >= q.window_start + period:
                q.window_start, q.window_count = now, 0
            limit = min(limit, max_jobs - q.window_count)
        claims: list[Claim] = []
        while q.waiting and len(claims) < limit:
            entry = heapq.heappop(q.waiting)
            if not self._valid_waiting(entry):
                continue
            job = self._jobs[entry[3]]
            q.live.discard(job.id)
            token = next(self._tokens)
            job = replace(
                job,
                state="active",
                attempt=job.attempt + 1,
                token=token,
                started_at=now,
                lease_until=now + lease_seconds,
            )
            self._jobs[job.id] = job
            q.active[job.id] = now + lease_seconds
            claims.append(Claim(job=job, token=token))
        if rate is not None:
            q.window_count += len(claims)
        return claims

    async def claim_due(
        self, queue: str, limit: int, now: float, lease_seconds: float
    ) -> tuple[list[Claim], float | None]:
        """:meth:`claim`, then :meth:`next_due`, in one step."""
        claims = await self.claim(queue, limit, now, lease_seconds)
        return claims, await self.next_due(queue)

    async def finish_claim(
        self,
        finishes: Sequence[Finish],
        queue: str,
        limit: int,
        now: float,
        lease_seconds: float,
    ) -> tuple[list[bool], list[Claim], float | None]:
        """:meth:`finish`, then :meth:`claim_due` on ``queue``, in one step."""
        done = await self.finish(finishes)
        claims, due = await self.claim_due(queue, limit, now, lease_seconds)
        return done, claims, due

    async def next_due(self, queue: str) -> float | None:
        """When the earliest delayed job of ``queue`` is due, or ``None``."""
        delayed = self._queue(queue).delayed
        return min(delayed.values()) if delayed else None

    async def renew(
        self, queue: str, attempts: Sequence[tuple[str, int]], now: float, lease_seconds: float
    ) -> list[str]:
        """Extend the leases of ``(job_id, token)`` pairs; return the ids no longer theirs."""
        q = self._queue(queue)
        lost: list[str] = []
        for job_id, token in attempts:
            job = self._current(job_id, token)
            if job is None or job.queue != queue:
                lost.append(job_id)
                continue
            self._jobs[job_id] = replace(job, lease_until=now + lease_seconds)
            q.active[job_id] = now + lease_seconds
        return lost

    async def progress(
        self, job_id: str, token: int, progress: Progress, event: JobEvent | None
    ) -> bool:
        """Record the attempt's progress (and queue its event) if ``token`` is current."""
        job = self._current(job_id, token)
        if job is None:
            return False
        self._jobs[job_id] = replace(job, progress=progress)
        self._emit(event)
        return True

    async def finish(self, finishes: Sequence[Finish]) -> list[bool]:
        """Record outcomes in one step; each is applied only if its token is current."""
        done: list[bool] = []
        for fin in finishes:
            job = self._current(fin.job_id, fin.token)
            if job is None:
                done.append(False)
                continue
            q = self._queues[job.queue]
            now = fin.finished_at
            if fin.outcome == "completed":
                ended = replace(
                    job, state="completed", result=fin.result, finished_at=now, lease_until=None
                )
                self._end(q, ended, now)
            elif fin.outcome == "failed":
                ended = replace(
                    job, state="failed", error=fin.error, finished_at=now, lease_until=None
                )
                self._end(q, ended, now)
            elif fin.outcome == "cancelled":
                ended = replace(
                    job, state="cancelled", error=fin.error, finished_at=now, lease_until=None
                )
                self._end(q, ended, now)
            elif fin.outcome == "retry":
                run_at = fin.retry_at if fin.retry_at is not None else now
                back = replace(
                    job, state="delayed", error=fin.error, run_at=run_at, lease_until=None
                )
                self._jobs[job.id] = back
                del q.active[job.id]
                q.delayed[job.id] = run_at
            else:  # handed_back
                back = replace(job, state="waiting", attempt=job.attempt - 1, lease_until=None)
                self._jobs[job.id] = back
                del q.active[job.id]
                q.cancel_flags.discard(job.id)
                self._push_waiting(q, back)
            self._emit(fin.event)
            self._sweep(now)
            done.append(True)
        return done

    async def cancel(self, job_id: str, now: float, event: JobEvent | None) -> CancelOutcome:
        """Cancel a waiting or delayed job, or flag an active one for its worker."""
        job = self._jobs.get(job_id)
        if job is None:
            return "missing"
        q = self._queues[job.queue]
        if job.state in _FINISHED:
            return "finished"
        if job.state == "active":
            q.cancel_flags.add(job_id)
            return "signalled"
        self._end(q, replace(job, state="cancelled", finished_at=now), now)
        self._emit(event)
        return "cancelled"

    async def cancel_requested(self, queue: str, job_ids: Sequence[str]) -> list[str]:
        """Which of these active jobs have been asked to stop (on any node)."""
        flags = self._queue(queue).cancel_flags
        return [job_id for job_id in job_ids if job_id in flags]

    async def retry(self, job_id: str, now: float) -> bool:
        """Put a failed or cancelled job back to waiting with fresh attempts, else ``False``."""
        job = self._jobs.get(job_id)
        if job is None or job.state not in ("failed", "cancelled"):
            return False
        q = self._queues[job.queue]
        q.finished[job.state].pop(job_id, None)
        back = replace(
            job,
            state="waiting",
            attempt=0,
            progress=None,
            result=None,
            error=None,
            run_at=now,
            started_at=None,
            finished_at=None,
            lease_until=None,
        )
        self._jobs[job_id] = back
        key = job.options.dedup_key
        if key is not None and key not in q.dedup:
            q.dedup[key] = job_id
        self._push_waiting(q, back)
        return True

    async def get(self, job_id: str) -> Job | None:
        """A job's record, or ``None``."""
        return self._jobs.get(job_id)

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

        From position ``cursor``, skip ``offset`` matching jobs (``user_id``'s, or
        all) and return the next ``limit``; a ``user_id`` scan examines at most
        :data:`~._store.USER_SCAN_LIMIT` positions (as the Redis twin does).
        """
        q = self._queue(queue)
        ids: list[str]
        if state == "waiting":
            ids = [entry[3] for entry in sorted(q.waiting) if self._valid_waiting(entry)]
        elif state == "delayed":
            ids = [j for j, _ in sorted(q.delayed.items(), key=lambda item: (item[1], item[0]))]
        elif state == "active":
            ids = [j for j, _ in sorted(q.active.items(), key=lambda item: (item[1], item[0]))]
            ids.reverse()
        else:
            entries = q.finished[state]
            ids = [j for j, _ in sorted(entries.items(), key=lambda item: (item[1], item[0]))]
            ids.reverse()
        return self._page(ids, offset, limit, user_id, cursor)

    def _page(
        self, ids: list[str], offset: int, limit: int, user_id: str | None, cursor: int
    ) -> JobPage:
        """The page of ``ids`` :meth:`jobs` describes (a bounded scan with ``user_id``)."""
        if user_id is None:
            start = cursor + offset
            found = [self._jobs[j] for j in ids[start : start + limit]]
            end = start + len(found)
            return JobPage(jobs=found, next_cursor=end if end < len(ids) else None)
        found, position, skip = [], cursor, offset
        stop = min(len(ids), cursor + USER_SCAN_LIMIT)
        while position < stop and len(found) < limit:
            job = self._jobs[ids[position]]
            position += 1
            if job.user_id == user_id:
                if skip:
                    skip -= 1
                else:
                    found.append(job)
        return JobPage(
            jobs=found,
            next_cursor=position if position < len(ids) else None,
            next_offset=skip,
        )

    async def counts(self, queue: str) -> QueueCounts:
        """Jobs per state."""
        q = self._queue(queue)
        return QueueCounts(
            waiting=len(q.live),
            delayed=len(q.delayed),
            active=len(q.active),
            completed=len(q.finished["completed"]),
            failed=len(q.finished["failed"]),
            cancelled=len(q.finished["cancelled"]),
            paused=q.paused,
        )

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume claiming from ``queue`` (for every node)."""
        self._queue(queue).paused = paused

    async def events(self, limit: int) -> list[OutboxEntry]:
        """Up to ``limit`` outbox events not yet acknowledged, oldest first."""
        return [
            OutboxEntry(id=event_id, event=event)
            for event_id, event in itertools.islice(self._outbox.items(), limit)
        ]

    async def ack_events(self, ids: Sequence[str]) -> None:
        """Drop delivered outbox events."""
        for event_id in ids:
            self._outbox.pop(event_id, None)

    def drains_outbox(self) -> bool:
        """Always: one process, one drainer."""
        return True

    async def wait_events(self, seconds: float) -> None:
        """Wait for an event queued since the last wait returned (``seconds`` is the caller's)."""
        await self._new_event.wait()

    async def release_outbox(self) -> None:
        """Nothing to release."""

    async def claim_schedule(self, key: str, slot: float, ttl_seconds: float) -> bool:
        """``True`` once per ``(key, slot)``: only a slot later than the last one claimed wins."""
        last = self._schedules.get(key)
        if last is not None and slot <= last:
            return False
        self._schedules[key] = slot
        return True
