"""The optional Redis connection: one client, its lifecycle, its health and key names.

:class:`RedisLink` owns one ``redis.asyncio.Redis`` client. Its :meth:`RedisLink.run`
loop is a supervised child: it reports "started" at once (Redis down at boot
never blocks or crashes the node), pings Redis every health interval while it
is up, and reconnects with capped, fully jittered exponential backoff while it
is down, reading every wait from the injected :class:`~runtime._clock.Clock`.

Its client (:mod:`runtime._redis_client`) queues commands for a bounded pool
and gives each one deadline, the wait for a connection included. The health
ping uses a connection of its own, outside that pool, with a deadline of its
own, so a burst of commands never delays it and a stall is seen within one
health interval. When Redis comes back, the pooled connections made before
the outage are discarded, so no command meets a stale one.

Users of :attr:`RedisLink.client` wrap calls in :meth:`RedisLink.map_errors`,
which turns connection errors into :class:`~runtime._errors.RedisUnavailable`
and asks the loop to re-check at once. A :class:`RedisPoolTimeout` (every
connection busy for a whole deadline) is backpressure: it is counted and also
raised as ``RedisUnavailable``, but it never marks Redis down.

Every Redis key is built with :func:`redis_key`, so key names live in one place.
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import TYPE_CHECKING, Literal

import anyio
import msgspec
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._errors import RedisUnavailable
from ._notifier import Notifier
from ._redis_client import (
    CommandDeadlineExceeded,
    DeadlineCounters,
    DeadlineRedis,
    RedisLinkClosed,
    RedisPoolTimeout,
)
from ._settings import redact_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from types import TracebackType

    from anyio.abc import TaskStatus
    from redis.asyncio.connection import AbstractConnection

    from ._clock import Clock

__all__ = [
    "CONNECTION_ERRORS",
    "CommandDeadlineExceeded",
    "RedisLink",
    "RedisLinkClosed",
    "RedisPoolTimeout",
    "RedisStatus",
    "backoff_seconds",
    "redact_url",
    "redis_key",
]

logger = logging.getLogger("runtime.redis")

#: The errors that mean "Redis cannot be reached"; anything else is a bug and propagates.
#: (``redis.exceptions.TimeoutError`` is not a builtin ``TimeoutError``; builtin ones are
#: ``OSError``s.)
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)

#: Connection errors that are no news to the link: "too busy" (they never mark Redis down),
#: or "not sent" because the link already believes Redis unreachable.
_NOT_REPORTED_ERRORS: tuple[type[Exception], ...] = (
    RedisPoolTimeout,
    redis.exceptions.MaxConnectionsError,
    RedisLinkClosed,
)


def redis_key(*parts: str) -> str:
    """Join key parts with ``:`` (``redis_key("cache", "user:1") == "cache:user:1"``)."""
    if not parts:
        raise ValueError("redis_key() needs at least one part")
    return ":".join(parts)


def backoff_seconds(
    attempt: int, *, base_seconds: float, max_seconds: float, jitter: Callable[[], float]
) -> float:
    """The wait before reconnect ``attempt`` (0, 1, 2, ...): exponential, capped, full jitter.

    ``jitter()`` returns a float in ``[0, 1)``; the wait is
    ``jitter() * min(max_seconds, base_seconds * 2 ** attempt)`` ("full jitter",
    so many nodes losing Redis at once do not reconnect in lockstep).
    """
    if attempt < 0:
        raise ValueError(f"backoff attempt must be >= 0, got {attempt}")
    ceiling = min(max_seconds, base_seconds * 2.0 ** min(attempt, 64))
    return jitter() * ceiling


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RedisStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a node knows about its Redis connection, for health and metrics.

    Attributes:
        configured: whether this node uses Redis at all.
        up: whether the last health check (or connection) succeeded.
        since_seconds: how long ``up`` has held, in seconds: the time since the last
            up/down change (or since the link was made).
        reconnects: down-to-up changes after the first successful connection.
        failures: failed health checks and connection attempts so far.
        last_error: ``"Type: message"`` of the last failure, kept after recovery.
        url: the Redis URL with the password replaced by ``***``.
        pool_timeouts: commands that found every pooled connection busy for their
            whole deadline (backpressure; Redis was not marked down for them).
        command_timeouts: commands Redis did not answer within their deadline.
        closed_fast: commands not sent, failed at once, because the link believed
            Redis unreachable (down, or re-checking after a missed deadline).
    """

    configured: bool
    up: bool = False
    since_seconds: float = 0.0
    reconnects: int = 0
    failures: int = 0
    last_error: str | None = None
    url: str = ""
    pool_timeouts: int = 0
    command_timeouts: int = 0
    closed_fast: int = 0


class RedisLink:
    """One Redis client for the node, and the loop that watches its health.

    Args:
        url: ``redis://[[user]:password@]host:port/db``; the password never reaches logs.
        clock: the time source for health intervals and backoff waits.
        health_interval_seconds: how often :meth:`run` pings Redis while it is up.
        reconnect_base_seconds: the backoff ceiling of the first reconnect attempt.
        reconnect_max_seconds: the backoff ceiling never grows past this; it bounds how
            long after Redis returns the link notices (keep it low, 0.5 s by default).
        connect_timeout_seconds: socket connect timeout of the client.
        socket_timeout_seconds: socket read/write timeout of the client's commands
            (a backstop: ``command_timeout_seconds`` ends a command first).
        max_connections: the size of the client's pool; more simultaneous commands
            wait in line for a connection, within their deadline.
        command_timeout_seconds: the deadline of every command of :attr:`client`,
            the wait for a pooled connection included. The health ping's deadline
            is the smaller of this and half the health interval.
        jitter: returns a float in ``[0, 1)``; ``random.random`` by default (tests pin it).

    The client does no retries of its own (redis-py retries 10 times by
    default, which would hide an outage for seconds): a failed command fails
    fast with :class:`RedisUnavailable` (through :meth:`map_errors`) and this
    loop does the reconnecting. Transition callbacks (:meth:`on_transition`)
    tell other components when Redis goes down or comes back.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        health_interval_seconds: float = 1.0,
        reconnect_base_seconds: float = 0.05,
        reconnect_max_seconds: float = 0.5,
        connect_timeout_seconds: float = 2.0,
        socket_timeout_seconds: float = 5.0,
        max_connections: int = 100,
        command_timeout_seconds: float = 0.5,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if health_interval_seconds <= 0:
            raise ValueError(f"health_interval_seconds must be > 0, got {health_interval_seconds}")
        if command_timeout_seconds <= 0:
            raise ValueError(f"command_timeout_seconds must be > 0, got {command_timeout_seconds}")
        if not 0 < reconnect_base_seconds <= reconnect_max_seconds:
            raise ValueError(
                "need 0 < reconnect_base_seconds <= reconnect_max_seconds, got "
                f"{reconnect_base_seconds} and {reconnect_max_seconds}"
            )
        self._url = redact_url(url)
        self._clock = clock
        self._health_interval_seconds = health_interval_seconds
        self._reconnect_base_seconds = reconnect_base_seconds
        self._reconnect_max_seconds = reconnect_max_seconds
        self._jitter = jitter
        self._ping_timeout_seconds = min(command_timeout_seconds, health_interval_seconds / 2)
        self._deadlines = DeadlineCounters()
        connection_options: dict[str, object] = {
            "socket_connect_timeout": connect_timeout_seconds,
            "socket_timeout": socket_timeout_seconds,
            # redis-py pings a pooled connection idle for longer than this before using it.
            "health_check_interval": max(1.0, health_interval_seconds),
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": False,
        }
        self._client = DeadlineRedis(
            # A plain pool: the client's own queue (one slot per connection) already keeps
            # the commands in flight within max_connections.
            redis.asyncio.ConnectionPool.from_url(
                url, max_connections=max_connections, **connection_options
            ),
            max_connections=max_connections,
            deadline_seconds=command_timeout_seconds,
            counters=self._deadlines,
            on_timeout=self._deadline_missed,
            is_open=self._accepts_commands,
        )
        # Health pings and dedicated (pub/sub) connections: never behind the commands' queue.
        self._side_pool: redis.asyncio.ConnectionPool = redis.asyncio.ConnectionPool.from_url(
            url, **connection_options
        )
        self._health = redis.asyncio.Redis(connection_pool=self._side_pool)
        self._up = False
        self._suspect = False  # a command missed its deadline; no ping has answered since
        self._ever_up = False
        self._down_logged = False
        self._changed_at = clock.monotonic()
        self._reconnects = 0
        self._failures = 0
        self._last_error: str | None = None
        self._recheck_requested = False
        self._wake: anyio.Event | None = None
        self._changed = Notifier()
        self._callbacks: list[Callable[[bool], None]] = []

    @property
    def client(self) -> redis.asyncio.Redis:
        """The shared client; wrap its calls in :meth:`map_errors`."""
        return self._client

    @property
    def clock(self) -> Clock:
        """The clock this link reads (shared with components that reconnect through it)."""
        return self._clock

    @property
    def up(self) -> bool:
        """Whether Redis answered the last health check."""
        return self._up

    def status(self) -> RedisStatus:
        """A snapshot of the connection's state."""
        return RedisStatus(
            configured=True,
            up=self._up,
            since_seconds=self._clock.monotonic() - self._changed_at,
            reconnects=self._reconnects,
            failures=self._failures,
            last_error=self._last_error,
            url=self._url,
            pool_timeouts=self._deadlines.pool_timeouts,
            command_timeouts=self._deadlines.command_timeouts,
            closed_fast=self._deadlines.closed,
        )

    def backoff_seconds(self, attempt: int) -> float:
        """The jittered wait before reconnect ``attempt`` (0-based) with this link's settings."""
        return backoff_seconds(
            attempt,
            base_seconds=self._reconnect_base_seconds,
            max_seconds=self._reconnect_max_seconds,
            jitter=self._jitter,
        )

    def on_transition(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``callback(up)`` on every up/down change; returns a function that unregisters it.

        Callbacks run synchronously inside :meth:`run`, so they must be quick and must
        not block (set an event, ``send_nowait`` to a bounded stream). An exception in a
        callback propagates out of :meth:`run`, like any other bug.
        """
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:  # removing twice is harmless
                self._callbacks.remove(callback)

        return remove

    def _accepts_commands(self) -> bool:
        """Whether :attr:`client` sends commands now (see :class:`RedisLinkClosed`).

        Closed while Redis is known down (after a failed check) and while a
        command's missed deadline awaits the health ping's verdict; open before
        the first check, so a link whose loop is not running still works.
        """
        if self._suspect:
            return False
        return self._up or self._failures == 0

    def _deadline_missed(self, exc: BaseException) -> None:
        """A command got no reply within its deadline: hold commands until the next ping."""
        if self._up:
            self._suspect = True
        self.report_failure(exc)

    def report_failure(self, exc: BaseException) -> None:
        """Tell the loop that a command failed to reach Redis, so it re-checks at once.

        While Redis is already known to be down the loop keeps its backoff schedule.
        A :class:`RedisPoolTimeout` (or redis-py's ``MaxConnectionsError``) is
        backpressure, not a failure: it is ignored here.
        """
        if isinstance(exc, _NOT_REPORTED_ERRORS):
            return
        logger.debug("redis failure reported: %s", _describe(exc))
        if not self._up:
            return
        self._recheck_requested = True
        if self._wake is not None:
            self._wake.set()

    async def wait_for(self, predicate: Callable[[RedisStatus], bool]) -> RedisStatus:
        """Wait until ``predicate(status())`` holds and return that status.

        It waits as long as it takes: bound it (``with anyio.fail_after(...)``).
        """
        while True:
            status = self.status()
            if predicate(status):
                return status
            await self._changed.wait()

    async def wait_until(self, up: bool) -> None:
        """Wait until Redis is up (``True``) or down (``False``); bound it with a timeout."""
        await self.wait_for(lambda status: status.up is up)

    def map_errors(self, operation: str) -> _ErrorMap:
        """Translate Redis connection errors into :class:`RedisUnavailable` naming ``operation``.

        The failure is also reported (:meth:`report_failure`). Other errors pass through.
        (A plain context manager, not a generator: it wraps every cache read.)
        """
        return _ErrorMap(self, operation)

    @contextlib.asynccontextmanager
    async def dedicated_connection(self) -> AsyncIterator[AbstractConnection]:
        """A connection taken out of the pool for this caller alone (e.g. pub/sub).

        It is connected on entry (connection errors propagate) and disconnected on
        exit before it goes back to the pool, so no state left on it (subscriptions)
        leaks to other users of :attr:`client`. It comes from a pool of its own,
        so it neither waits behind :attr:`client`'s commands nor holds one of
        their connections, and it has no command deadline.
        """
        pool = self._side_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            yield connection
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await connection.disconnect(nowait=True)
                finally:
                    await pool.release(connection)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch the connection forever: ping while up, reconnect with backoff while down.

        Reports started at once, before the first connection attempt. Only
        connection errors are handled; anything else propagates.
        """
        task_status.started()
        attempt = 0
        while True:
            try:
                await self._ping()
            except CONNECTION_ERRORS as exc:
                self._mark_down(exc)
                delay = self.backoff_seconds(attempt)
                attempt += 1
                await self._idle(delay)
            else:
                attempt = 0
                if not self._up:
                    await self._discard_pooled_connections()
                self._mark_up()
                # The next ping ends at most one interval after this one answered, so a
                # stall starting now is seen within one health interval.
                await self._idle(self._health_interval_seconds - self._ping_timeout_seconds)

    async def _ping(self) -> None:
        """PING on the health connection, within the ping deadline."""
        with anyio.move_on_after(self._ping_timeout_seconds):
            await self._health.ping()
            return
        raise CommandDeadlineExceeded(
            f"no reply to the health PING within {self._ping_timeout_seconds} s"
        )

    async def _discard_pooled_connections(self) -> None:
        """Drop the pool's connections made before Redis came (back) up.

        Idle ones are closed now; those in use are closed when released. The
        next command on each slot connects afresh instead of failing on a
        socket the old server (or a dead link) left behind.
        """
        pool = self._client.connection_pool
        for connection in list(getattr(pool, "_in_use_connections", ())):
            connection.mark_for_reconnect()
        await pool.disconnect(inuse_connections=False)

    async def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` on the clock, or less if :meth:`report_failure` asks for a re-check."""
        if self._recheck_requested:
            self._recheck_requested = False
            await anyio.lowlevel.checkpoint()
            return
        self._wake = anyio.Event()
        try:
            with self._clock.move_on_after(seconds):
                await self._wake.wait()
        finally:
            self._wake = None
            self._recheck_requested = False

    def _mark_up(self) -> None:
        self._suspect = False
        if self._up:
            return
        self._up = True
        self._down_logged = False
        self._changed_at = self._clock.monotonic()
        if self._ever_up:
            self._reconnects += 1
            logger.info("redis %s is up again (reconnect %s)", self._url, self._reconnects)
        else:
            self._ever_up = True
            logger.info("redis %s is up", self._url)
        self._changed_now(up_changed=True)

    def _mark_down(self, exc: BaseException) -> None:
        self._suspect = False  # closed as down now, until a ping answers
        self._failures += 1
        self._last_error = _describe(exc)
        was_up = self._up
        if was_up or not self._down_logged:
            what = "is down" if self._ever_up else "is unavailable"
            logger.warning("redis %s %s: %s", self._url, what, self._last_error)
            self._down_logged = True
        if was_up:
            self._up = False
            self._changed_at = self._clock.monotonic()
        self._changed_now(up_changed=was_up)

    def _changed_now(self, *, up_changed: bool) -> None:
        self._changed.notify()
        if up_changed:
            for callback in list(self._callbacks):
                callback(self._up)

    async def aclose(self) -> None:
        """Close the client, the health connection and both connection pools."""
        try:
            await self._client.aclose()
        finally:
            await self._health.aclose()
            await self._side_pool.aclose()

    async def __aenter__(self) -> RedisLink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"RedisLink({self._url!r}, up={self._up})"


class _ErrorMap:
    """The context manager behind :meth:`RedisLink.map_errors`."""

    __slots__ = ("_link", "_operation")

    def __init__(self, link: RedisLink, operation: str) -> None:
        self._link = link
        self._operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc is not None and isinstance(exc, CONNECTION_ERRORS):
            self._link.report_failure(exc)
            raise RedisUnavailable(self._operation, exc) from exc
        return False
