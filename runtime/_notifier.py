"""A lazy wake-up for tasks that wait for some state to change."""

from __future__ import annotations

import asyncio

__all__ = ["Notifier"]


class Notifier:
    """Wakes every task waiting in :meth:`wait` at the next :meth:`notify`.

    Each waiter waits on a future of its own, created when it waits and
    forgotten at the notification, so a waiter re-checks its condition in a
    loop::

        while not condition():
            await notifier.wait()

    Bound the loop with a timeout (``anyio.fail_after``) where it may wait long.
    A bare future rather than an event: one per waiting session writer, and a
    node can have many thousands of them idle (an ``asyncio.Event`` holds a
    deque of some 600 bytes).
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    async def wait(self) -> None:
        """Sleep until the next :meth:`notify`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            self._waiters = [future]
        else:
            waiters.append(future)
        try:
            await future
        finally:
            if not future.done() or future.cancelled():
                waiters = self._waiters
                if waiters is not None and future in waiters:
                    waiters.remove(future)

    def notify(self) -> None:
        """Wake every current waiter; later waiters wait for the next notification."""
        waiters, self._waiters = self._waiters, None
        if waiters is not None:
            for future in waiters:
                if not future.done():
                    future.set_result(None)
