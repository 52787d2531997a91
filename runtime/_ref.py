"""Refs: the only handle anyone holds on an actor.

A ref wraps the actor's mailbox, which outlives every incarnation of the
actor, so a ref taken before a restart still reaches the new incarnation.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import anyio

from ._errors import ActorStopped, AskTimeout, MailboxFull
from ._mailbox import ActorStatistics, Envelope, Mailbox, Reply
from ._protocol import message_tag

if TYPE_CHECKING:
    from ._clock import Clock
    from ._protocol import Request

__all__ = ["ActorRef", "Refs"]


class _Expired(Exception):
    """Set on a reply slot whose ask timed out."""


def _expire(reply: Reply) -> None:
    reply.fail(_Expired())


M = TypeVar("M")
R = TypeVar("R")

_STREAM_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError)


class ActorRef(Generic[M]):
    """Sends messages to one actor: ``tell``, ``tell_nowait`` and ``ask``."""

    __slots__ = ("_ask_timeout_seconds", "_clock", "_mailbox", "_send")

    def __init__(self, mailbox: Mailbox, *, clock: Clock, ask_timeout_seconds: float) -> None:
        self._mailbox = mailbox
        self._send = mailbox.send
        self._clock = clock
        self._ask_timeout_seconds = ask_timeout_seconds

    @property
    def actor_id(self) -> str:
        """The id of the actor this ref reaches."""
        return self._mailbox.actor_id

    async def tell(self, message: M) -> None:
        """Queue ``message``, waiting for room while the mailbox is full (backpressure).

        Raises:
            ActorStopped: the actor is stopped for good.
        """
        envelope = Envelope(message, None)
        try:
            self._send.send_nowait(envelope)
        except anyio.WouldBlock:
            await self._wait_for_room(envelope, None)
        except _STREAM_GONE:
            raise self._stopped(message) from None

    def tell_nowait(self, message: M) -> None:
        """Queue ``message`` without ever waiting; for telemetry that must not slow a request.

        Raises:
            MailboxFull: the mailbox is at capacity; the message was not queued.
            ActorStopped: the actor is stopped for good.
        """
        try:
            self._send.send_nowait(Envelope(message, None))
        except anyio.WouldBlock:
            raise MailboxFull(self.actor_id, message_tag(message), self._mailbox.capacity) from None
        except _STREAM_GONE:
            raise self._stopped(message) from None

    @overload
    async def ask(self, message: Request[R], *, timeout_seconds: float | None = None) -> R: ...

    @overload
    async def ask(self, message: M, *, timeout_seconds: float | None = None) -> object: ...

    async def ask(self, message: Any, *, timeout_seconds: float | None = None) -> Any:
        """Send ``message`` and wait for the handler's return value.

        A :class:`~runtime.Request` ``[R]`` is typed as returning ``R``; the
        reply to any other message is typed ``object`` (narrow it, or make the
        message a ``Request``), so a wrong annotation of the result is an error.

        The timeout covers both waiting for room in the mailbox and waiting
        for the reply. A :class:`~runtime.Rejected` raised by the handler is
        raised here; the actor carries on.

        Raises:
            AskTimeout: no reply within ``timeout_seconds`` (default: the system's).
            ActorCrashed: the actor crashed while handling this message.
            ActorStopped: the actor stopped before it could reply.
            Rejected: the handler refused the message.
        """
        timeout = self._ask_timeout_seconds if timeout_seconds is None else timeout_seconds
        reply = Reply()
        envelope = Envelope(message, reply)
        clock = self._clock
        try:
            self._send.send_nowait(envelope)
            remaining = timeout
        except anyio.WouldBlock:
            # Backpressure: wait for room, within the same timeout.
            started = clock.monotonic()
            if not await self._wait_for_room(envelope, timeout):
                raise self._timeout(message, timeout) from None
            remaining = max(0.0, timeout - (clock.monotonic() - started))
        except _STREAM_GONE:
            raise self._stopped(message) from None
        # A timer is far cheaper than a cancel scope per ask; it fails the reply
        # slot, and a late reply to a failed slot is ignored.
        timer = clock.call_later(remaining, functools.partial(_expire, reply))
        try:
            return await reply.future
        except _Expired:
            raise self._timeout(message, timeout) from None
        finally:
            timer.cancel()

    async def _wait_for_room(self, envelope: Envelope, within_seconds: float | None) -> bool:
        """Send ``envelope`` once the full mailbox has room; ``False`` if time ran out first.

        (The fast paths call ``send_nowait`` inline: a call more per message shows in ``tell``.)
        """
        try:
            if within_seconds is None:
                await self._send.send(envelope)
                return True
            with self._clock.move_on_after(within_seconds):
                await self._send.send(envelope)
                return True
            return False
        except _STREAM_GONE:
            raise self._stopped(envelope.message) from None

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
