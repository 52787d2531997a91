"""The receipt of one change queued for Redis: :class:`Completion`."""

from __future__ import annotations

import anyio

__all__ = ["Completion"]


class Completion:
    """Set when the writer has carried an operation to Redis (or given up on it).

    The event is made only when somebody waits before the end: an operation
    that is finished before anyone looks costs no event.
    """

    __slots__ = ("_done", "_event", "result")

    def __init__(self) -> None:
        self._done = False
        self._event: anyio.Event | None = None
        self.result = 0

    @property
    def done(self) -> bool:
        """Whether :meth:`finish` was called."""
        return self._done

    def finish(self, result: int = 0) -> None:
        """Record ``result`` and wake every waiter."""
        self.result = result
        self._done = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> int:
        """Wait until :meth:`finish` was called; return its result."""
        if not self._done:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        return self.result
