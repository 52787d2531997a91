"""A job as the queue stores it: its options, its state and what it produced.

These Structs are the queue's one schema: the HTTP body of ``POST /api/jobs``
decodes into :class:`JobOptions`, the actor passes :class:`NewJob` to its store,
and the store keeps :class:`Job` (msgpack in Redis). Payloads and results are
JSON bytes, validated against the handler's type at enqueue and spliced into
HTTP replies and ``task_progress`` frames without re-encoding.

Job ids are ``<queue>.<suffix>``: the queue is readable from the id, so every
store operation on one job touches that queue's keys (one Redis Cluster slot).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "JOB_STATES",
    "QUEUE_NAME",
    "Backoff",
    "Job",
    "JobError",
    "JobEvent",
    "JobOptions",
    "JobState",
    "NewJob",
    "Progress",
    "Retention",
    "queue_of",
]

JobState = Literal["waiting", "delayed", "active", "completed", "failed", "cancelled"]
JOB_STATES: tuple[JobState, ...] = (
    "waiting",
    "delayed",
    "active",
    "completed",
    "failed",
    "cancelled",
)
QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
"""Queue names and job types: lowercase letters, digits, ``-`` and ``_``, at most 64."""


def queue_of(job_id: str) -> str | None:
    """The queue a job id belongs to, or ``None`` for an id no queue could have made."""
    queue, dot, suffix = job_id.partition(".")
    if not dot or not suffix or QUEUE_NAME.match(queue) is None:
        return None
    return queue


class Backoff(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How long a failed attempt waits before the next: ``base * 2**(attempt-1)`` or ``base``.

    ``jitter`` is the fraction of the delay drawn at random (0.25: the delay
    is between 75 % and 100 % of the computed one); ``cap_seconds`` bounds it.
    """

    kind: Literal["exponential", "fixed"] = "exponential"
    base_seconds: Annotated[float, Meta(ge=0, le=86_400)] = 2.0
    cap_seconds: Annotated[float, Meta(ge=0, le=604_800)] = 3_600.0
    jitter: Annotated[float, Meta(ge=0, le=1)] = 0.0

    def delay(self, attempt: int, draw: float) -> float:
        """Seconds to wait after failed ``attempt`` (1-based); ``draw`` is uniform in [0, 1)."""
        raw = self.base_seconds if self.kind == "fixed" else self.base_seconds * 2 ** (attempt - 1)
        capped = min(raw, self.cap_seconds)
        return capped * (1.0 - self.jitter * draw)


class Retention(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Finished jobs of one outcome kept: the last ``count``, younger than ``age_seconds``."""

    count: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    age_seconds: Annotated[float, Meta(gt=0, le=31_536_000)] | None = None


class JobOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a producer may choose per job (BullMQ's ``JobsOptions``, the useful part).

    Attributes:
        attempts: runs before the job is failed for good (1 = no retry).
        backoff: the wait between attempts.
        delay_seconds: not before this long after enqueue.
        run_at: not before this Unix time (wins over ``delay_seconds``).
        priority: higher runs first; equal priorities run in enqueue order.
        timeout_seconds: an attempt running longer is cancelled and counts as failed.
        dedup_key: while a job with this key is unfinished, enqueue returns its id.
        remove_on_complete: completed jobs kept (default: the last 100).
        remove_on_fail: failed jobs kept (default: the last 50).
        result_ttl_seconds: a completed job's record expires this long after it finished.
    """

    attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    backoff: Backoff = Backoff()
    delay_seconds: Annotated[float, Meta(ge=0, le=31_536_000)] = 0.0
    run_at: Annotated[float, Meta(ge=0)] | None = None
    priority: Annotated[int, Meta(ge=-1000, le=1000)] = 0
    timeout_seconds: Annotated[float, Meta(gt=0, le=86_400)] | None = None
    dedup_key: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    remove_on_complete: Retention = Retention(count=100)
    remove_on_fail: Retention = Retention(count=50)
    result_ttl_seconds: Annotated[float, Meta(gt=0, le=31_536_000)] | None = None


class Progress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The last progress a handler reported."""

    percentage: Annotated[float, Meta(ge=0, le=100)]
    stage: str | None = None
    message: str | None = None


class JobError(msgspec.Struct, frozen=True, kw_only=True):
    """Why an attempt failed: the exception's type and message and a bounded traceback."""

    kind: str
    message: str
    traceback: str = ""


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """A validated job on its way into the store (the id is chosen by the caller)."""

    id: str
    queue: str
    type: str
    payload: bytes
    options: JobOptions
    user_id: str | None = None
    run_at: float
    created_at: float
    repeat_key: str | None = None


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A job's record: what was asked, where it is, and what came of it.

    ``attempt`` counts attempts started; ``token`` is the fencing token of the
    current (or last) attempt: a finish carrying an older token is a no-op.
    """

    id: str
    queue: str
    type: str
    payload: bytes
    options: JobOptions
    user_id: str | None = None
    state: JobState
    attempt: int = 0
    token: int = 0
    progress: Progress | None = None
    result: bytes | None = None
    error: JobError | None = None
    created_at: float
    run_at: float
    started_at: float | None = None
    finished_at: float | None = None
    lease_until: float | None = None
    repeat_key: str | None = None


class JobEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the job's user is told: one ``task_progress`` frame in their personal room.

    ``kind`` is ``progress``, ``retrying``, ``completed``, ``failed`` or
    ``cancelled``; the finishing ones are written by the same store operation
    that records the outcome (an outbox), so the record and the event agree.
    """

    job_id: str
    user_id: str
    kind: Literal["progress", "retrying", "completed", "failed", "cancelled"]
    percentage: float
    stage: str | None = None
    message: str | None = None
    result: bytes | None = None
    error: str | None = None
