"""The queue actor: the queue's protocol (:mod:`._messages`) for other actors.

It holds no state of its own and no logic of its own: every command is
answered by the node's :class:`~actors.queue.Queue` facade, the same
implementation the HTTP routes and Python callers use, so a message is
validated, stored and refused exactly as a facade call is. Its job is the
translation: a command to a facade call, the result to the command's reply
Struct, and a Redis outage (which would otherwise crash it) to
``Rejected("unavailable")``. The facade's refusals are :class:`~runtime.Rejected`
already; the runtime hands them to the asker and the actor carries on.

Commands are answered one at a time, in mailbox order; a caller that needs
many concurrent store round trips should hold the facade instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, assert_never

from runtime import Actor, RedisUnavailable, Rejected

from ._messages import (
    QueueCancel,
    QueueCancelReply,
    QueueEnqueue,
    QueueEnqueueMany,
    QueueEnqueueManyReply,
    QueueGetCounts,
    QueueGetJob,
    QueueGetJobReply,
    QueueListJobs,
    QueueListQueues,
    QueueListQueuesReply,
    QueueMessage,
    QueuePause,
    QueuePauseReply,
    QueueResume,
    QueueResumeReply,
    QueueRetry,
    QueueRetryReply,
)

if TYPE_CHECKING:
    from ._facade import Queue

__all__ = ["QueueActor"]


class QueueActor(Actor[QueueMessage]):
    """Answers the queue's commands through ``queue`` (see the module docstring)."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    async def handle(self, message: QueueMessage) -> Any:
        """Answer one command with its reply; a user error comes back as ``Rejected``."""
        try:
            return await self._answer(message)
        except RedisUnavailable as exc:
            reason = f"the queue's store cannot be reached; retry ({exc})"
            raise Rejected("unavailable", reason) from None

    async def _answer(self, message: QueueMessage) -> Any:
        queue = self._queue
        match message:
            case QueueEnqueue(job=job):
                return (await queue.enqueue_many([job]))[0]
            case QueueEnqueueMany(jobs=jobs):
                return QueueEnqueueManyReply(added=await queue.enqueue_many(jobs))
            case QueueGetJob(job_id=job_id, user_id=user_id):
                return QueueGetJobReply(job=await queue.get(job_id, user_id=user_id))
            case QueueListJobs():
                return await queue.jobs(
                    message.queue,
                    message.state,
                    message.offset,
                    message.limit,
                    user_id=message.user_id,
                    cursor=message.cursor,
                )
            case QueueGetCounts(queue=name):
                return await queue.counts(name)
            case QueueListQueues():
                return QueueListQueuesReply(queues=await queue.queues())
            case QueueCancel(job_id=job_id, user_id=user_id):
                outcome = await queue.cancel(job_id, user_id=user_id)
                return QueueCancelReply(job_id=job_id, outcome=outcome)
            case QueueRetry(job_id=job_id, user_id=user_id):
                retried = await queue.retry(job_id, user_id=user_id)
                return QueueRetryReply(job_id=job_id, retried=retried)
            case QueuePause(queue=name):
                await queue.pause(name)
                return QueuePauseReply(queue=name)
            case QueueResume(queue=name):
                await queue.resume(name)
                return QueueResumeReply(queue=name)
            case _:
                assert_never(message)
