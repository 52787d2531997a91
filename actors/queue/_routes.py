"""The queue's HTTP routes (bearer token): jobs under ``/api/jobs``, queues under ``/api/queues``.

A user sees, cancels and retries only their own jobs (the token's ``sub`` is
the job's ``user_id``); someone else's job answers 404, as a missing one does,
so ids do not leak. The routes pass the subject to the facade as ``user_id``,
which decides ownership (as it does for the queue's messages), and a user's
``GET /api/jobs`` pages count only their jobs. The ``admin`` role sees every
job (and its traceback) and alone may pause and resume a queue (403 otherwise).

Errors keep the node's shape: the facade's refusals answer 400 (404 for an
unknown queue or job type, 413 for a payload over the limit), a body that
does not decode 400/422, and Redis that cannot store the job 503.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_request, document_response

from runtime import (
    ApiError,
    RedisUnavailable,
    Rejected,
    current_principal,
    decode_body,
    document_errors,
    json_response,
    node_context,
    require_auth,
)

from ._facade import QUEUE
from ._messages import EnqueueRequest, QueueInfo
from ._model import JOB_STATES, JobOptions, JobState, Progress
from ._store import Added, QueueCounts

if TYPE_CHECKING:
    from runtime import Principal

    from ._facade import Queue
    from ._model import Job

__all__ = [
    "EnqueueBody",
    "JobList",
    "JobQuery",
    "JobView",
    "JobViewError",
    "Outcome",
    "queue_blueprint",
]

ADMIN_ROLE = "admin"
_REJECTED_STATUS = {
    "unknown_queue": 404,
    "unknown_job_type": 404,
    "payload_too_large": 413,
}


class EnqueueBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The schema of ``POST /api/jobs`` as documented: :class:`EnqueueRequest` field for field.

    ``EnqueueRequest.payload`` is typed ``object``, which msgspec cannot describe; here it
    is ``Any`` (any JSON). A test checks the two keep the same fields.
    """

    type: str
    payload: Any = None
    queue: str | None = None
    user_id: str | None = None
    options: JobOptions | None = None


class JobViewError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Why a job failed; ``traceback`` only for an admin."""

    kind: str
    message: str
    traceback: str | None = None


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """A job as the API shows it (``result`` is the handler's JSON, as stored)."""

    id: str
    queue: str
    type: str
    state: JobState
    attempt: int
    attempts: int
    progress: Progress | None
    result: msgspec.Raw | None
    error: JobViewError | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    user_id: str | None


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/jobs``: one page of a queue's jobs in one state (a user's: only theirs).

    ``next_cursor`` is ``null`` at the end of the list; otherwise the next
    page is ``?cursor=<next_cursor>&offset=<next_offset>`` (``offset + limit``
    from the same ``cursor`` works too, scanning again from there).
    """

    jobs: list[JobView]
    offset: int
    limit: int
    cursor: int = 0
    next_cursor: int | None = None
    next_offset: int = 0


class JobQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of ``GET /api/jobs`` (``offset`` and ``limit`` count the caller's jobs)."""

    queue: str
    state: JobState = "waiting"
    offset: Annotated[int, Meta(ge=0)] = 0
    limit: Annotated[int, Meta(ge=1, le=500)] = 50
    cursor: Annotated[int, Meta(ge=0)] = 0


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What cancel/retry/pause/resume did."""

    id: str
    outcome: str


def _queue() -> Queue:
    found: Queue = node_context().get(QUEUE)
    return found


def _is_admin(principal: Principal) -> bool:
    return principal.has_role(ADMIN_ROLE)


def _scope(principal: Principal) -> str | None:
    """The ``user_id`` the facade scopes the caller's reads to (``None``: an admin sees all)."""
    return None if _is_admin(principal) else principal.subject


def _view(job: Job, *, admin: bool) -> JobView:
    error = None
    if job.error is not None:
        error = JobViewError(
            kind=job.error.kind,
            message=job.error.message,
            traceback=(job.error.traceback or None) if admin else None,
        )
    return JobView(
        id=job.id,
        queue=job.queue,
        type=job.type,
        state=job.state,
        attempt=job.attempt,
        attempts=job.options.attempts,
        progress=job.progress,
        result=None if job.result is None else msgspec.Raw(job.result),
        error=error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        user_id=job.user_id,
    )


async def _own_job(job_id: str) -> Job:
    """The job, if the caller may see it; 404 otherwise (another user's job looks missing)."""
    job = await _queue().get(job_id, user_id=_scope(current_principal()))
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id[:80]!r}")
    return job


def _rejected(exc: Rejected) -> ApiError:
    return ApiError(_REJECTED_STATUS.get(exc.code, 400), exc.code, exc.message)


def _unavailable(exc: RedisUnavailable) -> ApiError:
    return ApiError(503, "unavailable", f"the queue cannot store jobs right now; retry ({exc})")


def _int_arg(name: str, raw: str | None, default: int, lowest: int, highest: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lowest - 1
    if not lowest <= value <= highest:
        raise ApiError(
            422, "validation_error", f"{name} must be an integer in [{lowest}, {highest}]"
        )
    return value


def queue_blueprint() -> Blueprint:
    """The queue's routes; every one needs a token, pause and resume the ``admin`` role."""
    routes = Blueprint("queue", __name__, url_prefix="/api")

    @routes.post("/jobs")
    @document_request(EnqueueBody)
    @document_response(Added, 202)
    @document_errors(400, 401, 404, 413, 422, 503)
    @require_auth()
    async def enqueue() -> Response:
        body = await decode_body(EnqueueRequest)
        principal = current_principal()
        user_id = body.user_id if _is_admin(principal) and body.user_id else principal.subject
        try:
            added = await _queue().enqueue(
                body.type, body.payload, queue=body.queue, user_id=user_id, options=body.options
            )
        except Rejected as exc:
            raise _rejected(exc) from None
        except RedisUnavailable as exc:
            raise _unavailable(exc) from None
        return json_response(added, 202)

    @routes.get("/jobs")
    @document_querystring(JobQuery)
    @document_response(JobList)
    @document_errors(401, 404, 422)
    @require_auth()
    async def list_jobs() -> Response:
        principal = current_principal()
        queue = request.args.get("queue")
        if not queue:
            raise ApiError(422, "validation_error", "give the queue: ?queue=<name>")
        state = request.args.get("state", "waiting")
        if state not in JOB_STATES:
            raise ApiError(422, "validation_error", f"state must be one of {list(JOB_STATES)}")
        offset = _int_arg("offset", request.args.get("offset"), 0, 0, 1_000_000)
        limit = _int_arg("limit", request.args.get("limit"), 50, 1, 500)
        cursor = _int_arg("cursor", request.args.get("cursor"), 0, 0, 1_000_000_000)
        try:
            page = await _queue().jobs(
                queue, state, offset, limit, user_id=_scope(principal), cursor=cursor
            )
        except Rejected as exc:
            raise _rejected(exc) from None
        admin = _is_admin(principal)
        return json_response(
            JobList(
                jobs=[_view(job, admin=admin) for job in page.jobs],
                offset=offset,
                limit=limit,
                cursor=cursor,
                next_cursor=page.next_cursor,
                next_offset=page.next_offset,
            )
        )

    @routes.get("/jobs/<job_id>")
    @document_response(JobView)
    @document_errors(401, 404)
    @require_auth()
    async def get_job(job_id: str) -> Response:
        job = await _own_job(job_id)
        return json_response(_view(job, admin=_is_admin(current_principal())))

    @routes.post("/jobs/<job_id>/cancel")
    @document_response(Outcome)
    @document_errors(401, 404)
    @require_auth()
    async def cancel(job_id: str) -> Response:
        outcome = await _queue().cancel(job_id, user_id=_scope(current_principal()))
        if outcome == "missing":
            raise ApiError(404, "not_found", f"no job {job_id[:80]!r}")
        return json_response(Outcome(id=job_id, outcome=outcome))

    @routes.post("/jobs/<job_id>/retry")
    @document_response(Outcome)
    @document_errors(401, 404, 409)
    @require_auth()
    async def retry(job_id: str) -> Response:
        await _own_job(job_id)
        if not await _queue().retry(job_id):
            raise ApiError(409, "conflict", f"job {job_id[:80]!r} is not failed or cancelled")
        return json_response(Outcome(id=job_id, outcome="retried"))

    @routes.get("/queues")
    @document_response(list[QueueInfo])
    @document_errors(401)
    @require_auth()
    async def queues() -> Response:
        return json_response(await _queue().queues())

    @routes.get("/queues/<name>")
    @document_response(QueueCounts)
    @document_errors(401, 404)
    @require_auth()
    async def queue_counts(name: str) -> Response:
        try:
            return json_response(await _queue().counts(name))
        except Rejected as exc:
            raise _rejected(exc) from None

    @routes.post("/queues/<name>/pause")
    @document_response(Outcome)
    @document_errors(401, 403, 404)
    @require_auth(role=ADMIN_ROLE)
    async def pause(name: str) -> Response:
        try:
            await _queue().pause(name)
        except Rejected as exc:
            raise _rejected(exc) from None
        return json_response(Outcome(id=name, outcome="paused"))

    @routes.post("/queues/<name>/resume")
    @document_response(Outcome)
    @document_errors(401, 403, 404)
    @require_auth(role=ADMIN_ROLE)
    async def resume(name: str) -> Response:
        try:
            await _queue().resume(name)
        except Rejected as exc:
            raise _rejected(exc) from None
        return json_response(Outcome(id=name, outcome="resumed"))

    return routes
