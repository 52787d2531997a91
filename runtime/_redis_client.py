"""The link's Redis client: a bounded connection pool and one deadline on every command.

:class:`DeadlineRedis` is the ``redis.asyncio.Redis`` that :class:`~runtime._redis.RedisLink`
hands out. Every command sent through it (``GET``, ``SET``, ``PUBLISH``, scripts'
``EVALSHA``, ...) runs under one deadline that covers everything the call does:
waiting for a pooled connection, connecting, redis-py's health ``PING`` of an idle
connection, writing and reading. A stalled Redis (SIGSTOP, a dead peer) therefore
costs a caller at most the deadline, never the socket timeout.

While the link knows Redis is unreachable (down, or a command just missed its
deadline and the health ping has not answered since), commands are not sent:
they fail at once with :class:`RedisLinkClosed`, so a stall costs the first
caller one deadline and every later one nothing, and queued work (the cache's
writer publishing invalidations) does not pay a deadline per command.

Three failures are told apart:

* :class:`RedisPoolTimeout`: every pooled connection stayed busy for the whole
  deadline. That is backpressure, not an outage: it is counted, and the link is
  not told (Redis answered the others).
* :class:`CommandDeadlineExceeded`: Redis did not answer in time. The link is
  told at once (its health loop re-checks, and closes the gate until then).
* :class:`RedisLinkClosed`: not sent, the link believes Redis unreachable. It is
  counted; the link already knows, so it is not reported again.

All are ``redis.exceptions`` connection/timeout errors, so every
``except CONNECTION_ERRORS`` and :meth:`~runtime._redis.RedisLink.map_errors`
handles them. A pipeline (``client.pipeline(transaction=False)``) is one
command here: its ``execute()`` waits in the same line for a connection, runs
under the same deadline and the same gate, and sends all its commands in one
round trip. ``pubsub()`` takes connections from the pool directly and gets
neither the deadline nor the queue; the runtime does not use it.

A :class:`CommandLane` (:meth:`DeadlineRedis.lane`) is for one user that sends
one batch at a time (the cache's ordered writer): it keeps one connection of
its own, beyond the pool, and sends raw commands on it without the pool's and
redis-py's per-command bookkeeping, in the same line, under the same deadline
and the same gate as every command. The client closes its lanes with itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio
import redis.asyncio
import redis.asyncio.client
import redis.exceptions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from redis.asyncio.connection import AbstractConnection

__all__ = [
    "CommandDeadlineExceeded",
    "CommandLane",
    "DeadlineCounters",
    "DeadlinePipeline",
    "DeadlineRedis",
    "RedisLinkClosed",
    "RedisPoolTimeout",
]


class RedisPoolTimeout(redis.exceptions.ConnectionError):
    """No pooled connection came free within the command deadline (backpressure, not an outage)."""


class CommandDeadlineExceeded(redis.exceptions.TimeoutError):
    """Redis did not answer a command within the command deadline."""


class RedisLinkClosed(redis.exceptions.ConnectionError):
    """Not sent: the link believes Redis unreachable now (down, or re-checking after a deadline)."""


class DeadlineCounters:
    """Commands that failed on the deadline (for a connection, or for Redis), or were not sent."""

    __slots__ = ("closed", "command_timeouts", "pool_timeouts")

    def __init__(self) -> None:
        self.pool_timeouts = 0
        self.command_timeouts = 0
        self.closed = 0


class DeadlineRedis(redis.asyncio.Redis):
    """A client whose commands wait in line for one of ``max_connections`` connections.

    Args:
        connection_pool: the pool it owns (closed with the client); it should
            hold at least ``max_connections`` connections.
        max_connections: how many commands run at once; the others wait, first in first out.
        deadline_seconds: the longest a command may take, the wait for a connection included.
        counters: counts the two kinds of deadline failure.
        on_timeout: called with each :class:`CommandDeadlineExceeded` (the link re-checks).
        is_open: whether commands may be sent now; while it returns ``False`` they
            fail at once with :class:`RedisLinkClosed`. Always open by default.
    """

    def __init__(
        self,
        connection_pool: redis.asyncio.ConnectionPool,
        *,
        max_connections: int,
        deadline_seconds: float,
        counters: DeadlineCounters,
        on_timeout: Callable[[BaseException], None],
        is_open: Callable[[], bool] = lambda: True,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if deadline_seconds <= 0:
            raise ValueError(f"command deadline must be > 0 s, got {deadline_seconds}")
        super().__init__(connection_pool=connection_pool)
        self.auto_close_connection_pool = True
        self._max_connections = max_connections
        self._slots = anyio.Semaphore(max_connections, fast_acquire=True)
        self._deadline_seconds = deadline_seconds
        self._counters = counters
        self._on_timeout = on_timeout
        self._is_open = is_open
        self._lanes: list[CommandLane] = []

    @property
    def deadline_seconds(self) -> float:
        """The longest a command may take, the wait for a connection included."""
        return self._deadline_seconds

    @property
    def in_flight(self) -> int:
        """How many commands hold a connection now."""
        return self._max_connections - int(self._slots.value)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command and parse its reply, within the deadline.

        Raises:
            RedisLinkClosed: not sent, the link believes Redis unreachable now.
            RedisPoolTimeout: no connection came free within the deadline.
            CommandDeadlineExceeded: Redis did not answer within the deadline.
        """
        if not self._is_open():
            await self._refuse(args)
        slots = self._slots
        if slots.value > 0:
            # The common case: a connection is free. No wait, so no cancel scope for it.
            slots.acquire_nowait()
            remaining = self._deadline_seconds
        else:
            remaining = await self._wait_for_slot()
        # asyncio.timeout rather than an anyio scope: one timer, half the cost per command
        # (the runtime is asyncio-only; anyio's scopes honour the uncancel it does).
        deadline = asyncio.timeout(remaining)
        try:
            async with deadline:
                return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except TimeoutError:
            if not deadline.expired():
                raise
            raise self._missed(args) from None
        finally:
            slots.release()

    def lane(self) -> CommandLane:
        """A :class:`CommandLane` on a connection of its own; closed with this client."""
        lane = CommandLane(self)
        self._lanes.append(lane)
        return lane

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the lanes' connections, then the client (and its pool)."""
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            await lane.aclose()
        await super().aclose(close_connection_pool)

    def pipeline(
        self, transaction: bool = True, shard_hint: str | None = None
    ) -> redis.asyncio.client.Pipeline:
        """A pipeline whose ``execute()`` is one command here: queued, gated, under the deadline."""
        return DeadlinePipeline(self, transaction, shard_hint)

    async def _run_gated(
        self, name: tuple[Any, ...], execute: Callable[[], Awaitable[list[Any]]]
    ) -> list[Any]:
        """Run a batch (a pipeline, a lane's commands) as :meth:`execute_command` runs one command.

        Refused while the link is closed, in line for a slot, under one deadline;
        ``name`` names the batch in the errors. (:meth:`execute_command` keeps its
        own copy of these steps inline: it is the hot path, and a call more shows.)
        """
        if not self._is_open():
            await self._refuse(name)
        slots = self._slots
        if slots.value > 0:
            slots.acquire_nowait()
            remaining = self._deadline_seconds
        else:
            remaining = await self._wait_for_slot()
        deadline = asyncio.timeout(remaining)
        try:
            async with deadline:
                return await execute()
        except TimeoutError:
            if not deadline.expired():
                raise
            raise self._missed(name) from None
        finally:
            slots.release()

    async def _refuse(self, args: tuple[Any, ...]) -> None:
        self._counters.closed += 1
        # A checkpoint still: a caller retrying in a loop must not starve the event loop.
        await anyio.lowlevel.checkpoint()
        raise RedisLinkClosed(
            f"{_command_name(args)} not sent: redis is unreachable (the link is re-checking)"
        )

    async def _wait_for_slot(self) -> float:
        """Wait in line for a connection; return what is left of the deadline."""
        started = anyio.current_time()
        with anyio.move_on_after(self._deadline_seconds) as waited:
            await self._slots.acquire()
        if waited.cancelled_caught:
            self._counters.pool_timeouts += 1
            raise RedisPoolTimeout(
                f"all {self._max_connections} pooled connections stayed busy for the "
                f"{self._deadline_seconds} s command deadline"
            )
        return max(0.0, self._deadline_seconds - (anyio.current_time() - started))

    def _missed(self, args: tuple[Any, ...]) -> CommandDeadlineExceeded:
        self._counters.command_timeouts += 1
        error = CommandDeadlineExceeded(
            f"no reply to {_command_name(args)} within the "
            f"{self._deadline_seconds} s command deadline"
        )
        self._on_timeout(error)
        return error


class DeadlinePipeline(redis.asyncio.client.Pipeline):
    """A pipeline of a :class:`DeadlineRedis`: its ``execute()`` counts as one command there."""

    def __init__(self, client: DeadlineRedis, transaction: bool, shard_hint: str | None) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, transaction, shard_hint)
        self._client = client

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send every queued command in one round trip, within the client's deadline.

        Raises:
            RedisLinkClosed: not sent, the link believes Redis unreachable now.
            RedisPoolTimeout: no connection came free within the deadline.
            CommandDeadlineExceeded: Redis did not answer within the deadline.
        """
        if not self.command_stack and not self.watching:
            return []
        execute = super().execute
        return await self._client._run_gated(("a pipeline",), lambda: execute(raise_on_error))


class CommandLane:
    """One connection for one user sending one batch at a time; see the module docstring.

    Made by :meth:`DeadlineRedis.lane`. Not for concurrent use: a second
    :meth:`execute` while one runs would interleave two batches on the socket.
    """

    def __init__(self, client: DeadlineRedis) -> None:
        self._client = client
        self._connection: AbstractConnection | None = None

    @staticmethod
    def missing_script(reply: object) -> bool:
        """Whether ``reply`` is Redis's ``NOSCRIPT`` error (an ``EVALSHA`` of an unloaded script).

        Callers load the script and send again; actors use this instead of
        importing redis-py's exception types.
        """
        return isinstance(reply, redis.exceptions.NoScriptError)

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write and read their replies, within the deadline.

        Returns the raw replies in order (bytes, ints, lists, as the parser gives
        them); a command Redis refused has its ``ResponseError`` in its place.

        Raises:
            RedisLinkClosed: not sent, the link believes Redis unreachable now.
            RedisPoolTimeout: no slot came free within the deadline.
            CommandDeadlineExceeded: Redis did not answer within the deadline.
            redis.exceptions.ConnectionError: the connection failed (it is dropped,
                and the next batch connects again).
        """
        client = self._client
        name = commands[0] if commands else ()
        return await client._run_gated(name, lambda: self._send(commands))

    async def _send(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Write ``commands`` on the lane's connection and read their replies, in order."""
        connection = self._connection
        if connection is None:
            connection = self._connection = self._client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        # As the pool checks a connection it hands out: one the server closed (or that holds
        # unread data) is dropped, and send_packed_command connects again.
        if connection.is_connected and await connection.can_read():
            await connection.disconnect()
        # (Both calls drop the connection on any failure, cancellation included.)
        await connection.send_packed_command(connection.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
        return replies

    async def aclose(self) -> None:
        """Close the lane's connection (the next :meth:`execute` would open another)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()


def _command_name(args: tuple[Any, ...]) -> str:
    if not args:
        return "a command"
    name = args[0]
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)
