"""A lazy wake-up for tasks that wait for some state to change."""

from __future__ import annotations

import anyio

__all__ = ["Notifier"]


class Notifier:
    """Wakes every task waiting in :meth:`wait` at the next :meth:`notify`.

    The event is created only when someone waits, and replaced at each
    notification, so a waiter re-checks its condition in a loop::

        while not condition():
            await notifier.wait()

    Bound the loop with a timeout (``anyio.fail_after``) where it may wait long.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    async def wait(self) -> None:
        """Sleep until the next :meth:`notify`."""
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def notify(self) -> None:
        """Wake every current waiter; later waiters wait for the next notification."""
        event, self._event = self._event, None
        if event is not None:
            event.set()
