"""The queue actor's protocol, and the request shapes the Python API and HTTP bodies share.

Public commands are :class:`~runtime.Request` s typed with their reply, so
``added: Added = await ref.ask(QueueEnqueue(job=EnqueueRequest(...)))``
type-checks with no cast. Any actor (or a program that embeds the queue
with ``open_system``) can use them with a ref to the ``queue`` child; the
:class:`~actors.queue.Queue` facade stays the primary Python API and the
actor answers every command through it, so both validate and act the same way::

    added = await queue_ref.ask(
        QueueEnqueue(job=EnqueueRequest(type="send-email", payload={"to": "a@example.com"}))
    )
    page = await queue_ref.ask(QueueListJobs(queue="email", state="waiting", user_id="alice"))

**One schema.** :class:`EnqueueRequest` is the HTTP body of ``POST /api/jobs``;
:class:`QueueEnqueue` carries it as ``job`` (the message's own ``type`` field
is its tag, ``"queue.enqueue"``), so ``{"type": "queue.enqueue", "job": <the
HTTP body>}`` decodes into it. :class:`QueueListJobs` has the fields of the
``GET /api/jobs`` query. Replies that HTTP also returns (:class:`~._store.Added`,
:class:`~._store.QueueCounts`, :class:`~._store.JobPage`, :class:`QueueInfo`)
are the same Structs.

**Errors.** Invalid input comes back as :class:`~runtime.Rejected` with the
facade's codes, never as a crash (the actor carries on): ``unknown_queue``,
``unknown_job_type``, ``invalid_payload``, ``payload_too_large``,
``invalid_options``, ``invalid_request``; a Redis outage is ``unavailable``.
With ``user_id`` set, another user's job looks missing (``job=None``,
``outcome="missing"``, ``retried=False``), as it answers 404 over HTTP.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from runtime import Request

from ._model import Job, JobOptions, JobState
from ._statistics import Summary
from ._store import Added, CancelOutcome, JobPage, QueueCounts

__all__ = [
    "MAX_BATCH",
    "EnqueueRequest",
    "QueueCancel",
    "QueueCancelReply",
    "QueueEnqueue",
    "QueueEnqueueMany",
    "QueueEnqueueManyReply",
    "QueueGetCounts",
    "QueueGetJob",
    "QueueGetJobReply",
    "QueueInfo",
    "QueueListJobs",
    "QueueListQueues",
    "QueueListQueuesReply",
    "QueueMessage",
    "QueuePause",
    "QueuePauseReply",
    "QueueResume",
    "QueueResumeReply",
    "QueueRetry",
    "QueueRetryReply",
]

MAX_BATCH = 10_000
"""Jobs one :class:`QueueEnqueueMany` (or ``Queue.enqueue_many`` call) may carry."""


class EnqueueRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One job to enqueue: its type, JSON payload, optional queue, user and options.

    This is also the HTTP body of ``POST /api/jobs``.
    """

    type: str
    payload: object = None
    queue: str | None = None
    user_id: str | None = None
    options: JobOptions | None = None


class QueueInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One queue as ``GET /api/queues`` shows it."""

    name: str
    concurrency: int
    counts: QueueCounts
    throughput_per_minute: float
    wait_seconds: Summary
    run_seconds: Summary


# -- replies --------------------------------------------------------------------------------


class QueueEnqueueManyReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`QueueEnqueueMany`: one :class:`~._store.Added` per job, in order."""

    added: list[Added]


class QueueGetJobReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`QueueGetJob`: the job's record, or ``None``."""

    job: Job | None


class QueueListQueuesReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`QueueListQueues`: every configured queue, by name."""

    queues: list[QueueInfo]


class QueueCancelReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`QueueCancel`: what the cancel did (see ``CancelOutcome``)."""

    job_id: str
    outcome: CancelOutcome


class QueueRetryReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`QueueRetry`: ``retried`` is false unless it was failed or cancelled."""

    job_id: str
    retried: bool


class QueuePauseReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`QueuePause`: the queue is paused on every node."""

    queue: str
    paused: bool = True


class QueueResumeReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to :class:`QueueResume`: the queue is claimed from again."""

    queue: str
    paused: bool = False


# -- commands -------------------------------------------------------------------------------


class QueueEnqueue(Request[Added], tag="queue.enqueue", frozen=True, kw_only=True):
    """Store one job (``job`` is the body of ``POST /api/jobs``); reply: its id."""

    job: EnqueueRequest


class QueueEnqueueMany(
    Request[QueueEnqueueManyReply], tag="queue.enqueue_many", frozen=True, kw_only=True
):
    """Store a batch in one store call; all are validated first (one bad job stores none)."""

    jobs: Annotated[tuple[EnqueueRequest, ...], Meta(max_length=MAX_BATCH)]


class QueueGetJob(Request[QueueGetJobReply], tag="queue.get", frozen=True, kw_only=True):
    """A job's record; with ``user_id``, only if it is that user's job."""

    job_id: str
    user_id: str | None = None


class QueueListJobs(Request[JobPage], tag="queue.jobs", frozen=True, kw_only=True):
    """One page of a queue's jobs in one state (the fields of ``GET /api/jobs``'s query).

    With ``user_id`` only that user's jobs count: ``offset`` skips that many
    of them and the page holds up to ``limit`` of them. Go on from the
    reply's ``next_cursor`` and ``next_offset`` (see :class:`~._store.JobPage`).
    """

    queue: str
    state: JobState = "waiting"
    offset: Annotated[int, Meta(ge=0)] = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50
    cursor: Annotated[int, Meta(ge=0)] = 0
    user_id: str | None = None


class QueueGetCounts(Request[QueueCounts], tag="queue.counts", frozen=True, kw_only=True):
    """Jobs per state of ``queue``, and whether it is paused."""

    queue: str


class QueueListQueues(Request[QueueListQueuesReply], tag="queue.queues", frozen=True, kw_only=True):
    """Every queue: concurrency, counts, completions per minute here, wait and run times."""


class QueueCancel(Request[QueueCancelReply], tag="queue.cancel", frozen=True, kw_only=True):
    """Cancel a waiting or delayed job, or stop an active one; with ``user_id``, only theirs."""

    job_id: str
    user_id: str | None = None


class QueueRetry(Request[QueueRetryReply], tag="queue.retry", frozen=True, kw_only=True):
    """Put a failed or cancelled job back to waiting; with ``user_id``, only theirs."""

    job_id: str
    user_id: str | None = None


class QueuePause(Request[QueuePauseReply], tag="queue.pause", frozen=True, kw_only=True):
    """Stop every node claiming from ``queue``."""

    queue: str


class QueueResume(Request[QueueResumeReply], tag="queue.resume", frozen=True, kw_only=True):
    """Let every node claim from ``queue`` again."""

    queue: str


QueueMessage = (
    QueueEnqueue | QueueEnqueueMany | QueueGetJob | QueueListJobs | QueueGetCounts
    | QueueListQueues | QueueCancel | QueueRetry | QueuePause | QueueResume
)  # fmt: skip
"""Every public command of the queue actor (a tagged union: decode it from JSON or msgpack)."""
