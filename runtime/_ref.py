"""Refs: the only handle anyone holds on an actor.

A ref wraps the actor's mailbox, which outlives every incarnation of the
actor, so a ref taken before a restart still reaches the new incarnation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from ._errors import ActorStopped, AskTimeout, MailboxFull
from ._mailbox import ActorStatistics, Envelope, Mailbox, Reply
from ._protocol import message_tag

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["ActorRef", "Refs"]

M = TypeVar("M")


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
        return self._mailbox.actor_id

    async def tell(self, message: M) -> None:
        """Queue ``message``, waiting for room while the mailbox is full (backpressure).

        Raises:
            ActorStopped: the actor is stopped for good.
        """
        try:
            await self._send.send(Envelope(message, None))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise ActorStopped(self.actor_id, message_tag(message)) from None

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
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise ActorStopped(self.actor_id, message_tag(message)) from None

    async def ask(self, message: M, *, timeout_seconds: float | None = None) -> Any:
        """Send ``message`` and wait for the handler's return value.

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
        with self._clock.move_on_after(timeout):
            try:
                await self._send.send(Envelope(message, reply))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise ActorStopped(self.actor_id, message_tag(message)) from None
            await reply.wait()
        if not reply.done:
            raise AskTimeout(
                self.actor_id,
                message_tag(message),
                timeout,
                self._mailbox.depth,
                self._mailbox.capacity,
            )
        return reply.result()

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
