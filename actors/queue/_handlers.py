"""Job handlers by type: the registry the ``@queue.handler`` decorator fills, and payload checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from runtime import Rejected

from ._model import QUEUE_NAME

if TYPE_CHECKING:
    import builtins

    from ._context import JobContext

__all__ = ["Handler", "HandlerFn", "Handlers"]

HandlerFn = Callable[["JobContext[Any]"], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Handler:
    """One job type: its queue, its payload type and the function that runs it."""

    type: str
    queue: str
    payload: builtins.type[Any]
    fn: HandlerFn
    decoder: msgspec.json.Decoder[Any]

    def decode(self, payload: bytes) -> Any:
        """The payload as the handler's type (raises ``msgspec.ValidationError``)."""
        return self.decoder.decode(payload)


class Handlers:
    """Every handler of a node, by job type."""

    def __init__(self, queues: dict[str, int]) -> None:
        self._queues = queues
        self._by_type: dict[str, Handler] = {}

    def add(self, job_type: str, queue: str, payload: type[Any], fn: HandlerFn) -> Handler:
        """Register ``fn`` for ``job_type`` on ``queue``.

        Raises:
            ValueError: a bad job type, an unknown queue, or a type registered twice.
        """
        if QUEUE_NAME.match(job_type) is None:
            raise ValueError(f"job type {job_type!r} must match {QUEUE_NAME.pattern}")
        if queue not in self._queues:
            raise ValueError(f"queue {queue!r} is not configured (known: {sorted(self._queues)})")
        if job_type in self._by_type:
            raise ValueError(f"job type {job_type!r} has a handler already")
        handler = Handler(job_type, queue, payload, fn, msgspec.json.Decoder(payload))
        self._by_type[job_type] = handler
        return handler

    def get(self, job_type: str) -> Handler | None:
        """The handler of ``job_type``, or ``None``."""
        return self._by_type.get(job_type)

    def require(self, job_type: str) -> Handler:
        """The handler of ``job_type``; raises ``Rejected("unknown_job_type")``."""
        handler = self._by_type.get(job_type)
        if handler is None:
            raise Rejected("unknown_job_type", f"no handler is registered for {job_type!r}")
        return handler

    def types(self) -> list[str]:
        """Registered job types, sorted."""
        return sorted(self._by_type)
