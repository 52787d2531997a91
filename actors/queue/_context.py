"""What a handler receives: the job's payload, identity, progress and cancellation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from ._model import JobEvent, Progress

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from ._model import Job
    from ._store import JobStore

__all__ = ["JobContext"]

T = TypeVar("T")
_log = logging.getLogger("actors.queue.job")


class _JobLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"[{self.extra['job_id'] if self.extra else ''}] {msg}", kwargs


class JobContext(Generic[T]):
    """One attempt of one job, as its handler sees it.

    Attributes:
        payload: the payload, decoded into the handler's type.
        job_id, queue, type, user_id: the job's identity.
        attempt: this attempt's number (1-based).
        log: a logger whose records name the job.
    """

    def __init__(
        self,
        job: Job,
        token: int,
        payload: T,
        store: JobStore,
    ) -> None:
        self.payload = payload
        self.job_id = job.id
        self.queue = job.queue
        self.type = job.type
        self.user_id = job.user_id
        self.attempt = job.attempt
        self.token = token
        self._store = store
        # Made on first use: most handlers never wait for a cancel nor log.
        self._log: _JobLog | None = None
        self._cancel: anyio.Event | None = None
        self._cancel_requested = False
        self.last_progress: float | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records name the job."""
        if self._log is None:
            self._log = _JobLog(_log, {"job_id": self.job_id})
        return self._log

    @property
    def cancel_requested(self) -> bool:
        """``True`` once the job was asked to stop (cancel, timeout, lost lease, shutdown)."""
        return self._cancel_requested

    async def cancelled(self) -> None:
        """Wait until the job is asked to stop."""
        if self._cancel is None:
            self._cancel = anyio.Event()
            if self._cancel_requested:
                self._cancel.set()
        await self._cancel.wait()

    def request_cancel(self) -> None:
        """Flag the attempt as asked to stop (the worker also cancels the handler's task)."""
        self._cancel_requested = True
        if self._cancel is not None:
            self._cancel.set()

    async def progress(
        self, percentage: float, stage: str | None = None, message: str | None = None
    ) -> bool:
        """Record progress (0..100) and tell the job's user; ``False`` if the attempt is stale."""
        pct = min(100.0, max(0.0, float(percentage)))
        event = (
            JobEvent(
                job_id=self.job_id,
                user_id=self.user_id,
                kind="progress",
                percentage=pct,
                stage=stage,
                message=message,
            )
            if self.user_id is not None
            else None
        )
        progress = Progress(percentage=pct, stage=stage, message=message)
        self.last_progress = pct
        return await self._store.progress(self.job_id, self.token, progress, event)
