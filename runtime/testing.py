"""Helpers for embedding actors in tests and programs.

* :func:`open_system` starts a real :class:`~runtime.Supervisor` with the given
  child specs in the caller's task and yields the refs; leaving the block stops
  the actors in reverse start order.
* :func:`open_app` assembles a whole node in process (actors, routes, auth),
  in memory or on a real Redis, and yields its Quart app, for ``app.test_client()``.
* :func:`open_nodes` runs several such nodes sharing one Redis.
* :func:`serve_app` serves a Quart app on real Hypercorn over loopback TCP
  for the duration of an ``async with`` (for WebSocket and HTTP clients).
* :class:`Probe` is an actor that records what it receives, with bounded waits.
* :class:`ManualClock` is a clock that moves only when told to.
* :class:`RedisServer` runs a private ``redis-server`` on a free loopback port.
* :class:`NodeProcess` runs a real ``python -m runtime`` node in a subprocess.

Testing under faults (see the README's "Testing under faults"):

* :class:`FaultProxy` sits between nodes and Redis (or any TCP server) and adds
  latency, cuts, blackholes, half-opens or refuses connections on demand;
  :class:`RedisServer` also kills, pauses, restarts (with or without AOF),
  kills clients by type, flushes and starves the server itself.
* :class:`History` records what clients wrote and saw; :func:`check_history`
  reports lost updates, stale reads, out-of-order and duplicate observations,
  phantoms and final divergence as a :class:`HistoryReport`.
* :func:`steady` and :func:`burst` generate load bounded in count and time.

The pytest fixtures ``redis_server`` and ``redis_url`` come from
:mod:`runtime.pytest_plugin`, which pytest loads automatically.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import anyio
import msgspec
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from ._actor import Actor
from ._boot import NodeSetup, _bind, assemble_node
from ._boot import node_services as _node_services
from ._clock import ManualClock, SystemClock
from ._configuration import Configuration
from ._fanout import RedisFanout
from ._fault_proxy import FaultProxy, FaultProxyStatistics
from ._history import (
    Anomaly,
    AnomalyKind,
    History,
    HistoryReport,
    Observation,
    Write,
    check_history,
)
from ._load import BurstReport, LoadReport, burst, steady
from ._node_context import NodeContext
from ._node_process import NodeProcess
from ._notifier import Notifier as _Notifier
from ._redis_server import RedisServer, free_port
from ._settings import Secret, Settings
from ._supervisor import ChildSpec, ServiceSpec, Supervisor, SupervisorSpec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from quart import Quart

    from ._clock import Clock
    from ._ref import Refs
    from ._sections import SettingsSection
    from ._supervisor import Strategy

__all__ = [
    "Anomaly",
    "AnomalyKind",
    "BurstReport",
    "FaultProxy",
    "FaultProxyStatistics",
    "History",
    "HistoryReport",
    "LoadReport",
    "ManualClock",
    "Node",
    "NodeProcess",
    "Observation",
    "Probe",
    "RedisServer",
    "Write",
    "burst",
    "check_history",
    "free_port",
    "open_app",
    "open_nodes",
    "open_system",
    "serve_app",
    "steady",
]

_T = TypeVar("_T")


@asynccontextmanager
async def open_system(
    children: Sequence[ChildSpec | ServiceSpec | SupervisorSpec],
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
    redis_url: str | None = None,
    sections: Mapping[SettingsSection[Any], msgspec.Struct] | None = None,
    ready_timeout_seconds: float = 10.0,
) -> AsyncIterator[tuple[Quart, NodeContext]]:
    """Assemble a node in process, without Hypercorn: yield its Quart app and context.

    ``compose`` adds actors and routes as a setup hook would (for example
    ``actors.cache.install``). The supervisor (with the Redis link and fanout
    reader as its first children) runs for the duration of the block; use
    ``app.test_client()`` for requests. Without ``redis_url`` (or
    ``settings.redis_url``) the node runs in memory; with it, the block starts
    once Redis is reachable and the fanout is subscribed, within
    ``ready_timeout_seconds``. ``sections`` gives settings sections their
    values (``{CACHE_SETTINGS: CacheSettings(l1_max_entries=100)}``); the
    others take their defaults.
    """
    settings = settings or Settings()
    if redis_url is not None:
        settings = msgspec.structs.replace(settings, redis_url=Secret(redis_url))
    configuration = Configuration.of(settings, sections)
    clock = clock or SystemClock()
    redis, fanout = _node_services(settings, clock)
    try:
        context, app = await assemble_node(
            configuration, clock=clock, redis=redis, fanout=fanout, builders=[compose]
        )
        async with anyio.create_task_group() as tg:
            await tg.start(context.supervisor.run)
            try:
                if redis is not None:
                    with anyio.fail_after(ready_timeout_seconds):
                        await redis.wait_until(True)
                        if isinstance(fanout, RedisFanout):
                            await fanout.wait_connected()
                async with app.test_app():
                    yield app, context
            finally:
                tg.cancel_scope.cancel()
    finally:
        if redis is not None:
            with anyio.CancelScope(shield=True):
                await redis.aclose()


class Node(NamedTuple):
    """One in-process node of :func:`open_nodes`: its Quart app and its context."""

    app: Quart
    context: NodeContext


@asynccontextmanager
async def open_nodes(
    count: int,
    *,
    redis_url: str,
    settings: Settings | None = None,
    compose: Callable[[NodeSetup], object] | None = None,
    clock: Clock | None = None,
    sections: Mapping[SettingsSection[Any], msgspec.Struct] | None = None,
) -> AsyncIterator[list[Node]]:
    """Run ``count`` in-process nodes sharing one Redis, as separate processes would.

    Each node has its own Redis link, fanout, supervisor and app; they share
    only the Redis server at ``redis_url``. For crash tests (SIGKILL, exit
    codes) use :class:`NodeProcess`, which runs a real ``python -m runtime``.

    Example::

        async with open_nodes(2, redis_url=redis_url, compose=compose) as (a, b):
            await a.app.test_client().put("/api/cache/k", ...)
    """
    if count < 1:
        raise ValueError(f"open_nodes needs at least one node, got {count}")
    async with AsyncExitStack() as stack:
        nodes = [
            Node(
                *await stack.enter_async_context(
                    open_app(
                        settings,
                        compose=compose,
                        clock=clock,
                        redis_url=redis_url,
                        sections=sections,
                    )
                )
            )
            for _ in range(count)
        ]
        yield nodes


@asynccontextmanager
async def serve_app(
    app: Quart, *, host: str = "127.0.0.1", graceful_timeout_seconds: float = 2.0
) -> AsyncIterator[str]:
    """Serve ``app`` on Hypercorn over TCP on a free ``host`` port; yield ``http://host:port``.

    The listening socket is bound before the block starts (no race for the
    port), so clients can connect at once. Leaving the block stops Hypercorn,
    giving open connections ``graceful_timeout_seconds``.

    Example::

        async with open_app(settings, compose=compose) as (app, context):
            async with serve_app(app) as url:
                async with websockets.connect(url.replace("http", "ws") + "/ws"):
                    ...
    """
    listener = _bind(host, 0)
    port = listener.getsockname()[1]
    config = HypercornConfig()
    config.bind = [f"fd://{listener.detach()}"]
    config.graceful_timeout = graceful_timeout_seconds
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    extensions = getattr(app, "extensions", {})  # a bare ASGI callable has none
    context = extensions.get("switchyard")
    if isinstance(context, NodeContext):  # the node's own limit, as run_node sets it
        config.websocket_max_message_size = context.settings.websocket_max_message_bytes
    stop, done = anyio.Event(), anyio.Event()

    async def run() -> None:
        try:
            await serve(app, config, shutdown_trigger=stop.wait)
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        # In a task of its own: serve() leaves a stale asyncio cancel request behind.
        tg.start_soon(run)
        try:
            yield f"http://{host}:{port}"
        finally:
            stop.set()
            # Let Hypercorn shut down by itself even when the block failed: cancelling it
            # mid-shutdown makes it raise InvalidStateError.
            with anyio.move_on_after(graceful_timeout_seconds + 5, shield=True):
                await done.wait()


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
        self._arrived = _Notifier()

    async def handle(self, message: Any) -> Any:
        """Record ``message`` (waking :meth:`expect`) and answer with the configured reply."""
        self.received.append(message)
        self._arrived.notify()
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
                await self._arrived.wait()
