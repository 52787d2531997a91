"""Refs: the only handle anyone holds on an actor.

A ref wraps the actor's mailbox, which outlives every incarnation of the
actor, so a ref taken before a restart still reaches the new incarnation.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import anyio

from ._clock import SystemClock
from ._deadlines import AskDeadlines
from ._errors import ActorStopped, AskTimeout, MailboxFull
from ._mailbox import ActorStatistics, Ask, Mailbox
from ._protocol import message_tag

if TYPE_CHECKING:
    from ._clock import Clock
    from ._protocol import Request

__all__ = ["ActorRef", "Refs"]


M = TypeVar("M")
R = TypeVar("R")

_STREAM_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError)
# Why ``send_nowait`` can refuse an item: no room, or the actor is stopped for good.
_NOT_NOW = (anyio.WouldBlock, *_STREAM_GONE)


def _completed() -> asyncio.Future[None]:
    """A future that is already done: awaiting it returns at once, without suspending.

    A done future is the cheapest awaitable there is (cheaper than a coroutine,
    which is created and run for each call) and carries no loop state once done,
    so one of them serves every ``tell`` that finds room.
    """
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        future.set_result(None)
    finally:
        loop.close()
    return future


_QUEUED = _completed()
_Future = asyncio.Future


class ActorRef(Generic[M]):
    """Sends messages to one actor: ``tell``, ``tell_nowait`` and ``ask``."""

    __slots__ = (
        "_ask_timeout_seconds",
        "_clock",
        "_deadlines",
        "_mailbox",
        "_monotonic",
        "_send",
        "_send_nowait",
    )

    def __init__(self, mailbox: Mailbox, *, clock: Clock, ask_timeout_seconds: float) -> None:
        self._mailbox = mailbox
        self._send = mailbox.send
        self._send_nowait = mailbox.send.send_nowait
        self._clock = clock
        # SystemClock.monotonic() is time.monotonic(): called directly, an ask spares a frame.
        self._monotonic = time.monotonic if type(clock) is SystemClock else clock.monotonic
        self._ask_timeout_seconds = ask_timeout_seconds
        # Pending asks by timeout value, each group watched by one timer (see _deadlines).
        self._deadlines: dict[float, AskDeadlines] = {}

    @property
    def actor_id(self) -> str:
        """The id of the actor this ref reaches."""
        return self._mailbox.actor_id

    def tell(self, message: M) -> Awaitable[None]:
        """Queue ``message``, waiting for room while the mailbox is full (backpressure).

        Use it as ``await ref.tell(message)``. When the mailbox has room, the
        call itself queues the message and returns an awaitable that is
        already done, so the ``await`` never suspends (as with a coroutine that
        finds room); otherwise the wait for room, and any error, happen when it
        is awaited, so await it at once to keep the order of your messages.

        Raises:
            ActorStopped: the actor is stopped for good.
        """
        try:
            self._send_nowait(message)
        except _NOT_NOW:
            return self._tell_when_room(message)
        return _QUEUED

    async def _tell_when_room(self, message: M) -> None:
        try:
            await self._send.send(message)
        except _STREAM_GONE:
            raise self._stopped(message) from None

    def tell_nowait(self, message: M) -> None:
        """Queue ``message`` without ever waiting; for telemetry that must not slow a request.

        Raises:
            MailboxFull: the mailbox is at capacity; the message was not queued.
            ActorStopped: the actor is stopped for good.
        """
        try:
            self._send_nowait(message)
        except anyio.WouldBlock:
            raise MailboxFull(self.actor_id, message_tag(message), self._mailbox.capacity) from None
        except _STREAM_GONE:
            raise self._stopped(message) from None

    @overload
    def ask(self, message: Request[R], *, timeout_seconds: float | None = None) -> Awaitable[R]: ...

    @overload
    def ask(self, message: M, *, timeout_seconds: float | None = None) -> Awaitable[object]: ...

    def ask(self, message: Any, *, timeout_seconds: float | None = None) -> Awaitable[Any]:
        """Send ``message`` and wait for the handler's return value: ``await ref.ask(message)``.

        A :class:`~runtime.Request` ``[R]`` is typed as returning ``R``; the
        reply to any other message is typed ``object`` (narrow it, or make the
        message a ``Request``), so a wrong annotation of the result is an error.

        The timeout covers both waiting for room in the mailbox and waiting
        for the reply. A :class:`~runtime.Rejected` raised by the handler is
        raised here; the actor carries on.

        When the mailbox has room, the call itself queues the message and
        returns the future the actor resolves (no coroutine in between); when
        it is full, it returns a coroutine that waits for room. Either way,
        await it at once; cancelling the wait abandons the ask (the actor
        skips its reply).

        Raises:
            AskTimeout: no reply within ``timeout_seconds`` (default: the system's).
            ActorCrashed: the actor crashed while handling this message.
            ActorStopped: the actor stopped before it could reply.
            Rejected: the handler refused the message.
        """
        timeout = self._ask_timeout_seconds if timeout_seconds is None else timeout_seconds
        # Bound to the running loop (what loop.create_future() does, minus a call).
        future: asyncio.Future[Any] = _Future()
        # No timer of its own: the group of asks with this timeout has one (see _deadlines).
        deadlines = self._deadlines.get(timeout)
        if deadlines is None:
            deadlines = AskDeadlines(self._deadlines, timeout, self._clock, self._timeout)
        call = Ask(message, future, deadlines)
        try:
            self._send_nowait(call)
        except anyio.WouldBlock:
            return self._ask_when_room(call, timeout)
        except _STREAM_GONE:
            future.set_exception(self._stopped(message))
            return future
        # Removed by whoever settles the ask: the actor, the group's timer, or close().
        deadlines[call] = self._monotonic() + timeout
        return future

    async def _ask_when_room(self, call: Ask, timeout_seconds: float) -> Any:
        """The rest of an ask that found the mailbox full: wait for room, then for the reply.

        Both within ``timeout_seconds``. Rare (the mailbox is full), so it keeps a
        timer of its own, and stays out of its group (whose entries the actor
        removes, so removing this absent one is a no-op): its deadline is earlier
        than those of asks sent while it waited, which would break the group's order.
        """
        clock = self._clock
        started = clock.monotonic()
        try:
            with clock.move_on_after(timeout_seconds) as room:
                await self._send.send(call)
        except _STREAM_GONE:
            raise self._stopped(call.message) from None
        if room.cancelled_caught:
            raise self._timeout(call.message, timeout_seconds)
        remaining = max(0.0, timeout_seconds - (clock.monotonic() - started))
        timer = clock.call_later(
            remaining, functools.partial(self._expire, call, timeout_seconds)
        )
        try:
            return await call.future
        finally:
            timer.cancel()

    def _expire(self, call: Ask, timeout_seconds: float) -> None:
        if not call.future.done():
            call.future.set_exception(self._timeout(call.message, timeout_seconds))

    def _stopped(self, message: object) -> ActorStopped:
        """The one mapping of a closed mailbox: ActorStopped naming the actor and the message."""
        return ActorStopped(self.actor_id, message_tag(message))

    def _timeout(self, message: object, timeout: float) -> AskTimeout:
        return AskTimeout(
            self.actor_id,
            message_tag(message),
            timeout,
            self._mailbox.depth,
            self._mailbox.capacity,
        )

    def statistics(self) -> ActorStatistics:
        """Mailbox depth and capacity, handled count, crashes, restarts, last crash reason."""
        return self._mailbox.statistics()

    def __repr__(self) -> str:
        return f"ActorRef({self.actor_id!r})"


class Refs(Mapping[str, ActorRef[Any]]):
    """The refs of every actor in a supervision tree, by actor id."""

    def __init__(self, refs: Mapping[str, ActorRef[Any]]) -> None:
        self._refs = refs  # a live view: the supervision tree fills it as it is built

    def __getitem__(self, actor_id: str) -> ActorRef[Any]:
        try:
            return self._refs[actor_id]
        except KeyError:
            known = ", ".join(sorted(self._refs)) or "none"
            raise KeyError(f"no actor {actor_id!r} in this system; known actors: {known}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"Refs({sorted(self._refs)})"
