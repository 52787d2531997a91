"""Injectable time: every TTL, timeout, lease and backoff reads a :class:`Clock`.

Production code uses :class:`SystemClock`. Tests use :class:`ManualClock`
(re-exported by :mod:`runtime.testing`) and move time forward by hand, so no
test sleeps to wait for time to pass.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import TYPE_CHECKING, Protocol

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

__all__ = ["Clock", "ManualClock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    """A scheduled callback that can still be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The time source every runtime component reads."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations and deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for token expiry and timestamps)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` have passed on this clock."""
        ...

    def move_on_after(self, seconds: float) -> AbstractContextManager[anyio.CancelScope]:
        """A cancel scope that is cancelled once ``seconds`` have passed on this clock."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> TimerHandle:
        """Call ``callback`` (synchronously, on the event loop) once ``seconds`` have passed.

        Cheaper than a cancel scope on hot paths such as ``ask``; call
        ``cancel()`` on the handle when the callback is no longer wanted.
        """
        ...


class SystemClock:
    """The real clock: the event loop's monotonic time and the system's wall time."""

    def monotonic(self) -> float:
        """Seconds on the monotonic clock (``time.monotonic()``), for durations and deadlines."""
        return time.monotonic()

    def time(self) -> float:
        """Seconds since the epoch (``time.time()``), for timestamps people read."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time (``anyio.sleep``)."""
        await anyio.sleep(seconds)

    def move_on_after(self, seconds: float) -> anyio.CancelScope:
        """A cancel scope that gives up ``seconds`` of real time from now (``anyio``'s)."""
        return anyio.move_on_after(seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> TimerHandle:
        """Call ``callback`` on the running event loop after ``seconds``; cancel the handle."""
        return asyncio.get_running_loop().call_later(seconds, callback)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when a test calls :meth:`advance`.

    ``sleep`` and ``move_on_after`` wake up exactly when ``advance`` passes
    their deadline, so time-dependent behaviour is tested without waiting.
    """

    def __init__(self, start: float = 1_000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._seq = itertools.count()
        self._timers: list[tuple[float, int, anyio.Event | anyio.CancelScope | _Callback]] = []

    def monotonic(self) -> float:
        """The clock's time: where it started plus every :meth:`advance` so far."""
        return self._now

    def time(self) -> float:
        """Wall time: ``wall_start`` plus every :meth:`advance` so far."""
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        """Wait until :meth:`advance` moves the clock ``seconds`` on (``<= 0``: a checkpoint)."""
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        heapq.heappush(self._timers, (self._now + seconds, next(self._seq), wake))
        await wake.wait()

    def move_on_after(self, seconds: float) -> AbstractContextManager[anyio.CancelScope]:
        """A cancel scope cancelled once :meth:`advance` passes ``seconds`` from now."""
        return self._deadline_scope(seconds)

    def _deadline_scope(self, seconds: float) -> _ScopeContext:
        return _ScopeContext(self, seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> TimerHandle:
        """Call ``callback`` once :meth:`advance` passes ``seconds`` from now; cancellable."""
        timer = _Callback(callback)
        heapq.heappush(self._timers, (self._now + max(0.0, seconds), next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper and scope whose deadline has passed."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance() got {seconds}; time only moves forward")
        self._now += seconds
        while self._timers and self._timers[0][0] <= self._now:
            _, _, waiter = heapq.heappop(self._timers)
            if isinstance(waiter, anyio.Event):
                waiter.set()
            elif isinstance(waiter, _Callback):
                waiter.fire()
            else:
                waiter.cancel()

    @property
    def pending_timers(self) -> int:
        """How many sleepers and deadlines are waiting for time to pass."""
        return sum(
            1
            for _, _, waiter in self._timers
            if not (isinstance(waiter, anyio.CancelScope) and waiter.cancel_called)
            and not (isinstance(waiter, _Callback) and waiter.cancelled)
        )

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now:g})"


class _Callback:
    """A :meth:`ManualClock.call_later` timer."""

    __slots__ = ("_callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._callback()


class _ScopeContext:
    """A cancel scope whose deadline is kept by a :class:`ManualClock`."""

    def __init__(self, clock: ManualClock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._scope = anyio.CancelScope()

    def __enter__(self) -> anyio.CancelScope:
        scope = self._scope.__enter__()
        if self._seconds <= 0:
            scope.cancel()
        else:
            heapq.heappush(
                self._clock._timers,
                (self._clock._now + self._seconds, next(self._clock._seq), scope),
            )
        return scope

    def __exit__(self, *exc_info: object) -> bool:
        # Drop our timer so a finished scope does not linger in the heap.
        timers = self._clock._timers
        for index, entry in enumerate(timers):
            if entry[2] is self._scope:
                timers[index] = timers[-1]
                timers.pop()
                heapq.heapify(timers)
                break
        return bool(self._scope.__exit__(*exc_info))  # type: ignore[arg-type]
