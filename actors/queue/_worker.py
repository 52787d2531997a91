"""One queue's worker on one node: claim in batches, run handlers, renew leases, batch finishes.

The worker holds at most ``concurrency`` attempts. It claims as many jobs as
it has free slots in one store call, renews every lease it holds in one call
each third of the lease (and asks the store which of them were cancelled on
any node), and records outcomes in batches (every finish that is ready when
the batcher runs, one ``store.finish`` call). It idles on a waker (a local
enqueue, a fanout wake-up, a freed slot), the earliest delayed job, and
``poll_seconds`` as a fallback. On the node's ``stopping`` it stops claiming,
lets active attempts run for ``shutdown_grace_seconds``, then cancels the
rest and hands them back, waking the other nodes to take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgspec

from runtime import RedisUnavailable

from ._context import JobContext
from ._keys import QueueKeys
from ._model import JobError, JobEvent
from ._parts import Waker
from ._store import Finish

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

    from ._parts import QueueParts
    from ._store import Claim

__all__ = ["Attempt", "Worker", "bounded_error"]

logger = logging.getLogger(__name__)

_TRACEBACK_BYTES = 4096
_MESSAGE_CHARS = 1024
_encoder = msgspec.json.Encoder()

StopReason = Literal["cancelled", "lost", "handed_back"]


def bounded_error(exc: BaseException) -> JobError:
    """An exception as a :class:`JobError`, its traceback bounded to 4 KiB (the end kept)."""
    text = "".join(traceback.format_exception(exc))
    encoded = text.encode()
    if len(encoded) > _TRACEBACK_BYTES:
        text = "…" + encoded[-(_TRACEBACK_BYTES - 3) :].decode(errors="ignore")
    return JobError(kind=type(exc).__name__, message=str(exc)[:_MESSAGE_CHARS], traceback=text)


@dataclass(slots=True, eq=False)
class Attempt:
    """One running attempt: its context, the cancel scope of its handler and why it stops."""

    claim: Claim
    context: JobContext[Any]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    reason: StopReason | None = None
    started: float = 0.0

    def stop(self, reason: StopReason) -> None:
        """Stop the handler now, for ``reason`` (the first reason wins)."""
        if self.reason is None:
            self.reason = reason
        self.context.request_cancel()
        self.scope.cancel()


class Worker:
    """The worker of one queue (a supervised service: :meth:`run`).

    Attempts run on a fixed pool of ``concurrency`` runner tasks (one per slot): a
    started attempt goes to an idle runner, so no task is spawned per job.
    """

    def __init__(self, parts: QueueParts, queue: str) -> None:
        self._parts = parts
        self.queue = queue
        self.concurrency = parts.queues[queue]
        self.attempts: dict[str, Attempt] = {}
        self._waker = parts.wakers.setdefault(queue, Waker())
        self._pending: list[tuple[Attempt, Finish]] = []
        self._finish_waker = Waker()
        self._drained = Waker()
        self._idle: list[asyncio.Future[tuple[Attempt, JobError | None]]] = []
        self._failures = 0
        self._reserved = 0  # slots a claim in flight may fill
        self._group: TaskGroup | None = None
        self._shield: anyio.CancelScope | None = None  # made in run(): needs a running loop

    # -- the loops -------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Work until cancelled or the node stops (then drain and hand back)."""
        # Shielded once the node stops: its supervisor cancels the service as soon as HTTP
        # has drained, and the drain (bounded by the grace) must still run to its end.
        self._shield = anyio.CancelScope()  # a fresh one per incarnation (a restart)
        with self._shield:
            async with anyio.create_task_group() as group:
                self._group = group
                self._idle = []
                for _ in range(self.concurrency):
                    group.start_soon(self._runner)
                group.start_soon(self._renew_loop)
                group.start_soon(self._finish_loop)
                group.start_soon(self._listen)
                group.start_soon(self._watch_stopping)
                task_status.started()
                await self._claim_loop(group)
                await self._drain()
                group.cancel_scope.cancel()
        await anyio.sleep_forever()  # drained: idle until the node stops the service

    async def _watch_stopping(self) -> None:
        await self._parts.stopping.wait()
        if self._shield is not None:
            self._shield.shield = True
        self._waker.notify()

    async def _listen(self) -> None:
        """Wake on the store's fanout wake-ups (an enqueue on another node)."""
        while True:
            try:
                async with self._parts.fanout.subscribe(
                    f"queue.wake.{self.queue}", buffer_size=16
                ) as wakeups:
                    async for _ in wakeups:
                        self._waker.notify()
            except RedisUnavailable:
                await self._backoff()

    async def _backoff(self) -> None:
        self._failures += 1
        await self._parts.clock.sleep(self._parts.backoff(self._failures))

    async def _claim_loop(self, group: TaskGroup) -> None:
        parts = self._parts
        clock = parts.clock
        while not parts.stopping.is_set():
            free = self.concurrency - len(self.attempts) - self._reserved
            if free > 0:
                self._reserved += free
                try:
                    # One round trip: the claims, and when the earliest delayed job is due.
                    claims, due = await parts.store.claim_due(
                        self.queue, free, clock.time(), parts.settings.lease_seconds
                    )
                except RedisUnavailable:
                    logger.warning("queue %s: store unavailable while claiming", self.queue)
                    await self._backoff()
                    continue
                finally:
                    self._reserved -= free
                self._failures = 0
                for claim in claims:
                    self._start(group, claim)
                if len(claims) == free:
                    continue
            else:
                due = None
            timeout = parts.settings.poll_seconds
            if due is not None:
                timeout = max(0.0, min(timeout, due - clock.time()))
            with clock.move_on_after(timeout):
                await self._waker.wait()

    def _start(self, group: TaskGroup, claim: Claim) -> None:
        job = claim.job
        handler = self._parts.handlers.get(job.type)
        payload: Any = None
        problem: JobError | None = None
        if handler is None:
            problem = JobError(kind="unknown_job_type", message=f"no handler for {job.type!r}")
        else:
            try:
                payload = handler.decode(job.payload)
            except msgspec.ValidationError as exc:
                problem = JobError(kind="invalid_payload", message=str(exc))
        context: JobContext[Any] = JobContext(job, claim.token, payload, self._parts.store)
        attempt = Attempt(claim, context, started=self._parts.clock.time())
        self.attempts[job.id] = attempt
        self._parts.active[job.id] = attempt
        counters = self._parts.counters.of(job.queue, job.type)
        counters.wait.add(max(0.0, attempt.started - job.run_at))
        idle = self._idle
        while idle:
            runner = idle.pop()
            if not runner.done():
                runner.set_result((attempt, problem))
                return
        group.start_soon(self._run, attempt, problem)  # no idle runner (not expected): a task

    async def _runner(self) -> None:
        """One slot's runner: wait for an attempt, run it, again."""
        loop = asyncio.get_running_loop()
        idle = self._idle
        while True:
            handed: asyncio.Future[tuple[Attempt, JobError | None]] = loop.create_future()
            idle.append(handed)
            attempt, problem = await handed
            await self._run(attempt, problem)

    async def _run(self, attempt: Attempt, problem: JobError | None) -> None:
        job = attempt.claim.job
        handler = self._parts.handlers.get(job.type)
        result: object = None
        error: JobError | None = problem
        timed_out = False
        if error is None and handler is not None:
            with attempt.scope:
                timeout = job.options.timeout_seconds
                try:
                    if timeout is None:
                        result = await handler.fn(attempt.context)
                    else:
                        with self._parts.clock.move_on_after(timeout) as deadline:
                            result = await handler.fn(attempt.context)
                        timed_out = deadline.cancelled_caught
                except Exception as exc:  # noqa: BLE001 (a handler's failure is the job's: stored)
                    error = bounded_error(exc)
                    attempt.context.log.info("attempt %d failed: %r", job.attempt, exc)
        if timed_out and attempt.reason is None:
            error = JobError(
                kind="timeout", message=f"the attempt ran over {job.options.timeout_seconds:g}s"
            )
        self._finish(attempt, result, error, problem is not None)

    def _finish(
        self, attempt: Attempt, result: object, error: JobError | None, permanent: bool
    ) -> None:
        job = attempt.claim.job
        token = attempt.claim.token
        now = self._parts.clock.time()
        user = job.user_id

        def event(kind: Any, **fields: Any) -> JobEvent | None:
            return JobEvent(job_id=job.id, user_id=user, kind=kind, **fields) if user else None

        if attempt.reason == "lost":
            self._release(attempt, None)
            self._parts.counters.of(job.queue, job.type).lease_expiries += 1
            return
        if attempt.reason == "handed_back":
            finish = Finish(job_id=job.id, token=token, outcome="handed_back", finished_at=now)
        elif attempt.reason == "cancelled":
            finish = Finish(
                job_id=job.id,
                token=token,
                outcome="cancelled",
                finished_at=now,
                event=event("cancelled", percentage=_pct(attempt), message="cancelled"),
            )
        elif error is None:
            encoded = _encoder.encode(result)
            limit = self._parts.settings.max_result_bytes
            if len(encoded) > limit:
                error = JobError(
                    kind="result_too_large",
                    message=f"the result is {len(encoded)} bytes; at most {limit} are kept",
                )
                permanent = True
                finish = self._failure(attempt, error, permanent, now, event)
            else:
                finish = Finish(
                    job_id=job.id,
                    token=token,
                    outcome="completed",
                    finished_at=now,
                    result=encoded,
                    event=event("completed", percentage=100.0, result=encoded),
                )
        else:
            finish = self._failure(attempt, error, permanent, now, event)
        self._pending.append((attempt, finish))
        self._finish_waker.notify()

    def _failure(
        self, attempt: Attempt, error: JobError, permanent: bool, now: float, event: Any
    ) -> Finish:
        job = attempt.claim.job
        if not permanent and job.attempt < job.options.attempts:
            delay = job.options.backoff.delay(job.attempt, random.random())
            return Finish(
                job_id=job.id,
                token=attempt.claim.token,
                outcome="retry",
                finished_at=now,
                error=error,
                retry_at=now + delay,
                event=event(
                    "retrying", percentage=_pct(attempt), error=error.message, stage="retrying"
                ),
            )
        return Finish(
            job_id=job.id,
            token=attempt.claim.token,
            outcome="failed",
            finished_at=now,
            error=error,
            event=event("failed", percentage=_pct(attempt), error=error.message),
        )

    async def _finish_loop(self) -> None:
        store = self._parts.store
        while True:
            while not self._pending:
                await self._finish_waker.wait()
            await anyio.lowlevel.checkpoint()  # outcomes of the same moment go in one call
            batch = self._pending[: max(1, self.concurrency)]
            # The slots these outcomes free are claimed again in the same round trip
            # (unless the node is stopping, or a claim in flight may fill them).
            free = self.concurrency - len(self.attempts) + len(batch) - self._reserved
            if self._parts.stopping.is_set() or self._group is None:
                free = 0
            claims: list[Claim] = []
            due: float | None = None
            self._reserved += free
            try:
                if free > 0:
                    applied, claims, due = await store.finish_claim(
                        [finish for _, finish in batch],
                        self.queue,
                        free,
                        self._parts.clock.time(),
                        self._parts.settings.lease_seconds,
                    )
                else:
                    applied = await store.finish([finish for _, finish in batch])
            except RedisUnavailable:
                logger.warning("queue %s: store unavailable; finishes retried", self.queue)
                await self._backoff()
                continue
            finally:
                self._reserved -= free
            self._failures = 0
            del self._pending[: len(batch)]
            for (attempt, finish), ok in zip(batch, applied, strict=True):
                # With a claim done here, the claim loop need not look again: the queue
                # had no more waiting jobs than it handed out, or every slot is full.
                self._release(attempt, finish if ok else None, wake=free == 0)
            if self._group is not None:
                for claim in claims:
                    self._start(self._group, claim)
            if free > 0 and (due is not None or len(claims) == free):
                self._waker.notify()  # a delayed job to time (or more to claim): the claim loop
            self._parts.finished.notify()

    def _release(self, attempt: Attempt, finish: Finish | None, *, wake: bool = True) -> None:
        job = attempt.claim.job
        self.attempts.pop(job.id, None)
        if self._parts.active.get(job.id) is attempt:
            del self._parts.active[job.id]
        counters = self._parts.counters.of(job.queue, job.type)
        if finish is not None:
            counters.run.add(max(0.0, finish.finished_at - attempt.started))
            match finish.outcome:
                case "completed":
                    counters.completed += 1
                    marks = self._parts.completions.get(job.queue)
                    if marks is None:
                        marks = self._parts.completions[job.queue] = deque(maxlen=100_000)
                    marks.append(finish.finished_at)
                case "failed":
                    counters.failed += 1
                case "retry":
                    counters.retries += 1
                case "cancelled":
                    counters.cancelled += 1
                case "handed_back":
                    counters.handed_back += 1
        if wake:
            self._waker.notify()
        if not self.attempts:
            self._drained.notify()

    async def _renew_loop(self) -> None:
        parts = self._parts
        while True:
            await parts.clock.sleep(parts.settings.lease_seconds / 3)
            held = [
                (job_id, a.claim.token) for job_id, a in self.attempts.items() if a.reason is None
            ]
            if not held:
                continue
            try:
                lost = await parts.store.renew(
                    self.queue, held, parts.clock.time(), parts.settings.lease_seconds
                )
                asked = await parts.store.cancel_requested(self.queue, [j for j, _ in held])
            except RedisUnavailable:
                logger.warning("queue %s: store unavailable while renewing leases", self.queue)
                continue
            for job_id in lost:
                attempt = self.attempts.get(job_id)
                if attempt is not None:
                    logger.warning(
                        "queue %s: lease of %s lost; handler stopped", self.queue, job_id
                    )
                    attempt.stop("lost")
            for job_id in asked:
                attempt = self.attempts.get(job_id)
                if attempt is not None:
                    attempt.stop("cancelled")

    async def _drain(self) -> None:
        """Let active attempts finish within the grace, then hand back the rest."""
        clock = self._parts.clock
        with clock.move_on_after(self._parts.settings.shutdown_grace_seconds):
            while self.attempts:
                await self._drained.wait()
        handing_back = bool(self.attempts)
        for attempt in list(self.attempts.values()):
            attempt.stop("handed_back")
        with clock.move_on_after(self._parts.settings.shutdown_grace_seconds + 5.0):
            while self.attempts:
                await self._drained.wait()
        if handing_back:  # the jobs are waiting again: wake the idle nodes, as an enqueue does
            with contextlib.suppress(RedisUnavailable):  # else they find them at their poll
                await self._parts.fanout.publish(QueueKeys.channel(self.queue), b"handed_back")
        if self.attempts:
            logger.error(
                "queue %s: %d attempts not handed back; their leases will expire",
                self.queue,
                len(self.attempts),
            )


def _pct(attempt: Attempt) -> float:
    progress = attempt.context.last_progress
    return progress if progress is not None else 0.0
