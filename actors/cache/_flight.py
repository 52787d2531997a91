"""Single flight: one loader run per key per node, whatever the number of callers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from runtime import Rejected

if TYPE_CHECKING:
    from runtime import Clock

__all__ = ["Flight"]


class Flight:
    """The one load of ``key`` in progress; every caller that missed awaits it.

    The flight runs in the cache actor's task group, not in any caller's task,
    so a caller that gives up (timeout, cancellation) never strands the others.
    A loader's exception reaches every waiter; it does not crash the actor.
    """

    __slots__ = ("_done", "_error", "_value", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self._done = anyio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether the flight has a value or an error."""
        return self._done.is_set()

    def resolve(self, value: object) -> None:
        """Finish the flight with ``value`` and wake its waiters."""
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        """Finish the flight with ``error`` (raised to every waiter) and wake them."""
        self._error = error
        self._done.set()

    async def result(self, *, clock: Clock, timeout_seconds: float) -> Any:
        """The loaded value, or the loader's exception, within ``timeout_seconds``.

        Raises:
            Rejected: ``loader_timeout`` when the loader took longer.
        """
        with clock.move_on_after(timeout_seconds):
            await self._done.wait()
        if not self._done.is_set():
            raise Rejected(
                "loader_timeout",
                f"loading {self.key!r} took longer than {timeout_seconds:g}s; "
                "the load goes on and later callers share it",
            )
        if self._error is not None:
            raise self._error
        return self._value
