"""Cross-node publish/subscribe of bytes: in memory, or over Redis pub/sub.

Both implementations satisfy the :class:`Fanout` Protocol and pass the same
tests. Local delivery never blocks a publisher: each :class:`Subscription` has
a bounded buffer; when it is full the oldest message is dropped and counted,
and a :class:`Gap` tells the subscriber that it missed something.

:class:`RedisFanout` uses ONE pub/sub connection per process (a subscribed
Redis connection can do nothing else, so one per subscriber would exhaust
connections; see saq's ``PubSubMultiplexer``) and one reader task,
:meth:`RedisFanout.run`, run as a supervised child. A Redis channel is
subscribed while at least one local subscription wants it. When the
connection fails, the reader waits for the :class:`~runtime._redis.RedisLink`
to be up, subscribes every active channel again and queues
``Gap("redis reconnected")`` for each subscription: what was published in
between is lost, and the gap says so.

One method, :meth:`RedisFanout._redis_name`, maps a channel to its Redis
channel, ``{prefix}:{<channel>}`` with the channel as the hash tag, so that a
move to Redis Cluster's sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``) changes
this module only (the plan is in :mod:`runtime._channel`'s docstring).
Typed events travel over a fanout as a :class:`~runtime.Channel`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.lowlevel
import msgspec

from ._notifier import Notifier
from ._redis import CONNECTION_ERRORS, redis_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

    from anyio.abc import TaskStatus
    from redis.asyncio.connection import AbstractConnection

    from ._redis import RedisLink

__all__ = [
    "Fanout",
    "FanoutStatistics",
    "Gap",
    "MemoryFanout",
    "RedisFanout",
    "Subscription",
]

logger = logging.getLogger("runtime.fanout")


async def _as_is(response: object) -> object:
    """A RESP3 push, unchanged (the pub/sub connection's push handler)."""
    return response


class Gap(msgspec.Struct, frozen=True):
    """Delivered in place of messages a subscriber may have missed, with the reason."""

    reason: str


class FanoutStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of one fanout since it was created, and its current subscriptions."""

    published: int
    delivered: int
    dropped: int
    gaps: int
    subscriptions: int
    channels: int


class _Counters:
    """Counters shared by a fanout and its subscriptions."""

    __slots__ = ("delivered", "dropped", "gaps", "published")

    def __init__(self) -> None:
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        self.gaps = 0


class Subscription:
    """What one subscriber receives from a channel: an async iterator of ``bytes | Gap``.

    The buffer holds at most ``buffer_size`` items. When a new item arrives at a
    full buffer the oldest is dropped (:attr:`dropped` counts them) and the next
    item the subscriber receives is one :class:`Gap` naming how many were
    dropped. Messages starting with ``skip_prefix`` (when it is not empty) are
    dropped on arrival, never buffered nor counted: a publisher that starts its
    own messages with its name skips them without decoding them. Iteration ends
    once the subscription is closed (its ``subscribe`` block exited) and the
    buffer is drained. Subscriptions are made by a fanout's ``subscribe()``, not
    directly.
    """

    def __init__(
        self, channel: str, *, buffer_size: int, counters: _Counters, skip_prefix: bytes = b""
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        self.channel = channel
        self.buffer_size = buffer_size
        self.skip_prefix = skip_prefix
        self._counters = counters
        self._items: collections.deque[bytes | Gap] = collections.deque()
        self._dropped = 0
        self._dropped_since_gap = 0
        self._closed = False
        self._waiter = Notifier()

    @property
    def dropped(self) -> int:
        """How many items were dropped because the buffer was full."""
        return self._dropped

    @property
    def pending(self) -> int:
        """How many items (messages and gaps) wait to be received."""
        return len(self._items) + (1 if self._dropped_since_gap else 0)

    @property
    def closed(self) -> bool:
        """Whether the subscription takes no more items."""
        return self._closed

    def _put(self, item: bytes | Gap) -> None:
        """Queue an item without ever blocking, dropping the oldest one when full."""
        if self._closed:
            return
        skip = self.skip_prefix
        if skip and item.__class__ is bytes and item.startswith(skip):
            return
        if len(self._items) >= self.buffer_size:
            self._items.popleft()
            self._dropped += 1
            self._counters.dropped += 1
            if self._dropped_since_gap == 0:
                self._counters.gaps += 1
            self._dropped_since_gap += 1
        self._items.append(item)
        if isinstance(item, Gap):
            self._counters.gaps += 1
        else:
            self._counters.delivered += 1
        self._wake()

    def _close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._waiter.notify()

    def receive_nowait(self) -> bytes | Gap:
        """The next item if one is buffered.

        Raises:
            anyio.WouldBlock: nothing is buffered (yet).
            anyio.EndOfStream: the subscription is closed and drained.
        """
        if self._dropped_since_gap:
            dropped, self._dropped_since_gap = self._dropped_since_gap, 0
            return Gap(
                f"subscriber buffer full ({self.buffer_size}); dropped {dropped} oldest messages"
            )
        if self._items:
            return self._items.popleft()
        if self._closed:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> bytes | Gap:
        """Wait for the next item.

        Raises:
            anyio.EndOfStream: the subscription is closed and drained.
        """
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                await self._waiter.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes | Gap:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        return (
            f"Subscription({self.channel!r}, pending={self.pending}/{self.buffer_size}, "
            f"dropped={self._dropped}, closed={self._closed})"
        )


class _LocalHub:
    """The local subscriptions of one fanout, by channel, and its counters."""

    def __init__(self) -> None:
        self.counters = _Counters()
        self.channels: dict[str, dict[Subscription, None]] = {}

    def add(self, channel: str, buffer_size: int, skip_prefix: bytes = b"") -> Subscription:
        subscription = Subscription(
            channel, buffer_size=buffer_size, counters=self.counters, skip_prefix=skip_prefix
        )
        self.channels.setdefault(channel, {})[subscription] = None
        return subscription

    def remove(self, subscription: Subscription) -> None:
        subscription._close()
        subscribers = self.channels.get(subscription.channel, {})
        subscribers.pop(subscription, None)
        if not subscribers:
            self.channels.pop(subscription.channel, None)

    def deliver(self, channel: str, item: bytes | Gap) -> int:
        subscribers = self.channels.get(channel, ())
        for subscription in subscribers:
            subscription._put(item)
        return len(subscribers)

    def statistics(self) -> FanoutStatistics:
        counters = self.counters
        return FanoutStatistics(
            published=counters.published,
            delivered=counters.delivered,
            dropped=counters.dropped,
            gaps=counters.gaps,
            subscriptions=sum(len(subs) for subs in self.channels.values()),
            channels=len(self.channels),
        )


class Fanout(Protocol):
    """Publish bytes to every subscriber of a channel, on this node and (with Redis) others."""

    async def publish(self, channel: str, data: bytes) -> int:
        """Send ``data`` to the channel; returns local deliveries (memory) or receivers (Redis).

        Raises:
            RedisUnavailable: (Redis only) Redis cannot be reached; the caller decides
                how to degrade.
        """
        ...

    def subscribe(
        self, channel: str, *, buffer_size: int = 1024, skip_prefix: bytes = b""
    ) -> AbstractAsyncContextManager[Subscription]:
        """Receive the channel's messages inside the ``async with`` block.

        Messages starting with a non-empty ``skip_prefix`` (a node's own, echoed
        back by Redis) are dropped on arrival, see :class:`Subscription`.
        """
        ...

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The fanout's reader loop; start it in a task group, cancel it to stop."""
        ...

    def statistics(self) -> FanoutStatistics:
        """A snapshot of the counters."""
        ...


class MemoryFanout:
    """The in-process fanout: one node, no Redis, the same behaviour."""

    def __init__(self) -> None:
        self._hub = _LocalHub()

    async def publish(self, channel: str, data: bytes) -> int:
        """Deliver ``data`` to this process's subscribers; returns how many got it."""
        await anyio.lowlevel.checkpoint()
        self._hub.counters.published += 1
        return self._hub.deliver(channel, data)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, *, buffer_size: int = 1024, skip_prefix: bytes = b""
    ) -> AsyncIterator[Subscription]:
        """Receive the channel's messages inside the ``async with`` block.

        Messages starting with a non-empty ``skip_prefix`` are dropped on arrival.
        """
        subscription = self._hub.add(channel, buffer_size, skip_prefix)
        try:
            yield subscription
        finally:
            self._hub.remove(subscription)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Nothing to read in memory: reports started and waits to be cancelled."""
        task_status.started()
        await anyio.sleep_forever()

    def statistics(self) -> FanoutStatistics:
        """A snapshot of the counters."""
        return self._hub.statistics()

    def __repr__(self) -> str:
        return f"MemoryFanout(channels={len(self._hub.channels)})"


class RedisFanout:
    """The fanout over Redis pub/sub: one connection and one reader task per process.

    Args:
        link: the node's Redis link (client, health and reconnect timing).
        prefix: Redis channel names are ``{prefix}:{<channel>}`` (see :meth:`_redis_name`).

    :meth:`subscribe` waits until Redis confirms the subscription when the
    pub/sub connection is up, so a message published after the ``async with``
    is entered reaches the subscriber. While Redis is down it subscribes
    locally only; the reader subscribes on Redis when it is back, and the
    subscription receives a :class:`Gap`. :meth:`publish` raises
    :class:`~runtime._errors.RedisUnavailable` while Redis is down.

    It reads and writes a dedicated redis-py connection rather than redis-py's
    ``PubSub``: ``PubSub.subscribe()`` may run a PING health check that reads
    the socket while the reader task reads it too, and both ``subscribe()``
    and ``get_message()`` silently reconnect (and re-subscribe only what
    ``PubSub`` knows) after an error, hiding the gap. Here only the reader
    reads, (un)subscribe commands are sent under a lock, a broken connection
    is never reused, and replies are matched in order.
    """

    def __init__(self, link: RedisLink, *, prefix: str = "switchyard:fanout") -> None:
        self._link = link
        self._prefix = prefix
        self._hub = _LocalHub()
        self._lock = anyio.Lock()
        # Everything below describes the current pub/sub connection; guarded by _lock.
        self._connection: AbstractConnection | None = None
        self._subscribed: set[str] = set()  # Redis channel names SUBSCRIBEd on it
        self._unconfirmed: dict[str, int] = {}  # SUBSCRIBEs sent and not yet confirmed
        self._confirmed: dict[str, anyio.Event] = {}  # set when all are confirmed
        self._gap_reason: dict[str, str] = {}  # re-subscribed by the reader: queue a Gap
        self._sessions = 0
        self._connected = Notifier()

    @property
    def link(self) -> RedisLink:
        """The Redis link this fanout reads and publishes through."""
        return self._link

    @property
    def connected(self) -> bool:
        """Whether the pub/sub connection is up (for health and tests)."""
        return self._connection is not None

    async def wait_connected(self) -> None:
        """Wait until the pub/sub connection is up; bound it with a timeout."""
        while self._connection is None:
            await self._connected.wait()

    def _redis_name(self, channel: str) -> str:
        """The Redis channel of a fanout channel: the one place that builds it.

        ``{prefix}:{<channel>}``, e.g. ``sw:fanout:{cache.invalidations}``: the
        channel name is the hash tag, so under Redis Cluster's sharded pub/sub
        (``SPUBLISH``/``SSUBSCRIBE``) each channel's slot is fixed by its name,
        and keys tagged with the same name live on the same shard. A move to
        sharded pub/sub changes this class only. (A channel name containing
        ``}`` would cut its hash tag short; :class:`~runtime.ChannelSpec`
        names never do.)
        """
        return redis_key(self._prefix, "{" + channel + "}")

    def redis_channel(self, channel: str) -> str:
        """The Redis channel a fanout channel is published on (for a script that publishes).

        A command that ``PUBLISH``es on it through :attr:`link` reaches every
        subscriber as :meth:`publish` would; report it with :meth:`count_published`.
        """
        return self._redis_name(channel)

    def count_published(self, count: int = 1) -> None:
        """Count ``count`` messages published on :meth:`redis_channel` by a caller's own command."""
        self._hub.counters.published += count

    def _channel_of(self, name: str) -> str:
        """The fanout channel of a Redis channel name: the inverse of :meth:`_redis_name`."""
        return name.removeprefix(self._prefix + ":{").removesuffix("}")

    async def publish(self, channel: str, data: bytes) -> int:
        """Publish to every node; returns how many pub/sub connections received it.

        Raises:
            RedisUnavailable: Redis cannot be reached.
        """
        with self._link.map_errors(f"publish to fanout channel {channel!r}"):
            receivers = await self._link.client.publish(self._redis_name(channel), data)
        self._hub.counters.published += 1
        return int(receivers)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, *, buffer_size: int = 1024, skip_prefix: bytes = b""
    ) -> AsyncIterator[Subscription]:
        """Receive the channel's messages, from every node, inside the ``async with`` block.

        Messages starting with a non-empty ``skip_prefix`` are dropped on arrival.
        """
        subscription = self._hub.add(channel, buffer_size, skip_prefix)
        try:
            await self._sync(channel)
            yield subscription
        finally:
            self._hub.remove(subscription)
            with anyio.CancelScope(shield=True):
                await self._sync(channel)

    async def _sync(self, channel: str) -> None:
        """Make the Redis subscription match the local ones, and wait for its confirmation."""
        name = self._redis_name(channel)
        async with self._lock:
            connection = self._connection
            if connection is None:
                return  # the reader subscribes every active channel when it connects
            wanted = channel in self._hub.channels
            try:
                if wanted and name not in self._subscribed:
                    await self._send_subscribe(connection, [name])
                elif not wanted and name in self._subscribed:
                    self._subscribed.discard(name)
                    await connection.send_command("UNSUBSCRIBE", name, check_health=False)
            except CONNECTION_ERRORS as exc:
                # The reader sees the same broken connection and starts over.
                self._link.report_failure(exc)
                return
            confirmed = self._confirmed.get(name) if wanted else None
        if confirmed is not None:
            await confirmed.wait()

    async def _send_subscribe(self, connection: AbstractConnection, names: list[str]) -> None:
        """Send SUBSCRIBE; its confirmations arrive in order on the reader. Hold _lock."""
        for name in names:
            self._subscribed.add(name)
            self._unconfirmed[name] = self._unconfirmed.get(name, 0) + 1
            self._confirmed.setdefault(name, anyio.Event())
        # check_health=False: a health check would read the socket the reader is reading.
        await connection.send_command("SUBSCRIBE", *names, check_health=False)

    def _on_confirmed(self, name: str) -> None:
        left = self._unconfirmed.get(name, 0) - 1
        if left > 0:
            self._unconfirmed[name] = left
            return
        self._unconfirmed.pop(name, None)
        event = self._confirmed.pop(name, None)
        if event is not None:
            event.set()
        reason = self._gap_reason.pop(name, None)
        if reason is not None:
            self._hub.deliver(self._channel_of(name), Gap(reason))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The reader: connect when the link is up, read, and start over after a failure.

        Reports started at once, so Redis down at boot never blocks the node.
        Waits between failed attempts follow the link's backoff and clock. The
        link's own :meth:`~runtime._redis.RedisLink.run` must be running too: the
        reader connects only while the link says Redis is up.
        """
        task_status.started()
        attempt = 0
        while True:
            await self._link.wait_until(True)
            if await self._session():
                attempt = 0
            await self._link.clock.sleep(self._link.backoff_seconds(attempt))
            attempt += 1

    async def _session(self) -> bool:
        """One pub/sub connection, from connect to failure; returns whether it connected."""
        try:
            async with self._link.dedicated_connection() as connection:
                # redis-py's default handler of RESP3 pushes formats every message for a
                # DEBUG log line; this one hands it over as it is.
                parser = getattr(connection, "_parser", None)
                if parser is not None and hasattr(parser, "set_pubsub_push_handler"):
                    parser.set_pubsub_push_handler(_as_is)
                try:
                    await self._resubscribe(connection)
                    reason = await self._read_until_failure(connection)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._forget(connection)
        except CONNECTION_ERRORS as exc:
            # Failed to connect, or to subscribe, or the close failed too.
            self._link.report_failure(exc)
            logger.warning("fanout pub/sub connection failed: %s: %s", type(exc).__name__, exc)
            return False
        logger.warning("fanout pub/sub connection lost: %s", reason)
        return True

    async def _resubscribe(self, connection: AbstractConnection) -> None:
        async with self._lock:
            gap = "redis reconnected" if self._sessions else "redis connected"
            self._sessions += 1
            self._connection = connection
            self._connected.notify()
            names = [self._redis_name(channel) for channel in self._hub.channels]
            if names:
                self._gap_reason.update(dict.fromkeys(names, gap))
                await self._send_subscribe(connection, names)
        logger.info("fanout pub/sub connected; subscribed to %s channels", len(names))

    async def _forget(self, connection: AbstractConnection) -> None:
        """Drop the state of a finished connection and release every waiter."""
        async with self._lock:
            if self._connection is connection:
                self._connection = None
            self._subscribed.clear()
            self._unconfirmed.clear()
            self._gap_reason.clear()
            for event in self._confirmed.values():
                event.set()
            self._confirmed.clear()

    async def _read_until_failure(self, connection: AbstractConnection) -> str:
        """Read until the connection fails or the link goes down; returns why it ended."""
        outcome = "the redis link went down"
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                nonlocal outcome
                try:
                    await self._read(connection)
                except CONNECTION_ERRORS as exc:
                    self._link.report_failure(exc)
                    outcome = f"{type(exc).__name__}: {exc}"
                tg.cancel_scope.cancel()

            tg.start_soon(read)
            await self._link.wait_until(False)
            tg.cancel_scope.cancel()
        return outcome

    async def _read(self, connection: AbstractConnection) -> None:
        while True:
            # No timeout (no timer per message): the session cancels this read when the
            # link goes down, and a quiet channel is not an error.
            reply = await connection.read_response(
                timeout=math.inf, disconnect_on_error=False, push_request=True
            )
            match reply:
                case [b"message", bytes() as name, bytes() as data]:
                    self._hub.deliver(self._channel_of(name.decode()), data)
                case [b"subscribe", bytes() as name, _]:
                    self._on_confirmed(name.decode())
                case None | [b"unsubscribe", _, _]:
                    pass  # a quiet poll, or an unsubscribe confirmation
                case _:
                    raise RuntimeError(
                        f"unexpected reply on the fanout pub/sub connection: {reply!r}"
                    )

    def statistics(self) -> FanoutStatistics:
        """A snapshot of the counters (``published`` counts this node's successful publishes)."""
        return self._hub.statistics()

    def __repr__(self) -> str:
        state = "connected" if self._connection is not None else "disconnected"
        return f"RedisFanout(prefix={self._prefix!r}, {state}, channels={len(self._hub.channels)})"
