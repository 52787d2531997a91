"""The mailbox of one actor: a bounded memory stream plus the actor's counters.

A mailbox is created once per child spec and outlives every incarnation of
the actor, which is what keeps refs valid across restarts. Only the
supervisor that owns it closes it; closing fails every ask still queued with
:class:`~runtime.ActorStopped`, so no caller is left hanging.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgspec

from ._errors import ActorStopped
from ._protocol import message_tag

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["ActorState", "ActorStatistics", "Envelope", "Mailbox", "Reply"]

ActorState = Literal["starting", "running", "restarting", "stopped"]


class ActorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one actor, cheap to take and safe to share."""

    actor_id: str
    state: ActorState
    mailbox_depth: int
    mailbox_capacity: int
    handled: int
    crashes: int
    restarts: int
    last_crash_reason: str | None


class Reply:
    """A one-shot slot an asker waits on; the actor's loop fills it at most once.

    It wraps an asyncio future: the runtime is asyncio-only (Quart and
    Hypercorn are), and a future is the cheapest one-shot wake-up there is.
    A slot whose asker has gone (timed out or cancelled) ignores the reply.
    """

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @property
    def done(self) -> bool:
        return self.future.done()

    def succeed(self, value: object) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class Envelope:
    """A message in transit, with the reply slot of an ask (``None`` for a tell).

    Live objects such as the reply slot stay out of the frozen message Structs.
    """

    __slots__ = ("message", "reply")

    def __init__(self, message: object, reply: Reply | None) -> None:
        self.message = message
        self.reply = reply


class Mailbox:
    """Both ends of an actor's bounded inbox, and the counters behind ``statistics()``."""

    def __init__(self, actor_id: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(
                f"mailbox_size of {actor_id!r} is {capacity}; it must be at least 1 "
                "(mailboxes are bounded so that a slow actor pushes back on its senders)"
            )
        self.actor_id = actor_id
        self.capacity = capacity
        send, receive = anyio.create_memory_object_stream[Envelope](capacity)
        self.send: MemoryObjectSendStream[Envelope] = send
        self.receive: MemoryObjectReceiveStream[Envelope] = receive
        self.state: ActorState = "starting"
        self.handled = 0
        self.crashes = 0
        self.restarts = 0
        self.last_crash_reason: str | None = None

    @property
    def depth(self) -> int:
        return self.send.statistics().current_buffer_used

    @property
    def closed(self) -> bool:
        return self.state == "stopped"

    def record_crash(self, reason: BaseException) -> None:
        self.crashes += 1
        self.last_crash_reason = f"{type(reason).__name__}: {reason}"

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            actor_id=self.actor_id,
            state=self.state,
            mailbox_depth=0 if self.closed else self.depth,
            mailbox_capacity=self.capacity,
            handled=self.handled,
            crashes=self.crashes,
            restarts=self.restarts,
            last_crash_reason=self.last_crash_reason,
        )

    def close(self) -> None:
        """Stop for good: refuse new messages and fail every queued ask with ActorStopped."""
        if self.closed:
            return
        self.state = "stopped"
        self.send.close()
        while True:
            try:
                envelope = self.receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            if envelope.reply is not None:
                envelope.reply.fail(ActorStopped(self.actor_id, message_tag(envelope.message)))
        # Closing the receiving end also wakes senders blocked on a full mailbox.
        self.receive.close()
