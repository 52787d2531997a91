"""The queue's Python API: enqueue, inspect, cancel, retry, pause, wait, repeat.

Other packages get it with ``setup.require(QUEUE)``; routes with
``node_context().get(QUEUE)``. Everything is validated here before anything
is stored: a bad input raises :class:`~runtime.Rejected` and stores nothing.
This is the queue's one implementation: the HTTP routes call it, and so does
the queue actor for every message it answers (:mod:`._actor`).

Reads and controls of one job take an optional ``user_id``: given, another
user's job looks missing (the routes pass the token's subject for a
non-admin, so ownership is decided here for every edge).
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec

from runtime import Extension, Rejected

from ._messages import MAX_BATCH, EnqueueRequest, QueueInfo
from ._model import JOB_STATES, QUEUE_NAME, JobEvent, JobOptions, NewJob, queue_of
from ._statistics import QueueStatistics, Reservoir

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._context import JobContext
    from ._handlers import HandlerFn
    from ._model import Job, JobState
    from ._parts import QueueParts
    from ._schedule import Schedule
    from ._store import Added, CancelOutcome, JobPage, QueueCounts

__all__ = ["QUEUE", "Queue"]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_FINISHED = ("completed", "failed", "cancelled")
_DEFAULT_OPTIONS = JobOptions()


class _JobIds:
    """Time-ordered job ids, monotonic within a process (ULID's monotonic rule).

    The suffix is ``<ms as 12 hex><24 bits as 6 hex>``: the bits start random in
    each millisecond and count up for the next ids of that millisecond, so jobs
    made in one millisecond sort (and list, among equal run-at times) in the
    order they were made. A clock that steps back keeps the last millisecond.
    """

    __slots__ = ("_bits", "_ms")

    def __init__(self) -> None:
        self._ms = -1
        self._bits = 0

    def next(self, queue: str, now: float) -> str:
        ms = int(now * 1000)
        if ms > self._ms:
            self._ms, self._bits = ms, random.getrandbits(23)  # room to count up
        else:
            self._bits += 1
            if self._bits >= 1 << 24:  # 8M ids in one millisecond: borrow the next one
                self._ms, self._bits = self._ms + 1, 0
        return f"{queue}.{self._ms:012x}{self._bits:06x}"


_job_ids = _JobIds()


def new_job_id(queue: str, now: float) -> str:
    """A time-ordered job id: ``<queue>.<ms as 12 hex><6 hex>``, monotonic in a process."""
    return _job_ids.next(queue, now)


def _job_queue(job_id: object) -> str | None:
    """The queue of a job id, or ``None`` for anything no queue could have made."""
    return queue_of(job_id) if isinstance(job_id, str) else None


def _check_user(user_id: object) -> str | None:
    if user_id is not None and not (isinstance(user_id, str) and 0 < len(user_id) <= 256):
        raise Rejected("invalid_options", "user_id must be 1..256 characters")
    return user_id


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Queue:
    """The queue of one node (see the module docstring)."""

    def __init__(self, parts: QueueParts) -> None:
        self._parts = parts
        self.schedules: list[Schedule] = []

    # -- handlers ------------------------------------------------------------------------------

    def handler(
        self, job_type: str, *, queue: str = "default", payload: type[T]
    ) -> Callable[[Callable[[JobContext[T]], Any]], Callable[[JobContext[T]], Any]]:
        """Register ``async def fn(ctx: JobContext[T]) -> object`` for ``job_type``."""

        def register(fn: Callable[[JobContext[T]], Any]) -> Callable[[JobContext[T]], Any]:
            handler_fn: HandlerFn = fn
            self._parts.handlers.add(job_type, queue, payload, handler_fn)
            return fn

        return register

    # -- enqueue -------------------------------------------------------------------------------

    def _validate(self, request: EnqueueRequest, now: float) -> NewJob:
        parts = self._parts
        if not isinstance(request, EnqueueRequest):
            raise Rejected(
                "invalid_request", f"expected an EnqueueRequest, got {type(request).__name__}"
            )
        if not isinstance(request.type, str) or QUEUE_NAME.match(request.type) is None:
            raise Rejected("unknown_job_type", f"{request.type!r} is not a job type")
        handler = parts.handlers.require(request.type)
        queue = request.queue or handler.queue
        if queue not in parts.queues:
            raise Rejected(
                "unknown_queue", f"queue {queue!r} is not configured ({sorted(parts.queues)})"
            )
        raw = request.payload
        if isinstance(raw, msgspec.Raw | bytes | bytearray | memoryview):
            payload = bytes(raw)
        else:
            try:
                payload = _encoder.encode(raw)
            except (TypeError, msgspec.EncodeError) as exc:
                raise Rejected("invalid_payload", f"the payload is not JSON: {exc}") from None
        limit = parts.settings.max_payload_bytes
        if len(payload) > limit:
            raise Rejected(
                "payload_too_large", f"the payload is {len(payload)} bytes; at most {limit}"
            )
        try:
            handler.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise Rejected("invalid_payload", f"{request.type}: {exc}") from None
        if request.options is None:
            options = _DEFAULT_OPTIONS  # valid, and one object: the store caches its fields
        else:
            try:
                options = msgspec.convert(msgspec.to_builtins(request.options), JobOptions)
            except msgspec.ValidationError as exc:
                raise Rejected("invalid_options", str(exc)) from None
        run_at = options.run_at if options.run_at is not None else now + options.delay_seconds
        _check_user(request.user_id)
        return NewJob(
            id=new_job_id(queue, now),
            queue=queue,
            type=request.type,
            payload=payload,
            options=options,
            user_id=request.user_id,
            run_at=run_at,
            created_at=now,
        )

    async def enqueue(
        self,
        job_type: str,
        payload: object,
        *,
        queue: str | None = None,
        user_id: str | None = None,
        options: JobOptions | None = None,
    ) -> Added:
        """Store one job; raises ``Rejected`` for bad input, ``RedisUnavailable`` if unstored."""
        request = EnqueueRequest(
            type=job_type, payload=payload, queue=queue, user_id=user_id, options=options
        )
        return (await self.enqueue_many([request]))[0]

    async def enqueue_many(
        self, requests: Sequence[EnqueueRequest], *, repeat_key: str | None = None
    ) -> list[Added]:
        """Store a batch in one store call (all validated first: one bad request stores none).

        At most :data:`~._messages.MAX_BATCH` requests (``invalid_request`` otherwise).
        """
        if len(requests) > MAX_BATCH:
            raise Rejected(
                "invalid_request", f"{len(requests)} jobs in one batch; at most {MAX_BATCH}"
            )
        now = self._parts.clock.time()
        jobs = [self._validate(request, now) for request in requests]
        if repeat_key is not None:
            jobs = [msgspec.structs.replace(job, repeat_key=repeat_key) for job in jobs]
        added = await self._parts.store.add(jobs, now)
        for job, result in zip(jobs, added, strict=True):
            if result.created:
                self._parts.counters.of(job.queue, job.type).enqueued += 1
        for queue in {job.queue for job in jobs}:
            self._parts.wake(queue)
        return added

    # -- inspection ----------------------------------------------------------------------------

    async def get(self, job_id: str, *, user_id: str | None = None) -> Job | None:
        """A job's record, or ``None`` (also for another user's job when ``user_id`` is given)."""
        _check_user(user_id)
        if _job_queue(job_id) is None:
            return None
        job = await self._parts.store.get(job_id)
        if job is None or (user_id is not None and job.user_id != user_id):
            return None
        return job

    def _queue(self, queue: str) -> str:
        if not isinstance(queue, str) or queue not in self._parts.queues:
            raise Rejected("unknown_queue", f"queue {str(queue)[:80]!r} is not configured")
        return queue

    async def jobs(
        self,
        queue: str,
        state: JobState,
        offset: int = 0,
        limit: int = 50,
        *,
        user_id: str | None = None,
        cursor: int = 0,
    ) -> JobPage:
        """One page of a queue's jobs in one state (run order, or newest first).

        With ``user_id`` only that user's jobs count: ``offset`` skips that
        many of them and the page holds up to ``limit`` of them (the store
        scans a bounded stretch per call; go on from the page's
        ``next_cursor``/``next_offset``). ``cursor`` is a position in the
        state's list, as a previous page returned it.
        """
        if not (_is_int(offset) and _is_int(cursor) and _is_int(limit)) or (
            offset < 0 or cursor < 0 or not 1 <= limit <= 1000
        ):
            raise Rejected(
                "invalid_options", "offset and cursor must be integers >= 0 and limit 1..1000"
            )
        if state not in JOB_STATES:
            raise Rejected("invalid_options", f"state must be one of {list(JOB_STATES)}")
        name = self._queue(queue)
        return await self._parts.store.jobs(
            name, state, offset, limit, user_id=_check_user(user_id), cursor=cursor
        )

    async def counts(self, queue: str) -> QueueCounts:
        """Jobs per state of ``queue``."""
        return await self._parts.store.counts(self._queue(queue))

    async def queues(self) -> list[QueueInfo]:
        """Every queue: concurrency, counts, completions per minute here, wait and run times."""
        infos: list[QueueInfo] = []
        for name, concurrency in sorted(self._parts.queues.items()):
            counts = await self._parts.store.counts(name)
            self._parts.depths[name] = counts
            wait, run = Reservoir(), Reservoir()
            for (q, _), c in self._parts.counters.by_type.items():
                if q == name:
                    wait.samples.extend(c.wait.samples)
                    run.samples.extend(c.run.samples)
                    wait.count += c.wait.count
                    wait.total += c.wait.total
                    run.count += c.run.count
                    run.total += c.run.total
            infos.append(
                QueueInfo(
                    name=name,
                    concurrency=concurrency,
                    counts=counts,
                    throughput_per_minute=self._throughput(name),
                    wait_seconds=wait.summary(),
                    run_seconds=run.summary(),
                )
            )
        return infos

    def _throughput(self, queue: str) -> float:
        minute = self._parts.clock.time() - 60.0
        marks = self._parts.completions.get(queue)
        if not marks:
            return 0.0
        while marks and marks[0] < minute:
            marks.popleft()
        return float(len(marks))

    # -- control -------------------------------------------------------------------------------

    async def cancel(self, job_id: str, *, user_id: str | None = None) -> CancelOutcome:
        """Cancel a waiting/delayed job, or stop an active one (here at once, elsewhere soon).

        With ``user_id``, another user's job is ``missing``.
        """
        _check_user(user_id)
        if _job_queue(job_id) is None:
            return "missing"
        job = await self._parts.store.get(job_id)
        if user_id is not None and (job is None or job.user_id != user_id):
            return "missing"
        event = None
        if job is not None and job.user_id is not None:
            event = JobEvent(
                job_id=job_id,
                user_id=job.user_id,
                kind="cancelled",
                percentage=job.progress.percentage if job.progress else 0.0,
                message="cancelled",
            )
        outcome = await self._parts.store.cancel(job_id, self._parts.clock.time(), event)
        if outcome == "signalled":
            attempt = self._parts.active.get(job_id)
            if attempt is not None:
                attempt.stop("cancelled")
        elif outcome == "cancelled":
            if job is not None:
                self._parts.counters.of(job.queue, job.type).cancelled += 1
            self._parts.finished.notify()
        return outcome

    async def retry(self, job_id: str, *, user_id: str | None = None) -> bool:
        """Put a failed or cancelled job back to waiting with fresh attempts.

        ``False`` if it is not failed or cancelled, is missing, or (with
        ``user_id``) is another user's job.
        """
        queue = _job_queue(job_id)
        if queue is None:
            return False
        if user_id is not None and await self.get(job_id, user_id=user_id) is None:
            return False
        done = await self._parts.store.retry(job_id, self._parts.clock.time())
        if done:
            self._parts.wake(queue)
        return done

    async def pause(self, queue: str) -> None:
        """Stop every node claiming from ``queue``."""
        await self._parts.store.set_paused(self._queue(queue), True)

    async def resume(self, queue: str) -> None:
        """Let nodes claim from ``queue`` again."""
        await self._parts.store.set_paused(self._queue(queue), False)
        self._parts.wake(queue)

    async def wait(self, job_id: str, timeout: float = 30.0) -> Job:  # noqa: ASYNC109 (the contract's)
        """The job once it is completed, failed or cancelled.

        Raises:
            Rejected: ``not_found`` for an unknown job, ``timeout`` past ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            if job is None:
                raise Rejected("not_found", f"no job {job_id!r}")
            if job.state in _FINISHED:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise Rejected("timeout", f"job {job_id} is still {job.state}")
            with anyio.move_on_after(min(left, self._parts.settings.poll_seconds)):
                await self._parts.finished.wait()

    def repeat(
        self,
        job_type: str,
        payload: object,
        *,
        key: str,
        every_seconds: float | None = None,
        cron: str | None = None,
        queue: str | None = None,
        user_id: str | None = None,
    ) -> None:
        """Run ``job_type`` every ``every_seconds`` or on ``cron``, once per slot in the cluster."""
        from ._schedule import Schedule

        self.schedules.append(
            Schedule.of(
                key=key,
                request=EnqueueRequest(
                    type=job_type, payload=payload, queue=queue, user_id=user_id
                ),
                every_seconds=every_seconds,
                cron=cron,
            )
        )

    # -- statistics ----------------------------------------------------------------------------

    async def queue_statistics(self) -> list[QueueStatistics]:
        """Per-queue figures including depth per state (reads the store)."""
        result = []
        for name, concurrency in sorted(self._parts.queues.items()):
            counts = await self._parts.store.counts(name)
            self._parts.depths[name] = counts
            result.append(self._statistics_of(name, concurrency, counts))
        return result

    def _statistics_of(self, name: str, concurrency: int, counts: QueueCounts) -> QueueStatistics:
        return QueueStatistics(
            queue=name,
            concurrency=concurrency,
            active_here=sum(1 for j in self._parts.active if queue_of(j) == name),
            waiting=counts.waiting,
            delayed=counts.delayed,
            active=counts.active,
            completed=counts.completed,
            failed=counts.failed,
            cancelled=counts.cancelled,
            paused=counts.paused,
            types=self._parts.counters.snapshot(name),
        )

    def statistics(self) -> list[QueueStatistics]:
        """This node's figures per queue (depths from the last :meth:`queue_statistics` read)."""
        return [
            self._statistics_of(name, concurrency, self._parts.depths.get(name) or _no_counts())
            for name, concurrency in sorted(self._parts.queues.items())
        ]


def _no_counts() -> QueueCounts:
    from ._store import QueueCounts

    return QueueCounts()


QUEUE: Extension[Queue] = Extension("queue", Queue)
"""The key the queue's facade is provided under: ``setup.require(QUEUE)``."""
