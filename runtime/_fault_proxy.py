"""A TCP proxy that injects network faults between a client and a server (e.g. nodes and Redis).

:class:`FaultProxy` listens on a free ``127.0.0.1`` port, forwards each accepted
connection to a target, and changes its behaviour while traffic flows:

* :meth:`~FaultProxy.latency` delays every chunk, per direction, keeping order;
* :meth:`~FaultProxy.cut` closes every current connection (new ones still work);
* :meth:`~FaultProxy.blackhole` accepts and forwards nothing, answering nothing, with
  sockets kept open (a dead peer);
* :meth:`~FaultProxy.half_open` stops one direction while the other flows;
* :meth:`~FaultProxy.refuse` resets new connections at once;
* :meth:`~FaultProxy.heal` goes back to plain forwarding.

It runs in the test's event loop (anyio tasks, no threads) and is bounded: each
direction of a connection holds at most ``buffer_chunks`` chunks of at most
``chunk_size`` bytes, and at most ``max_connections`` connections are served at once.
A paused direction stops *reading* its socket, so what a client sends waits in the
kernel's buffers, as it would in front of a dead peer, and flows again after
:meth:`~FaultProxy.heal` (TCP would retransmit it too).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc
import msgspec
from anyio.abc import SocketAttribute

from ._notifier import Notifier

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from anyio.abc import SocketStream

__all__ = ["Direction", "FaultProxy", "FaultProxyStatistics"]

logger = logging.getLogger("runtime.fault_proxy")

#: ``"to_target"``: what the client sends (commands); ``"to_client"``: what the target answers.
Direction = Literal["to_target", "to_client"]

_DIRECTIONS: tuple[Direction, Direction] = ("to_target", "to_client")

#: What a forwarding task may meet when either side goes away.
_STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class FaultProxyStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of a :class:`FaultProxy` since it started.

    Attributes:
        accepted: connections accepted (including refused ones).
        open: connections being served now.
        refused: connections reset at once by :meth:`FaultProxy.refuse` (or the bound).
        cut: connections closed by :meth:`FaultProxy.cut`.
        failed_upstream: connections closed because the target could not be reached.
        bytes_to_target: bytes forwarded from clients to the target.
        bytes_to_client: bytes forwarded from the target to clients.
    """

    accepted: int
    open: int
    refused: int
    cut: int
    failed_upstream: int
    bytes_to_target: int
    bytes_to_client: int


class _Connection:
    """One proxied connection: the cancel scope that :meth:`FaultProxy.cut` cancels."""

    __slots__ = ("client", "scope")

    def __init__(self, client: SocketStream) -> None:
        self.client = client
        self.scope = anyio.CancelScope()


class FaultProxy:
    """A fault-injecting TCP proxy in front of ``target_host:target_port``.

    Args:
        target_host: where connections are forwarded.
        target_port: the target's port.
        host: the loopback address to listen on.
        chunk_size: the largest read, in bytes, forwarded as one chunk.
        buffer_chunks: chunks in flight per direction per connection (with latency
            they wait here; a full buffer stops reading, which is TCP backpressure).
        max_connections: connections served at once; more are reset at once.
        connect_timeout_seconds: how long a connection to the target may take.

    Use it as an async context manager; the proxy runs for the block::

        async with FaultProxy("127.0.0.1", redis_server.port) as proxy:
            client = redis.asyncio.Redis.from_url(proxy.url_for("redis"), socket_timeout=0.2)
            proxy.blackhole()
            ...
            proxy.heal()

    Every control method takes effect at once, for current and new connections,
    and may be called from any task of the same event loop.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        chunk_size: int = 65_536,
        buffer_chunks: int = 16,
        max_connections: int = 1_024,
        connect_timeout_seconds: float = 2.0,
    ) -> None:
        if chunk_size < 1 or buffer_chunks < 1 or max_connections < 1:
            raise ValueError(
                "chunk_size, buffer_chunks and max_connections must be at least 1, got "
                f"{chunk_size}, {buffer_chunks} and {max_connections}"
            )
        self._target = (target_host, target_port)
        self._host = host
        self._chunk_size = chunk_size
        self._buffer_chunks = buffer_chunks
        self._max_connections = max_connections
        self._connect_timeout_seconds = connect_timeout_seconds
        self._port: int | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._connections: set[_Connection] = set()
        self._latency: dict[Direction, float] = dict.fromkeys(_DIRECTIONS, 0.0)
        self._flowing: dict[Direction, bool] = dict.fromkeys(_DIRECTIONS, True)
        self._refusing = False
        self._changed = Notifier()
        self._accepted = 0
        self._refused = 0
        self._cut = 0
        self._failed_upstream = 0
        self._bytes: dict[Direction, int] = dict.fromkeys(_DIRECTIONS, 0)

    # -- where to connect --------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the proxy listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the proxy listens on (known once the ``async with`` block is entered)."""
        if self._port is None:
            raise RuntimeError("FaultProxy has no port yet; enter its async with block first")
        return self._port

    def url_for(self, scheme: str, path: str = "/0") -> str:
        """A URL that reaches the target through the proxy: ``url_for("redis")`` is
        ``redis://127.0.0.1:PORT/0``."""
        return f"{scheme}://{self._host}:{self.port}{path}"

    # -- faults ------------------------------------------------------------------------

    def latency(self, seconds: float, *, direction: Direction | None = None) -> None:
        """Delay every chunk by ``seconds`` in ``direction`` (both when ``None``), in order.

        A round trip through the proxy gains ``2 * seconds``. The delay is taken
        from when a chunk was read, so chunks in flight keep their own delay
        and never overtake each other.
        """
        if seconds < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds}")
        for each in _DIRECTIONS if direction is None else (direction,):
            self._latency[each] = seconds
        self._changed.notify()

    def cut(self, *, reset: bool = False) -> int:
        """Close every current connection (both sides); new connections are served as before.

        With ``reset`` the client side gets a TCP reset instead of an orderly close.
        Returns how many connections were cut.
        """
        connections = list(self._connections)
        for connection in connections:
            if reset:
                _set_linger_zero(connection.client)
            connection.scope.cancel()
        self._cut += len(connections)
        logger.info("fault proxy %s: cut %s connections", self._port, len(connections))
        return len(connections)

    def blackhole(self) -> None:
        """Forward nothing in either direction and answer nothing; keep every socket open.

        New connections are accepted and then hang, like a peer that died
        without closing. Clients notice only through their own timeouts.
        """
        self._set_flowing(to_target=False, to_client=False)

    def half_open(self, direction: Direction = "to_client") -> None:
        """Stop forwarding ``direction``; the other one keeps flowing.

        The default stops the target's answers: commands still reach Redis
        (and take effect) but their replies never arrive.
        """
        self._set_flowing(to_target=direction != "to_target", to_client=direction != "to_client")

    def refuse(self) -> None:
        """Reset new connections as soon as they are accepted; current ones carry on."""
        self._refusing = True
        self._changed.notify()

    def heal(self) -> None:
        """Back to plain forwarding: no latency, both directions flowing, connections accepted.

        Connections paused by :meth:`blackhole` or :meth:`half_open` resume, with
        whatever waited in their buffers.
        """
        self._latency = dict.fromkeys(_DIRECTIONS, 0.0)
        self._refusing = False
        self._set_flowing(to_target=True, to_client=True)

    def _set_flowing(self, *, to_target: bool, to_client: bool) -> None:
        self._flowing = {"to_target": to_target, "to_client": to_client}
        self._changed.notify()

    # -- observing ---------------------------------------------------------------------

    def statistics(self) -> FaultProxyStatistics:
        """A snapshot of the counters."""
        return FaultProxyStatistics(
            accepted=self._accepted,
            open=len(self._connections),
            refused=self._refused,
            cut=self._cut,
            failed_upstream=self._failed_upstream,
            bytes_to_target=self._bytes["to_target"],
            bytes_to_client=self._bytes["to_client"],
        )

    async def wait_for(
        self, predicate: Callable[[FaultProxyStatistics], bool]
    ) -> FaultProxyStatistics:
        """Wait until ``predicate(statistics())`` holds and return those statistics.

        It waits as long as it takes: bound it (``with anyio.fail_after(...)``).
        """
        while True:
            statistics = self.statistics()
            if predicate(statistics):
                return statistics
            await self._changed.wait()

    # -- running -----------------------------------------------------------------------

    async def __aenter__(self) -> FaultProxy:
        if self._task_group is not None:
            raise RuntimeError("FaultProxy is already running")
        listener = await anyio.create_tcp_listener(local_host=self._host, local_port=0)
        self._port = listener.extra(SocketAttribute.local_port)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._accept, listener)
        logger.debug("fault proxy on %s:%s -> %s:%s", self._host, self._port, *self._target)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return None
        task_group.cancel_scope.cancel()
        return await task_group.__aexit__(exc_type, exc, tb)

    async def _accept(self, listener: anyio.abc.Listener[SocketStream]) -> None:
        assert self._task_group is not None
        async with listener:
            await listener.serve(self._admit, task_group=self._task_group)

    async def _admit(self, client: SocketStream) -> None:
        """Serve one accepted connection, or reset it at once (refusing, or at the bound)."""
        self._accepted += 1
        if self._refusing or len(self._connections) >= self._max_connections:
            self._refused += 1
            _set_linger_zero(client)
            await client.aclose()
            self._changed.notify()
            return
        connection = _Connection(client)
        self._connections.add(connection)
        self._changed.notify()
        await self._serve(connection)

    async def _serve(self, connection: _Connection) -> None:
        try:
            with connection.scope:
                async with connection.client:
                    # A dead peer is not dialled: wait for both directions before connecting.
                    while not any(self._flowing.values()):
                        await self._changed.wait()
                    try:
                        with anyio.fail_after(self._connect_timeout_seconds):
                            target = await anyio.connect_tcp(*self._target)
                    except (OSError, TimeoutError) as exc:
                        self._failed_upstream += 1
                        logger.info(
                            "fault proxy %s: target %s:%s unreachable (%s); closing the client",
                            self._port,
                            *self._target,
                            exc,
                        )
                        return
                    async with target, anyio.create_task_group() as tg:
                        scope = tg.cancel_scope
                        tg.start_soon(self._pump, "to_target", connection.client, target, scope)
                        tg.start_soon(self._pump, "to_client", target, connection.client, scope)
        finally:
            self._connections.discard(connection)
            self._changed.notify()

    async def _pump(
        self,
        direction: Direction,
        source: SocketStream,
        sink: SocketStream,
        connection_scope: anyio.CancelScope,
    ) -> None:
        """Forward one direction: a reader and a delaying writer joined by a bounded stream."""
        send, receive = anyio.create_memory_object_stream[tuple[float, bytes]](self._buffer_chunks)

        async def read() -> None:
            async with send:
                while True:
                    await self._wait_flowing(direction)
                    try:
                        data = await source.receive(self._chunk_size)
                    except _STREAM_ERRORS:
                        return
                    try:
                        await send.send((anyio.current_time() + self._latency[direction], data))
                    except anyio.BrokenResourceError:
                        return  # the writer met a closed sink; the connection is ending

        async def write() -> None:
            async with receive:
                async for due, data in receive:
                    delay = due - anyio.current_time()
                    if delay > 0:
                        await anyio.sleep(delay)
                    await self._wait_flowing(direction)
                    try:
                        await sink.send(data)
                    except _STREAM_ERRORS:
                        return
                    self._bytes[direction] += len(data)
                    self._changed.notify()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                tg.start_soon(write)
        finally:
            # One side closed (or failed): the connection is over in both directions.
            connection_scope.cancel()

    async def _wait_flowing(self, direction: Direction) -> None:
        while not self._flowing[direction]:
            await self._changed.wait()

    def __repr__(self) -> str:
        modes = [d for d in _DIRECTIONS if not self._flowing[d]]
        state = "refusing" if self._refusing else (f"paused {modes}" if modes else "forwarding")
        return (
            f"FaultProxy({self._host}:{self._port} -> {self._target[0]}:{self._target[1]}, "
            f"{state}, open={len(self._connections)})"
        )


def _set_linger_zero(stream: SocketStream) -> None:
    """Make the next close of ``stream`` send a TCP reset instead of a FIN."""
    raw = stream.extra(SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):  # already closed by the peer: nothing to reset
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
