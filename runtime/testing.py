"""Helpers for embedding actors in tests and programs.

* :func:`open_system` starts a real :class:`~runtime.Supervisor` with the given
  child specs in the caller's task and yields the refs; leaving the block stops
  the actors in reverse start order.
* :func:`open_app` assembles a whole node in process (actors, routes, auth)
  and yields its Quart app, for ``app.test_client()``.
* :class:`Probe` is an actor that records what it receives, with bounded waits.
* :class:`ManualClock` is a clock that moves only when told to.
* :class:`RedisServer` runs a private ``redis-server`` on a free loopback port.
* :class:`NodeProcess` runs a real ``python -m runtime`` node in a subprocess.

The pytest fixtures ``redis_server`` and ``redis_url`` come from
:mod:`runtime.pytest_plugin`, which pytest loads automatically.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._actor import Actor
from ._boot import NodeSetup, assemble_node
from ._clock import ManualClock, SystemClock
from ._configuration import Configuration
from ._fanout import MemoryFanout
from ._node_process import NodeProcess
from ._redis_server import RedisServer, free_port
from ._settings import Settings
from ._supervisor import ChildSpec, Supervisor, SupervisorSpec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    import msgspec
    from quart import Quart

    from ._clock import Clock
    from ._node_context import NodeContext
    from ._ref import Refs
    from ._sections import SettingsSection
    from ._supervisor import Strategy

__all__ = [
    "ManualClock",
    "NodeProcess",
    "Probe",
    "RedisServer",
    "free_port",
    "open_app",
    "open_system",
]

_T = TypeVar("_T")


@asynccontextmanager
async def open_system(
    children: Sequence[ChildSpec | SupervisorSpec],
    *,
    strategy: Strategy = "one_for_one",
    max_restarts: int = 3,
    within_seconds: float = 5.0,
    clock: Clock | None = None,
    ask_timeout_seconds: float = 5.0,
) -> AsyncIterator[Refs]:
    """Start a supervisor with ``children`` and yield the refs of every actor in it.

    A failed first start, a ``RestartIntensityExceeded`` escalating out of the
    root, and an error in the block itself are raised as they are, not wrapped
    in an ``ExceptionGroup``.

    Example::

        async with open_system([ChildSpec("cache", CacheActor)]) as refs:
            await refs["cache"].ask(CacheGet(key="user:1"))
    """
    supervisor = Supervisor(
        children,
        strategy=strategy,
        max_restarts=max_restarts,
        within_seconds=within_seconds,
        clock=clock,
        ask_timeout_seconds=ask_timeout_seconds,
    )
    # Errors surface as themselves, not wrapped in the task group's ExceptionGroup:
    # a failed boot, an escalation out of the root, or the body's own failure.
    error: Exception | None = None
    try:
        async with anyio.create_task_group() as tg:
            try:
                await tg.start(supervisor.run)
            except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped
                error = exc
            else:
                try:
                    yield supervisor.refs
                except Exception as exc:  # noqa: BLE001 - re-raised below, unwrapped
                    error = exc
                finally:
                    tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            inner = group.exceptions[0]
            raise inner from inner.__cause__
        raise
    if error is not None:
        raise error


@asynccontextmanager
async def open_app(
    settings: Settings | None = None,
    *,
    compose: Callable[[NodeSetup], object] | None = None,
    clock: Clock | None = None,
    sections: Mapping[SettingsSection[Any], msgspec.Struct] | None = None,
) -> AsyncIterator[tuple[Quart, NodeContext]]:
    """Assemble a node in process, without Hypercorn: yield its Quart app and context.

    ``compose`` adds actors and routes as a setup hook would (for example
    ``actors.cache.install``). The supervisor runs for the duration of the
    block; use ``app.test_client()`` for requests. Redis is not configured:
    the node runs in memory. ``sections`` gives settings sections their values
    (``{CACHE_SETTINGS: CacheSettings(l1_max_entries=100)}``); the others take
    their defaults.
    """
    configuration = Configuration.of(settings or Settings(), sections)
    context, app = await assemble_node(
        configuration,
        clock=clock or SystemClock(),
        redis=None,
        fanout=MemoryFanout(),
        builders=[compose],
    )
    async with anyio.create_task_group() as tg:
        await tg.start(context.supervisor.run)
        try:
            async with app.test_app():
                yield app, context
        finally:
            tg.cancel_scope.cancel()


class Probe(Actor[Any]):
    """An actor that records every message it receives.

    Args:
        reply: what an ask to the probe returns; a callable is called with the
            message to compute the reply.

    The same probe instance serves every incarnation, so what it saw survives
    a restart: ``ChildSpec("probe", lambda: probe)``.
    """

    def __init__(self, reply: object = None) -> None:
        self._reply = reply
        self.received: list[Any] = []
        self._cursor = 0
        self._arrived: anyio.Event | None = None

    async def handle(self, message: Any) -> Any:
        self.received.append(message)
        if self._arrived is not None:
            self._arrived.set()
        return self._reply(message) if callable(self._reply) else self._reply

    async def expect(self, kind: type[_T], *, timeout_seconds: float = 1.0) -> _T:
        """Wait for the next unread message of type ``kind``, skipping others."""
        message: _T = await self.expect_where(
            lambda m: isinstance(m, kind), timeout_seconds=timeout_seconds
        )
        return message

    async def expect_where(
        self, predicate: Callable[[Any], bool], *, timeout_seconds: float = 1.0
    ) -> Any:
        """Wait for the next unread message for which ``predicate`` is true.

        Raises:
            TimeoutError: nothing matching arrived within ``timeout_seconds``.
        """
        with anyio.fail_after(timeout_seconds):
            while True:
                while self._cursor < len(self.received):
                    message = self.received[self._cursor]
                    self._cursor += 1
                    if predicate(message):
                        return message
                self._arrived = anyio.Event()
                await self._arrived.wait()
