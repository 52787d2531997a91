"""Typed channels over the fanout: a name and a msgspec type, encoded once, decoded once.

A package declares its channel once, at module level, and binds it to the
node's :class:`~runtime.Fanout` where it runs::

    class Invalidation(msgspec.Struct, frozen=True, kw_only=True):
        node: str
        keys: tuple[str, ...] = ()

    INVALIDATIONS = ChannelSpec("cache.invalidations", Invalidation)

    channel = INVALIDATIONS.bind(fanout)
    await channel.publish(Invalidation(node="a", keys=("user:1",)))
    async with channel.subscribe() as events:
        async for event in events:  # Invalidation | Gap
            ...

:meth:`Channel.publish` encodes the event once with msgpack and hands the
bytes to the fanout, which delivers the same bytes object to every local
subscriber (and one copy to Redis). Each subscriber decodes with the
spec's one reusable ``msgspec.msgpack.Decoder``; a payload that does not
decode is counted (``undecodable``), logged at WARNING once per burst (the
decoder's error, which names the path, and the payload's size: never its
bytes) and skipped, so a bad publisher never crashes a subscriber. A
:class:`~runtime.Gap` means "you may have missed events": refill from
history, or drop what you derived from the events.

Channel names
-------------
A name is dotted lower-case words: a first word naming the owning package,
then one or more segments, e.g. ``cache.invalidations`` or ``hub.room.42``::

    name    = word ("." segment)+          at most 200 characters in all
    word    = [a-z][a-z0-9_]*
    segment = [a-z0-9][a-z0-9_-]*

A declared name may hold placeholders in place of whole segments after the
first (``hub.room.{room}``); :meth:`ChannelSpec.bind` fills them, and each
value must be a segment (a caller with arbitrary ids hashes or encodes them
first). Names never contain ``:`` (the Redis key separator), ``{``/``}``
(hash tags), glob characters, spaces or upper case, so one name means one
Redis channel on every node, and it can serve as a hash tag. An invalid name
is a :class:`ValueError` where the spec is declared (or bound).

Redis names, and the plan for Redis Cluster
-------------------------------------------
:class:`~runtime.RedisFanout` builds the Redis channel name in one place,
``RedisFanout._redis_name``: ``{prefix}:{<name>}``, e.g.
``sw:fanout:{cache.invalidations}``, with the channel name as the hash tag.
A later move to Redis Cluster's sharded pub/sub (``SPUBLISH`` /
``SSUBSCRIBE``, which route a channel to the shard owning its slot) changes
only ``RedisFanout``: the slot of every channel is already fixed by its name,
so keys a package stores next to a channel (a room's history, say
``sw:hub:{hub.room.42}:history``) can carry the same hash tag and live on the
same shard, and no call site of a channel changes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import types
import typing
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import anyio
import msgspec

from ._errors import RedisUnavailable
from ._fanout import Gap, MemoryFanout, RedisFanout

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._fanout import Fanout, Subscription

__all__ = ["Channel", "ChannelSpec", "ChannelStatistics", "ChannelSubscription"]

logger = logging.getLogger("runtime.channel")

T = TypeVar("T")

#: The longest channel name, placeholders filled.
MAX_NAME_LENGTH = 200

_WORD = "[a-z][a-z0-9_]*"
_SEGMENT = re.compile("[a-z0-9][a-z0-9_-]*")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_FIRST = re.compile(_WORD)
_GRAMMAR = "dotted lower-case words: word.segment[.segment...], e.g. 'cache.invalidations'"

_encoder = msgspec.msgpack.Encoder()


class ChannelStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of one bound channel since it was bound.

    ``published`` counts events handed to the fanout, ``publish_failures``
    publishes refused because Redis was unavailable; ``received`` counts events
    decoded for a subscriber (each subscription counts its own), ``undecodable``
    payloads skipped, ``gaps`` gaps reported to subscribers.
    """

    name: str
    published: int
    publish_failures: int
    received: int
    undecodable: int
    gaps: int


def _check_event_type(event_type: object) -> None:
    """A Struct type, or a union of Struct types (msgspec checks that they are tagged)."""
    if typing.get_origin(event_type) in (typing.Union, types.UnionType):
        members: tuple[object, ...] = typing.get_args(event_type)
    else:
        members = (event_type,)
    for member in members:
        if not (isinstance(member, type) and issubclass(member, msgspec.Struct)):
            raise TypeError(
                f"a channel carries a msgspec Struct or a tagged union of Structs, "
                f"not {event_type!r}"
            )
        if issubclass(member, Gap):
            raise TypeError("Gap is what a channel reports by itself; it cannot be an event")


def _parse_name(name: str) -> tuple[str, ...]:
    """Validate a declared name; returns its placeholders, in order."""
    first, _, rest = name.partition(".")
    segments = rest.split(".") if rest else []
    fields: list[str] = []
    valid = bool(segments) and _FIRST.fullmatch(first) is not None
    for segment in segments:
        placeholder = _PLACEHOLDER.fullmatch(segment)
        if placeholder is not None:
            fields.append(placeholder.group(1))
        elif _SEGMENT.fullmatch(segment) is None:
            valid = False
    if not valid:
        raise ValueError(f"invalid channel name {name!r}: a channel name is {_GRAMMAR}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"invalid channel name {name!r}: a placeholder appears twice")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"invalid channel name {name!r}: longer than {MAX_NAME_LENGTH}")
    return tuple(fields)


class ChannelSpec(Generic[T]):
    """A channel's declaration: its name (maybe with placeholders) and its event type.

    Declare it once at module level; it holds the one decoder every channel
    bound from it shares. ``event_type`` is a msgspec Struct, or a tagged
    union of Structs (annotate the spec then: ``ROOM: ChannelSpec[RoomEvent]
    = ChannelSpec("hub.room.{room}", RoomEvent)``).

    Raises:
        ValueError: the name breaks the grammar in the module docstring.
        TypeError: the type is not a Struct or a tagged union of Structs.
    """

    __slots__ = ("_decoder", "fields", "name", "type")

    @overload
    def __init__(self: ChannelSpec[T], name: str, event_type: type[T]) -> None: ...
    @overload
    def __init__(self: ChannelSpec[Any], name: str, event_type: object) -> None: ...
    def __init__(self, name: str, event_type: object) -> None:
        #: The placeholders :meth:`bind` fills, in order (empty for a plain name).
        self.fields = _parse_name(name)
        _check_event_type(event_type)
        self.name = name
        self.type = event_type
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(event_type)

    def name_for(self, **fields: str) -> str:
        """The channel name with its placeholders filled by ``fields``.

        Raises:
            ValueError: a placeholder is missing or unknown, or a value is not a segment.
        """
        if set(fields) != set(self.fields):
            raise ValueError(
                f"channel {self.name!r} takes fields {sorted(self.fields)}, got {sorted(fields)}"
            )
        name = self.name
        for field, value in fields.items():
            if _SEGMENT.fullmatch(value) is None:
                raise ValueError(
                    f"channel {self.name!r}: {field}={value!r} is not a name segment "
                    f"([a-z0-9][a-z0-9_-]*); hash or encode such ids first"
                )
            name = name.replace("{" + field + "}", value)
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"channel name {name!r} is longer than {MAX_NAME_LENGTH}")
        return name

    def bind(self, fanout: Fanout, **fields: str) -> Channel[T]:
        """This channel on ``fanout``, with the placeholders filled by ``fields``."""
        return Channel(fanout, self, self.name_for(**fields))

    def __repr__(self) -> str:
        return f"ChannelSpec({self.name!r}, {self.type!r})"


class _Counters:
    __slots__ = ("gaps", "publish_failures", "published", "received", "undecodable")

    def __init__(self) -> None:
        self.published = 0
        self.publish_failures = 0
        self.received = 0
        self.undecodable = 0
        self.gaps = 0


class Channel(Generic[T]):
    """A channel bound to a fanout: publish events of type ``T``, subscribe to ``T | Gap``.

    Made by :meth:`ChannelSpec.bind`. Every node that binds the same name on
    fanouts sharing one Redis sees the others' events.
    """

    __slots__ = ("_counters", "_fanout", "name", "spec")

    def __init__(self, fanout: Fanout, spec: ChannelSpec[T], name: str) -> None:
        self._fanout = fanout
        self._counters = _Counters()
        #: The declaration this channel was bound from.
        self.spec = spec
        #: The filled-in name, as the fanout knows it.
        self.name = name

    async def publish(self, event: T) -> int:
        """Encode ``event`` once and publish the bytes; returns what ``Fanout.publish`` returns.

        That is local deliveries (memory) or receiving pub/sub connections (Redis).

        Raises:
            RedisUnavailable: Redis cannot be reached (counted in ``publish_failures``).
        """
        data = _encoder.encode(event)
        try:
            receivers = await self._fanout.publish(self.name, data)
        except RedisUnavailable:
            self._counters.publish_failures += 1
            raise
        self._counters.published += 1
        return receivers

    async def try_publish(self, event: T) -> int | None:
        """Like :meth:`publish`, but a Redis outage returns ``None`` instead of raising.

        For events whose loss a :class:`~runtime.Gap` already covers on the
        receiving side: the failure is counted in ``publish_failures`` and
        logged at DEBUG.
        """
        try:
            return await self.publish(event)
        except RedisUnavailable as exc:
            logger.debug("event not published on channel %r: %s", self.name, exc)
            return None

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *, buffer_size: int = 1024, skip_prefix: bytes = b""
    ) -> AsyncIterator[ChannelSubscription[T]]:
        """Receive the channel's events inside the ``async with`` block.

        ``buffer_size`` bounds the fanout subscription's buffer (drop-oldest,
        then a :class:`~runtime.Gap`), as in :meth:`Fanout.subscribe`; payloads
        starting with a non-empty ``skip_prefix`` are dropped undecoded there (on
        :class:`~runtime.MemoryFanout` and :class:`~runtime.RedisFanout`; other
        fanouts deliver them, and the subscriber filters the decoded events).
        """
        fanout = self._fanout
        subscribing = (
            fanout.subscribe(self.name, buffer_size=buffer_size, skip_prefix=skip_prefix)
            if skip_prefix and isinstance(fanout, MemoryFanout | RedisFanout)
            else fanout.subscribe(self.name, buffer_size=buffer_size)  # (another Fanout: no skip)
        )
        async with subscribing as subscription:
            events = ChannelSubscription(self, subscription)
            try:
                yield events
            finally:
                events._end_burst()

    def statistics(self) -> ChannelStatistics:
        """A snapshot of this channel's counters."""
        counters = self._counters
        return ChannelStatistics(
            name=self.name,
            published=counters.published,
            publish_failures=counters.publish_failures,
            received=counters.received,
            undecodable=counters.undecodable,
            gaps=counters.gaps,
        )

    def __repr__(self) -> str:
        return f"Channel({self.name!r}, {self.spec.type!r}, fanout={self._fanout!r})"


class ChannelSubscription(Generic[T]):
    """What one subscriber of a :class:`Channel` receives: an async iterator of ``T | Gap``.

    Undecodable payloads are skipped (and counted); iteration ends when the
    ``subscribe`` block is left and the buffer is drained. Made by
    :meth:`Channel.subscribe`.
    """

    __slots__ = ("_burst", "_channel", "_subscription")

    def __init__(self, channel: Channel[T], subscription: Subscription) -> None:
        self._channel = channel
        self._subscription = subscription
        self._burst = 0  # undecodable payloads in a row; the first one was logged

    @property
    def name(self) -> str:
        """The channel's name."""
        return self._channel.name

    @property
    def dropped(self) -> int:
        """How many payloads the fanout dropped because the buffer was full."""
        return self._subscription.dropped

    @property
    def pending(self) -> int:
        """How many payloads and gaps wait, undecoded (some may prove undecodable)."""
        return self._subscription.pending

    def _accept(self, item: bytes | Gap) -> T | Gap | None:
        """The event or gap for the subscriber, or ``None`` for a payload to skip."""
        counters = self._channel._counters
        if isinstance(item, Gap):
            self._end_burst()
            counters.gaps += 1
            return item
        try:
            event = self._channel.spec._decoder.decode(item)
        except msgspec.DecodeError as exc:
            counters.undecodable += 1
            if not self._burst:
                logger.warning(
                    "channel %r: skipped an undecodable payload of %d bytes: %s",
                    self._channel.name,
                    len(item),
                    exc,
                )
            self._burst += 1
            return None
        self._end_burst()
        counters.received += 1
        return event

    def _end_burst(self) -> None:
        burst, self._burst = self._burst, 0
        if burst > 1:
            logger.warning(
                "channel %r: skipped %d undecodable payloads in a row (the first was logged)",
                self._channel.name,
                burst,
            )

    def receive_nowait(self) -> T | Gap:
        """The next event or gap if one is buffered (undecodable payloads are skipped).

        Raises:
            anyio.WouldBlock: nothing decodable is buffered (yet).
            anyio.EndOfStream: the subscription is closed and drained.
        """
        while True:
            accepted = self._accept(self._subscription.receive_nowait())
            if accepted is not None:
                return accepted

    async def receive(self) -> T | Gap:
        """Wait for the next event or gap (undecodable payloads are skipped).

        Raises:
            anyio.EndOfStream: the subscription is closed and drained.
        """
        while True:
            accepted = self._accept(await self._subscription.receive())
            if accepted is not None:
                return accepted

    def __aiter__(self) -> ChannelSubscription[T]:
        return self

    async def __anext__(self) -> T | Gap:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        return f"ChannelSubscription({self.name!r}, {self._subscription!r})"
