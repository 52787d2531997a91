"""Load generators for fault tests, bounded in count and in time: :func:`steady` and :func:`burst`.

:func:`steady` starts operation ``i`` at ``start + i / rate`` (a deadline
schedule, not "sleep an interval after each operation"), each in its own task,
so a slow operation does not silently lower the rate; at most ``max_in_flight``
run at once, and a start that had to wait past its deadline is counted as late.
:func:`burst` starts ``count`` operations at the same moment. Both return a
report, and both stop by themselves.

Pacing reads the :class:`~runtime._clock.Clock` they are given, so a test can
drive them with a :class:`~runtime.testing.ManualClock`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import anyio
import msgspec

from ._clock import SystemClock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._clock import Clock

__all__ = ["BurstReport", "LoadReport", "burst", "steady"]


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`steady` did.

    Attributes:
        target_rate_per_second: the rate asked for.
        achieved_rate_per_second: starts per second, from the first start to one
            interval after the last (equal to the target when no start was late).
        started: operations started.
        completed: operations that returned.
        failed: operations that raised one of the ``errors`` given.
        late_starts: starts later than ``late_after_seconds`` past their deadline.
        max_lateness_seconds: the latest start, past its deadline.
        duration_seconds: from the first start until the last operation finished.
        stopped_by: ``"duration"`` or ``"max_operations"``, whichever bound came first.
    """

    target_rate_per_second: float
    achieved_rate_per_second: float
    started: int
    completed: int
    failed: int
    late_starts: int
    max_lateness_seconds: float
    duration_seconds: float
    stopped_by: Literal["duration", "max_operations"]


class BurstReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`burst` did: ``count`` operations released together.

    Attributes:
        count: operations started.
        completed: operations that returned.
        failed: operations that raised one of the ``errors`` given.
        duration_seconds: from the release until the last operation finished.
    """

    count: int
    completed: int
    failed: int
    duration_seconds: float


async def steady(
    rate_per_second: float,
    *,
    duration_seconds: float,
    operation: Callable[[int], Awaitable[object]],
    max_operations: int | None = None,
    max_in_flight: int = 100,
    late_after_seconds: float | None = None,
    errors: tuple[type[Exception], ...] = (),
    clock: Clock | None = None,
) -> LoadReport:
    """Call ``await operation(i)`` for ``i = 0, 1, ...`` at ``rate_per_second``, then report.

    Args:
        rate_per_second: starts per second; operation ``i`` is due at ``start + i / rate``.
        duration_seconds: the window; no operation starts at or after its end.
        operation: the async callable, given the operation's index.
        max_operations: stop after this many starts (``None``: the window decides).
        max_in_flight: operations running at once; when all are busy the next start
            waits (and may be late).
        late_after_seconds: a start this far past its deadline is late; by default
            half the interval between starts.
        errors: exceptions an operation may raise that count as failed; any other
            exception propagates (in an ``ExceptionGroup``) and stops the load.
        clock: paces the schedule (:class:`~runtime.testing.ManualClock` in tests).

    It returns once every started operation has finished. Bound the operation
    itself (a client timeout) so that this happens.
    """
    if rate_per_second <= 0 or not math.isfinite(rate_per_second):
        raise ValueError(f"rate_per_second must be a positive number, got {rate_per_second}")
    if duration_seconds <= 0 or not math.isfinite(duration_seconds):
        raise ValueError(f"duration_seconds must be a positive number, got {duration_seconds}")
    if max_operations is not None and max_operations < 1:
        raise ValueError(f"max_operations must be at least 1, got {max_operations}")
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    clock = clock or SystemClock()
    interval = 1.0 / rate_per_second
    late_after = interval / 2 if late_after_seconds is None else late_after_seconds
    limit = anyio.Semaphore(max_in_flight)
    completed = failed = late = started = 0
    max_lateness = 0.0
    stopped_by: Literal["duration", "max_operations"] = "duration"

    async def run(index: int) -> None:
        nonlocal completed, failed
        try:
            await operation(index)
        except errors:
            failed += 1
        else:
            completed += 1
        finally:
            limit.release()

    start = last_start = clock.monotonic()
    end = start + duration_seconds
    async with anyio.create_task_group() as tg:
        while True:
            if max_operations is not None and started >= max_operations:
                stopped_by = "max_operations"
                break
            deadline = start + started * interval
            if deadline >= end:
                break
            wait = deadline - clock.monotonic()
            if wait > 0:
                await clock.sleep(wait)
            await limit.acquire()
            lateness = clock.monotonic() - deadline
            max_lateness = max(max_lateness, lateness)
            if lateness > late_after:
                late += 1
            last_start = clock.monotonic()
            tg.start_soon(run, started)
            started += 1
    finished = clock.monotonic()
    return LoadReport(
        target_rate_per_second=rate_per_second,
        achieved_rate_per_second=started / (last_start - start + interval) if started else 0.0,
        started=started,
        completed=completed,
        failed=failed,
        late_starts=late,
        max_lateness_seconds=max_lateness,
        duration_seconds=finished - start,
        stopped_by=stopped_by,
    )


async def burst(
    count: int,
    operation: Callable[[int], Awaitable[object]],
    *,
    errors: tuple[type[Exception], ...] = (),
    clock: Clock | None = None,
) -> BurstReport:
    """Start ``count`` calls of ``await operation(i)`` at the same moment; report when all end.

    Every task is started first and all are released together, so the calls
    really overlap. ``errors`` are counted as failed; anything else propagates.
    """
    if count < 1:
        raise ValueError(f"burst count must be at least 1, got {count}")
    clock = clock or SystemClock()
    release = anyio.Event()
    completed = failed = 0

    async def run(index: int) -> None:
        nonlocal completed, failed
        await release.wait()
        try:
            await operation(index)
        except errors:
            failed += 1
        else:
            completed += 1

    async with anyio.create_task_group() as tg:
        for index in range(count):
            tg.start_soon(run, index)
        start = clock.monotonic()
        release.set()
    return BurstReport(
        count=count,
        completed=completed,
        failed=failed,
        duration_seconds=clock.monotonic() - start,
    )
