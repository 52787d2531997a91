"""What the queue's worker, outbox, schedule and facade share, built once per node."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ._statistics import Counters

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable

    from runtime import Clock, Fanout

    from ._guard import StoreGuard
    from ._handlers import Handlers
    from ._settings import QueueSettings
    from ._store import JobStore, QueueCounts

__all__ = ["Broadcast", "QueueParts", "Waker"]


class Broadcast:
    """Wakes every task waiting in :meth:`wait` at the next :meth:`notify`."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def notify(self) -> None:
        """Wake every current waiter."""
        self._event.set()
        self._event = anyio.Event()

    async def wait(self) -> None:
        """Wait for the next notification."""
        await self._event.wait()


class Waker:
    """Wakes whoever waits in :meth:`wait` at the next :meth:`notify` (or one before it).

    One ``asyncio.Event`` for its whole life, cleared when a wait returns (the
    worker waits on its wakers once per batch: no event is made per wait). The
    runtime runs on asyncio; anyio's cancel scopes cancel a task waiting here.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake the current waiter, or the next one if nobody waits."""
        self._event.set()

    async def wait(self) -> None:
        """Wait for a notification since the last wait returned."""
        await self._event.wait()
        self._event.clear()


@dataclass(slots=True, kw_only=True)
class QueueParts:
    """One node's queue: its settings, store, handlers and live state.

    Attributes:
        settings: the queue's knobs.
        queues: the configured queues and their concurrency.
        store: where jobs live (memory or Redis).
        handlers: job handlers by type.
        clock: the node's clock (every time the queue reads).
        fanout: the node's fanout (wake-ups between nodes).
        stopping: set when the node drains: workers stop claiming.
        wakers: per queue, woken by a local enqueue or a fanout wake-up.
        active: this node's running attempts by job id.
        counters: the queue's counters.
        lost_reason: why the store counts as lost (readiness), or ``None``.
        guard: the store guard (its ``statistics()`` are ``queue.store``), once built.
    """

    settings: QueueSettings
    queues: dict[str, int]
    store: JobStore
    handlers: Handlers
    clock: Clock
    fanout: Fanout
    stopping: anyio.Event = field(default_factory=anyio.Event)
    wakers: dict[str, Waker] = field(default_factory=dict)
    active: dict[str, Any] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    lost_reason: str | None = None
    guard: StoreGuard | None = None
    completions: dict[str, deque[float]] = field(default_factory=dict)
    depths: dict[str, QueueCounts] = field(default_factory=dict)
    finished: Broadcast = field(default_factory=lambda: Broadcast())
    backoff: Callable[[int], float] = field(default=lambda attempt: min(5.0, 0.1 * 2**attempt))

    def wake(self, queue: str) -> None:
        """Wake the worker of ``queue``."""
        waker = self.wakers.get(queue)
        if waker is not None:
            waker.notify()
