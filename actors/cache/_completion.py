"""The receipt of one change queued for Redis: :class:`Completion`."""

from __future__ import annotations

import anyio

__all__ = ["Completion"]


class Completion:
    """Set when the writer has carried an operation to Redis (or given up on it)."""

    __slots__ = ("_done", "result")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.result = 0

    def finish(self, result: int = 0) -> None:
        """Record ``result`` and wake every waiter."""
        self.result = result
        self._done.set()

    async def wait(self) -> int:
        """Wait until :meth:`finish` was called; return its result."""
        await self._done.wait()
        return self.result
