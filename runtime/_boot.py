"""Booting a node: assemble it, start the supervisor, serve HTTP, drain on a signal.

The order of a node's life:

1. Build the Redis link (if configured), the fanout and the token verifier.
2. Let the composition root add the default actors, then the user's
   ``--app module:function`` hook add theirs (the one extension point).
3. Start the Redis link and fanout, then the supervisor (children in order;
   a failing first start fails the boot).
4. Serve the Quart app on Hypercorn until SIGINT or SIGTERM.
5. On the signal: stop accepting, give in-flight requests
   ``shutdown_grace_seconds``, then cut what is left (503 ``unavailable``
   when its response has not started; see ``RequestDrain``); a second signal
   cuts them at once. Then stop the actors in reverse order, then the fanout
   and the Redis link; return normally so the process exits 0.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import secrets
import signal
import socket
import sys
from typing import TYPE_CHECKING, TypeVar

import anyio
import msgspec
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from ._auth import TokenVerifier
from ._clock import SystemClock
from ._configuration import Configuration
from ._drain import RequestDrain
from ._errors import ConfigError
from ._extensions import Extensions
from ._fanout import MemoryFanout, RedisFanout
from ._http import create_app
from ._http_stats import http_counters
from ._node_context import NodeContext
from ._node_keys import FANOUT, REDIS, STATISTICS
from ._redis import RedisLink
from ._settings import Secret
from ._statistics import StatisticsRegistry, statistics_blueprint
from ._supervisor import ServiceSpec, Supervisor
from ._ws_connection import websocket_statistics

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from anyio.abc import TaskStatus
    from quart import Blueprint, Quart

    from ._clock import Clock
    from ._extensions import Extension
    from ._fanout import Fanout
    from ._node_context import ReadinessCheck
    from ._sections import S, SettingsSection
    from ._settings import Settings
    from ._statistics import StatisticsSource
    from ._supervisor import ChildSpec, SupervisorSpec

__all__ = ["NodeSetup", "assemble_node", "load_hook", "run_node", "token_verifier"]

logger = logging.getLogger("runtime.node")

T = TypeVar("T")

# How long after the shutdown grace Hypercorn itself cancels connections that are left
# (a handler that ignores cancellation); the node's own cut comes first.
_HYPERCORN_BACKSTOP_SECONDS = 5.0


class NodeSetup:
    """What the composition root and the user's ``--app`` hook assemble a node with.

    A hook is ``def setup(node: NodeSetup) -> None`` (or ``async def``): it
    adds actors with :meth:`add_actor`, routes with :meth:`add_blueprint`,
    statistics with :meth:`add_statistics`, and reads ``settings``, ``clock``,
    ``redis`` and ``fanout`` to build them; :meth:`section` returns a settings
    section's validated value. Packages find each other by typed key: one
    :meth:`provide` s its facade, the others :meth:`require` it.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock,
        redis: RedisLink | None,
        fanout: Fanout,
        configuration: Configuration | None = None,
    ) -> None:
        self.settings = settings
        self.configuration = configuration or Configuration.of(settings)
        self.clock = clock
        self.redis = redis
        self.fanout = fanout
        self.children: list[ChildSpec | ServiceSpec | SupervisorSpec] = []
        self.blueprints: list[Blueprint] = []
        self.extensions = Extensions()
        self.statistics = StatisticsRegistry()
        self.readiness_checks: dict[str, ReadinessCheck] = {}
        self.stopping = anyio.Event()
        """Set when the node starts to drain (SIGTERM): packages that hold connections watch it."""

    def section(self, section: SettingsSection[S]) -> S:
        """The validated value of a settings section (see :class:`~runtime.SettingsSection`).

        Raises:
            ConfigError: a variable or flag of the section has a bad value.
        """
        return self.configuration.section(section)

    def add_actor(self, spec: ChildSpec | ServiceSpec | SupervisorSpec) -> None:
        """Run this actor (or service, or nested supervisor) under the node's supervisor."""
        self.children.append(spec)

    def add_blueprint(self, blueprint: Blueprint) -> None:
        """Serve this Quart blueprint's routes from the node's app."""
        self.blueprints.append(blueprint)

    def add_statistics(self, name: str, source: StatisticsSource) -> None:
        """Report ``source()`` (a frozen Struct, or a list of them) under ``name``.

        It appears in ``GET /api/statistics`` and is what the metrics actor exports.
        """
        self.statistics.add(name, source)

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """Make ``/readyz`` fail with ``check()``'s reason whenever it returns one.

        ``check`` is called on every readiness probe: keep it a cheap, synchronous
        look at state the package already has (a flag, a timestamp).

        Raises:
            ValueError: a check of that name was added already.
        """
        if name in self.readiness_checks:
            raise ValueError(f"a readiness check named {name!r} was added already")
        self.readiness_checks[name] = check

    def provide(self, key: Extension[T], facade: T) -> None:
        """Make ``facade`` available to every package installed after this one, by ``key``."""
        self.extensions.provide(key, facade)

    def require(self, key: Extension[T]) -> T:
        """The facade another package provided under ``key``.

        Raises:
            ConfigError: no package installed so far provides it; the error
                names the module that needed it.
        """
        return self.extensions.require(key)

    def find(self, key: Extension[T]) -> T | None:
        """The facade provided under ``key``, or ``None`` when nothing provides it."""
        return self.extensions.find(key)


def load_hook(spec: str) -> Callable[[NodeSetup], object]:
    """Import ``module:function`` and return the function.

    Raises:
        ConfigError: the module cannot be imported or has no such callable.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError("--app", spec, "expected 'module:function', e.g. 'myapp.node:setup'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        problem = f"module {module_name!r} cannot be imported: {exc}"
        raise ConfigError("--app", spec, problem) from exc
    hook = getattr(module, attribute, None)
    if not callable(hook):
        raise ConfigError("--app", spec, f"module {module_name!r} has no callable {attribute!r}")
    return hook  # type: ignore[no-any-return]


def node_services(settings: Settings, clock: Clock) -> tuple[RedisLink | None, Fanout]:
    """The Redis link (``None`` without ``redis_url``) and the fanout the settings describe."""
    redis = _redis_link(settings, clock)
    fanout: Fanout = (
        RedisFanout(redis, prefix=f"{settings.redis_prefix}:fanout")
        if redis is not None
        else MemoryFanout()
    )
    return redis, fanout


async def assemble_node(
    configuration: Configuration | Settings,
    *,
    clock: Clock,
    redis: RedisLink | None,
    fanout: Fanout,
    builders: Sequence[Callable[[NodeSetup], object] | None],
) -> tuple[NodeContext, Quart]:
    """Build a node's parts without starting them: its context (with the supervisor) and app.

    Each of ``builders`` (the composition root, then the user's hook) adds
    actors and routes to the :class:`NodeSetup`; ``None`` entries are skipped.
    A bare :class:`Settings` stands for ``Configuration.of(settings)``. The
    supervisor's first children are the Redis link (when configured) and the
    fanout reader, supervised like actors, started before them and stopped
    after them.

    Raises:
        ConfigError: a section has a bad value, a package requires a facade
            nobody provides, or (once every builder ran) a ``SWITCHYARD_*``
            variable or a flag is read by no setting.
    """
    if not isinstance(configuration, Configuration):
        configuration = Configuration.of(configuration)
    settings = configuration.node
    setup = NodeSetup(
        settings=settings, clock=clock, redis=redis, fanout=fanout, configuration=configuration
    )
    setup.extensions.provide(FANOUT, fanout, provider="runtime")
    setup.extensions.provide(STATISTICS, setup.statistics, provider="runtime")
    if redis is not None:
        setup.extensions.provide(REDIS, redis, provider="runtime")
    for build in builders:
        if build is not None:
            outcome = build(setup)
            if inspect.isawaitable(outcome):
                await outcome
    configuration.check_unknown()
    services: list[ServiceSpec] = []
    if redis is not None:
        services.append(ServiceSpec("runtime.redis", redis.run))
    services.append(ServiceSpec("runtime.fanout", fanout.run))
    supervisor = Supervisor(
        [*services, *setup.children],
        clock=clock,
        ask_timeout_seconds=settings.ask_timeout_seconds,
        mailbox_size=settings.mailbox_size,
        extensions=setup.extensions,
    )
    context = NodeContext(
        settings=settings,
        clock=clock,
        supervisor=supervisor,
        redis=redis,
        fanout=fanout,
        verifier=token_verifier(settings, clock),
        extensions=setup.extensions,
        statistics=setup.statistics,
        stopping=setup.stopping,
        readiness_checks=setup.readiness_checks,
    )
    app = create_app(context, [statistics_blueprint(), *setup.blueprints])
    _register_runtime_statistics(context, app)
    return context, app


def _register_runtime_statistics(context: NodeContext, app: Quart) -> None:
    registry = context.statistics
    supervisor = context.supervisor
    registry.add("runtime.actors", supervisor.actor_statistics)
    registry.add("runtime.services", supervisor.service_statistics)
    registry.add("runtime.supervisors", supervisor.supervisor_statistics)
    if context.redis is not None:
        registry.add("runtime.redis", context.redis.status)
    registry.add("runtime.fanout", context.fanout.statistics)
    registry.add("runtime.http", http_counters(app).statistics)
    registry.add("runtime.websocket", functools.partial(websocket_statistics, app))


async def run_node(
    settings: Settings | Configuration,
    *,
    compose: Callable[[NodeSetup], object] | None = None,
    clock: Clock | None = None,
    task_status: TaskStatus[NodeContext] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run one node until SIGINT/SIGTERM (or cancellation), then drain and stop.

    Args:
        settings: the validated configuration (or the node's settings alone).
        compose: the composition root that adds the default actors.
        clock: the clock for every timeout (default: the system clock).
        task_status: receives the :class:`NodeContext` once the node listens.
    """
    configuration = settings if isinstance(settings, Configuration) else Configuration.of(settings)
    clock = clock or SystemClock()
    dev_secret = _without_keys(configuration.node)
    if dev_secret is not None:
        configuration.replace_node(dev_secret)
    settings = configuration.node
    redis, fanout = node_services(settings, clock)
    builders = [compose, load_hook(settings.app) if settings.app else None]
    context, app = await assemble_node(
        configuration, clock=clock, redis=redis, fanout=fanout, builders=builders
    )
    supervisor = context.supervisor
    listener = _bind(settings.host, settings.port)
    host, port = listener.getsockname()[:2]
    config = HypercornConfig()
    config.bind = [f"fd://{listener.detach()}"]
    # The node cuts what outlives the grace itself (see RequestDrain); Hypercorn's own
    # cut, which cancels tasks and logs tracebacks, is only a backstop behind it.
    config.graceful_timeout = settings.shutdown_grace_seconds + _HYPERCORN_BACKSTOP_SECONDS
    config.accesslog = None
    config.websocket_max_message_size = settings.websocket_max_message_bytes
    config.errorlog = logging.getLogger("hypercorn.error")
    boot_error: Exception | None = None
    try:
        async with anyio.create_task_group() as actors:
            try:
                await actors.start(supervisor.run)
            except Exception as exc:  # noqa: BLE001 - a failed boot, raised unwrapped below
                boot_error = exc
                return
            logger.info(
                "node listening on http://%s:%s with actors %s; redis %s",
                host,
                port,
                ", ".join(supervisor.actor_states()) or "(none)",
                settings.redacted_redis_url or "not configured (in memory)",
            )
            if dev_secret is not None and context.verifier is not None:
                _print_dev_token(context.verifier, host, port)
            drain = RequestDrain(app)
            actors.start_soon(_watch_signals, context, drain)
            task_status.started(context)
            # Hypercorn's serve() leaves its task with a pending asyncio cancel request
            # (cancelling() == 1) when it returns; in a task of its own, that stale
            # request cannot leak into our cancel scopes.
            async with anyio.create_task_group() as http:
                http.start_soon(_serve_http, drain, config, context, http.cancel_scope)
                http.start_soon(_cut_after_grace, context, drain)
            logger.info("HTTP drained; stopping actors in reverse start order")
            actors.cancel_scope.cancel()
    finally:
        if redis is not None:
            with anyio.CancelScope(shield=True):
                await redis.aclose()
        if boot_error is not None:
            raise boot_error
    logger.info("node stopped")


async def _serve_http(
    app: RequestDrain, config: HypercornConfig, context: NodeContext, done: anyio.CancelScope
) -> None:
    await serve(app, config, shutdown_trigger=context.stopping.wait)  # type: ignore[arg-type]
    done.cancel()  # ends _cut_after_grace: nothing is left to cut


async def _cut_after_grace(context: NodeContext, drain: RequestDrain) -> None:
    """Once the node is stopping, give requests the grace, then cut what is left."""
    await context.stopping.wait()
    grace = context.settings.shutdown_grace_seconds
    await context.clock.sleep(grace)
    if drain.in_flight:
        logger.warning(
            "shutdown grace of %gs expired: cutting %d in-flight request(s)",
            grace,
            drain.in_flight,
        )
        drain.cut()


async def _watch_signals(context: NodeContext, drain: RequestDrain) -> None:
    """The first SIGINT/SIGTERM starts the drain; a second one cuts what is in flight now."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not context.stopping.is_set():
                logger.info(
                    "%s received: draining in-flight requests (up to %gs)",
                    name,
                    context.settings.shutdown_grace_seconds,
                )
                context.stopping.set()
            else:
                logger.warning(
                    "second %s received: stopping now; cutting %d in-flight request(s)",
                    name,
                    drain.in_flight,
                )
                drain.cut()


def _redis_link(settings: Settings, clock: Clock) -> RedisLink | None:
    if settings.redis_url is None:
        return None
    return RedisLink(
        settings.redis_url.reveal(),
        clock=clock,
        health_interval_seconds=settings.redis_health_interval_seconds,
        reconnect_max_seconds=settings.redis_reconnect_max_seconds,
        max_connections=settings.redis_max_connections,
        command_timeout_seconds=settings.redis_command_timeout_seconds,
    )


def token_verifier(settings: Settings, clock: Clock) -> TokenVerifier | None:
    """The verifier the settings describe, or ``None`` (with a warning) without a key."""
    if settings.jwt_secret is None and settings.jwt_public_key is None:
        logger.warning(
            "neither SWITCHYARD_JWT_SECRET nor SWITCHYARD_JWT_PUBLIC_KEY is set: "
            "routes that need a token answer 401 on this node"
        )
        return None
    return TokenVerifier(  # Settings checked the keys against the algorithms already
        settings.jwt_secret,
        public_key=settings.jwt_public_key,
        algorithms=settings.jwt_algorithms,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway_seconds=settings.jwt_leeway_seconds,
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
        clock=clock,
    )


def _without_keys(settings: Settings) -> Settings | None:
    """Settings with a generated HS256 secret when none is configured (development only)."""
    if settings.jwt_secret is not None or settings.jwt_public_key is not None:
        return None
    if any(not alg.startswith("HS") for alg in settings.jwt_algorithms):
        return None  # public-key algorithms pinned: a key must come from the operator
    logger.warning(
        "DEVELOPMENT ONLY: neither SWITCHYARD_JWT_SECRET nor SWITCHYARD_JWT_PUBLIC_KEY is set, "
        "so this process made up a JWT secret that dies with it; set SWITCHYARD_JWT_SECRET "
        "(at least 32 bytes) for anything but a try-out"
    )
    return msgspec.structs.replace(settings, jwt_secret=Secret(secrets.token_urlsafe(48)))


def _print_dev_token(verifier: TokenVerifier, host: str, port: int) -> None:
    """Print a ready admin token for the generated secret, and the WebSocket URL to try."""
    ttl = min(12 * 3600.0, verifier.max_lifetime_seconds)
    token = verifier.issue("dev", roles=["admin"], name="Developer", ttl_seconds=ttl)
    shown = f"[{host}]" if ":" in host else host
    sys.stdout.write(
        f"\ndev token (sub 'dev', role admin, valid {ttl / 3600:g} h, this process only):\n"
        f"  {token}\n"
        f"try it:\n"
        f"  curl -H 'Authorization: Bearer {token}' http://{shown}:{port}/api/statistics\n"
        f"  WebSocket: ws://{shown}:{port}/ws?token={token}\n"
    )
    sys.stdout.flush()


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so port 0 works and the real port is logged."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1024)
    except OSError as exc:
        listener.close()
        raise ConfigError(
            "SWITCHYARD_HOST/SWITCHYARD_PORT", f"{host}:{port}", f"cannot listen there: {exc}"
        ) from exc
    return listener
