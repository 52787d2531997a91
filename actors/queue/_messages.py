"""The queue's public request shapes (the Python API and the HTTP bodies share them)."""

from __future__ import annotations

import msgspec

from ._model import JobOptions
from ._statistics import Summary
from ._store import QueueCounts

__all__ = ["EnqueueRequest", "QueueInfo"]


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
