"""The hub client's bounded buffer of frames for the application.

:meth:`EventBuffer.put` waits while the buffer is full, so the client's reader
stops reading the socket until the application takes frames: backpressure
reaches the server over TCP, and a server whose outbox overflows disconnects
the client (4008), which then reconnects and recovers from the room history.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["EventBuffer"]

_T = TypeVar("_T")


class EventBuffer(Generic[_T]):
    """A bounded FIFO for one reader (the client) and any number of consumers."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"buffer size is {size}; expected at least 1")
        self._size = size
        self._items: deque[_T] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._closed = False
        self.pauses = 0
        """How many times ``put`` had to wait for room (the reader paused)."""
        self.paused = False
        """Whether ``put`` waits for room right now."""

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """The most frames the buffer holds."""
        return self._size

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (buffered frames can still be taken)."""
        return self._closed

    async def put(self, item: _T) -> None:
        """Append ``item``, waiting while the buffer is full (unless it is closed)."""
        if len(self._items) >= self._size and not self._closed:
            self.pauses += 1
            self.paused = True
            try:
                while len(self._items) >= self._size and not self._closed:
                    self._writable.clear()
                    await self._writable.wait()
            finally:
                self.paused = False
        self._items.append(item)
        self._readable.set()

    async def get(self) -> _T | None:
        """The oldest item, waiting for one; ``None`` once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item

    def close(self) -> None:
        """No more items: wake every consumer (they drain what is left, then get ``None``)."""
        self._closed = True
        self._readable.set()
        self._writable.set()
