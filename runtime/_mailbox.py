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

__all__ = ["ActorState", "ActorStatistics", "Ask", "Mailbox"]

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


class Ask(msgspec.Struct, eq=False):
    """An ask in transit: the message and the future its asker waits on.

    A tell travels as the message itself; only an ask needs this wrapper, so
    the receive loop tells them apart with ``type(item) is Ask`` (the live
    future stays out of the frozen message Structs). The loop resolves the
    future at most once, and leaves a future that is already done (the ask
    timed out or was cancelled) alone. It is an asyncio future: the runtime is
    asyncio-only (Quart and Hypercorn are), and a future is the cheapest
    one-shot wake-up there is. A Struct because one is built per ask, and a
    Struct is built at C speed.
    """

    message: object
    future: asyncio.Future[Any]
    # The group watching its deadline (see _deadlines): whoever settles the
    # future (the loop, the group's timer, close()) removes the ask from it.
    deadlines: dict[Ask, float]


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
        # Tells travel as the bare message, asks as an ``Ask``.
        send, receive = anyio.create_memory_object_stream[object](capacity)
        self.send: MemoryObjectSendStream[object] = send
        self.receive: MemoryObjectReceiveStream[object] = receive
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
                item = self.receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            if type(item) is Ask:
                item.deadlines.pop(item, None)
                if not item.future.done():
                    error = ActorStopped(self.actor_id, message_tag(item.message))
                    item.future.set_exception(error)
        # Closing the receiving end also wakes senders blocked on a full mailbox.
        self.receive.close()
