"""The queue actor: durable background jobs with retries, progress to the user and leases.

* :class:`Queue` is the Python API (``@queue.handler``, enqueue, inspect,
  cancel, retry, pause, wait, repeat); other packages ``setup.require(QUEUE)``.
* :func:`install` adds the queue to a node: a worker per configured queue,
  the outbox that carries job events to the socket hub, the repeatable-job
  scheduler, the store guard (a readiness check), the :class:`QueueActor`
  (child ``queue``) and its statistics (``queue``).
* :func:`queue_child` builds a queue for embedding under a supervisor.
* The messages (``QueueEnqueue`` ... ``QueueResume``, each a ``Request``
  typed with its reply; :data:`QueueMessage` is their union) are the actor's
  protocol: any actor can ``ask`` the ``queue`` child with them, without the
  facade (see :mod:`actors.queue._messages`). The actor answers each through
  the facade, so both behave the same.
* Without Redis jobs live in a :class:`MemoryJobStore`; with Redis in a
  ``RedisJobStore`` shared by every node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime import ChildSpec, MemoryFanout, RedisFanout, ServiceSpec, SystemClock

from ._actor import QueueActor
from ._context import JobContext
from ._facade import QUEUE, Queue
from ._guard import GUARD_SECONDS, StoreGuard, StoreHealth
from ._handlers import Handlers
from ._keys import QueueKeys
from ._messages import (
    MAX_BATCH,
    EnqueueRequest,
    QueueCancel,
    QueueCancelReply,
    QueueEnqueue,
    QueueEnqueueMany,
    QueueEnqueueManyReply,
    QueueGetCounts,
    QueueGetJob,
    QueueGetJobReply,
    QueueInfo,
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
from ._model import Backoff, Job, JobError, JobEvent, JobOptions, JobState, Progress, Retention
from ._outbox import Outbox
from ._parts import QueueParts
from ._routes import queue_blueprint
from ._schedule import Scheduler
from ._settings import QUEUE_SETTINGS, QueueSettings
from ._statistics import QueueStatistics, Summary, TypeStatistics
from ._store import USER_SCAN_LIMIT, Added, CancelOutcome, JobPage, JobStore, QueueCounts, StoreLost
from ._store_memory import MemoryJobStore
from ._store_redis import RedisJobStore
from ._worker import Worker

if TYPE_CHECKING:
    from actors.socket_hub import Hub
    from runtime import Clock, Fanout, NodeSetup, RedisLink

__all__ = [
    "GUARD_SECONDS",
    "MAX_BATCH",
    "QUEUE",
    "QUEUE_SETTINGS",
    "USER_SCAN_LIMIT",
    "Added",
    "Backoff",
    "CancelOutcome",
    "EnqueueRequest",
    "Job",
    "JobContext",
    "JobError",
    "JobEvent",
    "JobOptions",
    "JobPage",
    "JobState",
    "JobStore",
    "MemoryJobStore",
    "Progress",
    "Queue",
    "QueueActor",
    "QueueCancel",
    "QueueCancelReply",
    "QueueCounts",
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
    "QueueParts",
    "QueuePause",
    "QueuePauseReply",
    "QueueResume",
    "QueueResumeReply",
    "QueueRetry",
    "QueueRetryReply",
    "QueueSettings",
    "QueueStatistics",
    "RedisJobStore",
    "Retention",
    "StoreGuard",
    "StoreHealth",
    "StoreLost",
    "Summary",
    "TypeStatistics",
    "install",
    "queue_blueprint",
    "queue_child",
]


def queue_child(
    *,
    settings: QueueSettings | None = None,
    prefix: str = "switchyard",
    clock: Clock | None = None,
    redis: RedisLink | None = None,
    fanout: Fanout | None = None,
    hub: Hub | None = None,
    store: JobStore | None = None,
    actor_id: str = "queue",
) -> tuple[list[ServiceSpec | ChildSpec], QueueParts, Queue]:
    """A queue to run under a supervisor: its specs, its parts and its API.

    The service specs run the workers, the outbox, the scheduler and the
    store guard; the last spec is the :class:`QueueActor` (child ``actor_id``)
    that answers the queue's messages through the returned :class:`Queue`.
    Handlers and repeatable jobs registered on the :class:`Queue` before the
    specs start are the ones that run.
    """
    settings = settings or QueueSettings()
    clock = clock or SystemClock()
    fanout = fanout or MemoryFanout()
    queues = settings.queues
    if store is None:
        if redis is None:
            store = MemoryJobStore(
                list(queues), outbox_size=settings.outbox_size, rate_limits=settings.limits
            )
        else:
            store = RedisJobStore(
                redis,
                QueueKeys(prefix),
                list(queues),
                fanout=fanout if isinstance(fanout, RedisFanout) else None,
                rate_limits=settings.limits,
                outbox_size=settings.outbox_size,
                outbox_lease_seconds=settings.outbox_lease_seconds,
            )
    parts = QueueParts(
        settings=settings,
        queues=queues,
        store=store,
        handlers=Handlers(queues),
        clock=clock,
        fanout=fanout,
    )
    if redis is not None:
        parts.backoff = redis.backoff_seconds
    queue = Queue(parts)
    grace = settings.shutdown_grace_seconds + 10.0
    parts.guard = StoreGuard(parts, redis)
    specs: list[ServiceSpec | ChildSpec] = [parts.guard.spec()]
    specs.extend(
        ServiceSpec(f"queue.worker.{name}", Worker(parts, name).run, shutdown_seconds=grace)
        for name in queues
    )
    specs.append(ServiceSpec("queue.outbox", Outbox(parts, hub).run))
    specs.append(ServiceSpec("queue.schedule", Scheduler(parts, queue).run))
    specs.append(ChildSpec(actor_id, lambda: QueueActor(queue)))
    return specs, parts, queue


def install(setup: NodeSetup) -> Queue:
    """Add the queue, its services and statistics to a node; return its Python API."""
    from actors.socket_hub import HUB

    specs, parts, queue = queue_child(
        settings=setup.section(QUEUE_SETTINGS),
        prefix=setup.settings.redis_prefix,
        clock=setup.clock,
        redis=setup.redis,
        fanout=setup.fanout,
        hub=setup.find(HUB),
    )
    parts.stopping = setup.stopping
    for spec in specs:
        setup.add_actor(spec)
    setup.add_readiness_check("queue.store", lambda: parts.lost_reason)
    setup.add_blueprint(queue_blueprint())
    setup.add_statistics("queue", queue.statistics)
    guard = parts.guard
    assert guard is not None  # queue_child built it
    setup.add_statistics("queue.store", guard.statistics)
    setup.provide(QUEUE, queue)
    return queue
