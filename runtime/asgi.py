"""An ASGI entry point for users who run their own Hypercorn (or other ASGI server).

::

    hypercorn 'runtime.asgi:create_app()' --bind 0.0.0.0:8000 --workers 1

serves a full node: the settings come from ``SWITCHYARD_*`` variables (the
server owns the command line), the actors and the Redis link start in the
ASGI lifespan's startup and stop, in reverse order, in its shutdown. Every
worker process is a node of its own. ``python -m runtime`` stays the main
command: it binds the socket itself, drains on SIGTERM and maps failures to
exit codes; here the server does those things its own way.

A request that arrives before startup has finished (or after shutdown has
begun) is answered 503 with the JSON error shape.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from ._boot import assemble_node, load_hook, node_services
from ._clock import SystemClock
from ._configuration import Configuration, load_configuration
from ._logging import configure_logging
from ._protocol import ErrorReply
from .node import SECTIONS, compose

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, MutableMapping

    from quart import Quart

    from ._clock import Clock
    from ._node_context import NodeContext
    from ._settings import Settings

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

__all__ = ["NodeApp", "create_app"]

logger = logging.getLogger("runtime.node")

_UNAVAILABLE = ErrorReply.of("unavailable", "the node is starting or stopping; retry")


def create_app(environ: Mapping[str, str] | None = None) -> NodeApp:
    """Build the ASGI app of one node from ``SWITCHYARD_*`` variables (``environ``: os.environ).

    Raises:
        ConfigError: a setting is invalid; the error names the variable.
    """
    configuration = load_configuration([], environ, sections=SECTIONS)
    settings = configuration.node
    configure_logging(settings.log_level, settings.log_format)
    return NodeApp(configuration)


class NodeApp:
    """An ASGI app that runs a whole node inside the server's lifespan.

    Args:
        settings: the node's configuration (or its settings alone).
        builders: what assembles the node (default: the composition root,
            then the ``SWITCHYARD_APP`` hook when set).
        clock: the clock for every timeout (default: the system clock).
    """

    def __init__(
        self,
        settings: Configuration | Settings,
        *,
        builders: list[Callable[[Any], object] | None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.configuration = (
            settings if isinstance(settings, Configuration) else Configuration.of(settings)
        )
        self.settings = settings = self.configuration.node
        self._clock = clock or SystemClock()
        self._builders = (
            builders
            if builders is not None
            else [compose, load_hook(settings.app) if settings.app else None]
        )
        self._app: Quart | None = None
        self.context: NodeContext | None = None
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection; the lifespan scope starts and stops the node."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        app = self._app
        if app is None or self._stop.is_set():
            await _refuse(scope, send)
            return
        await app(scope, receive, send)  # type: ignore[arg-type]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except Exception as exc:
                    logger.critical("node failed to boot: %s", exc, exc_info=exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        settings, clock = self.settings, self._clock
        redis, fanout = node_services(settings, clock)
        context, app = await assemble_node(
            self.configuration, clock=clock, redis=redis, fanout=fanout, builders=self._builders
        )
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(context, started))
        await started  # raises the boot error, if any
        await app.startup()
        self._app, self.context = app, context
        logger.info(
            "node started under an ASGI server with actors %s; redis %s",
            ", ".join(context.supervisor.actor_states()) or "(none)",
            settings.redacted_redis_url or "not configured (in memory)",
        )

    async def _run(self, context: NodeContext, started: asyncio.Future[None]) -> None:
        """The node's own task: the supervisor (with the Redis link) until shutdown.

        A failed boot is handed to ``started``. An escalation later (restart
        intensity exceeded) is logged as critical, and the node then answers
        503 to everything: an ASGI app cannot stop its server.
        """
        try:
            async with anyio.create_task_group() as tg:
                try:
                    await tg.start(context.supervisor.run)
                except Exception as exc:  # noqa: BLE001 - handed to the lifespan below
                    started.set_exception(exc)
                    return
                started.set_result(None)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        except Exception as exc:
            self._stop.set()
            context.stopping.set()
            logger.critical("node stopped by an unexpected error: %s", exc, exc_info=exc)
        finally:
            if context.redis is not None:
                with anyio.CancelScope(shield=True):
                    await context.redis.aclose()

    async def _shutdown(self) -> None:
        self._stop.set()
        if self.context is not None:
            self.context.stopping.set()
        if self._app is not None:
            await self._app.shutdown()
        if self._runner is not None:
            await self._runner
        logger.info("node stopped")


async def _refuse(scope: Scope, send: Send) -> None:
    body = msgspec.json.encode(_UNAVAILABLE)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013, "reason": "node not running"})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")],
        }
    )
    await send({"type": "http.response.body", "body": body})
