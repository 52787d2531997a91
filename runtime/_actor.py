"""The actor base class and the receive loop the runtime runs for it.

Subclass :class:`Actor`, implement ``handle`` (dispatch with ``match`` and
``assert_never``), and optionally ``on_start`` and ``on_stop``. The runtime
owns the loop: it takes one message at a time from the mailbox, calls
``handle``, and answers the asker. Only that loop touches the actor's state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple

import anyio
import anyio.lowlevel

from ._errors import ActorCrashed, ActorStopped, Rejected
from ._extensions import Extensions
from ._protocol import message_tag

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from anyio.abc import TaskGroup

    from ._clock import Clock
    from ._extensions import Extension
    from ._mailbox import Mailbox
    from ._ref import ActorRef, Refs

__all__ = ["Actor", "ActorContext"]

logger = logging.getLogger("runtime.actor")

M = TypeVar("M")
T = TypeVar("T")

# Messages an actor handles back to back, when its mailbox never runs dry,
# before it yields to the event loop once.
_CHECKPOINT_EVERY = 64
PosArgs = TypeVarTuple("PosArgs")


class ActorContext:
    """What the runtime hands an actor incarnation: its identity, clock, refs and tasks.

    :meth:`get` reaches the node's parts by typed key (``self.context.get(CACHE)``),
    as request handlers do with ``node_context().get(CACHE)``.
    """

    __slots__ = ("actor_id", "clock", "extensions", "refs", "self_ref", "task_group")

    def __init__(
        self,
        *,
        actor_id: str,
        clock: Clock,
        refs: Refs,
        self_ref: ActorRef[Any],
        task_group: TaskGroup,
        extensions: Extensions | None = None,
    ) -> None:
        self.actor_id = actor_id
        self.clock = clock
        self.refs = refs
        self.self_ref = self_ref
        self.task_group = task_group
        self.extensions = extensions if extensions is not None else Extensions()

    def get(self, key: Extension[T]) -> T:
        """The facade provided to the node under ``key``.

        Raises:
            ConfigError: nothing provides ``key`` (for example in a bare ``open_system``).
        """
        return self.extensions.get(key)

    def find(self, key: Extension[T]) -> T | None:
        """The part provided under ``key``, or ``None`` (``find(REDIS)`` on an in-memory node)."""
        return self.extensions.find(key)


class Actor(Generic[M]):
    """Base class of every actor; generic over the union of messages it handles.

    Hooks, all optional but ``handle``:

    * ``on_start``: runs before the first message of each incarnation. If it
      raises on the first start, the boot fails with that error.
    * ``handle``: one message at a time. Return a value to answer an ask;
      raise :class:`~runtime.Rejected` for a user error (the actor carries
      on); any other exception crashes the incarnation.
    * ``on_stop``: runs when the incarnation ends, within the child's
      ``shutdown_seconds``, then is cancelled.
    """

    _context: ActorContext | None = None
    _stop_scope: anyio.CancelScope | None = None
    _stop_requested = False
    _idle = False

    async def on_start(self) -> None:
        """Prepare the actor's state; called before the first message."""

    async def handle(self, message: M) -> Any:
        """Handle one message and return the reply for an ask."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `async def handle(self, message)`"
        )

    async def on_stop(self) -> None:
        """Release what the actor holds; called once when the incarnation ends."""

    @property
    def context(self) -> ActorContext:
        """The runtime context; available from ``on_start`` on."""
        if self._context is None:
            raise RuntimeError(
                f"{type(self).__name__}.context is not set yet: the runtime binds it before "
                "on_start(); do not use it in __init__"
            )
        return self._context

    @property
    def actor_id(self) -> str:
        """This actor's id in the supervision tree."""
        return self.context.actor_id

    @property
    def clock(self) -> Clock:
        """The clock every timeout, TTL and backoff of this actor reads."""
        return self.context.clock

    @property
    def self_ref(self) -> ActorRef[M]:
        """This actor's own ref, typed with its protocol (valid across restarts)."""
        ref: ActorRef[M] = self.context.self_ref
        return ref

    def start_soon(
        self, func: Callable[[*PosArgs], Coroutine[Any, Any, Any]], *args: *PosArgs
    ) -> None:
        """Run a background task linked to this incarnation.

        It is cancelled when the incarnation ends, and if it raises, the actor
        crashes and its supervisor decides what happens next (as a linked
        process in OTP).
        """
        self.context.task_group.start_soon(func, *args)

    def stop(self) -> None:
        """End this incarnation normally after the current message.

        A ``transient`` or ``temporary`` child is not restarted after a normal stop.
        """
        self._stop_requested = True
        if self._idle and self._stop_scope is not None:
            self._stop_scope.cancel()


async def serve(actor: Actor[Any], mailbox: Mailbox) -> None:
    """Take messages from ``mailbox`` and hand them to ``actor`` until stopped.

    Returns normally when the actor calls ``stop()``; re-raises the exception
    that crashed the actor after logging it once with the message's tag.
    """
    receive = mailbox.receive
    handle = actor.handle
    actor_id = mailbox.actor_id
    actor._stop_requested = False
    with anyio.CancelScope() as stop_scope:
        actor._stop_scope = stop_scope
        since_checkpoint = 0
        while not actor._stop_requested:
            try:
                envelope = receive.receive_nowait()
                since_checkpoint += 1
                if since_checkpoint >= _CHECKPOINT_EVERY:
                    # A busy actor still lets other tasks run now and then.
                    since_checkpoint = 0
                    await anyio.lowlevel.checkpoint()
            except anyio.WouldBlock:
                # Only an idle actor is interrupted by stop(); a busy one finishes its message.
                since_checkpoint = 0
                actor._idle = True
                envelope = await receive.receive()
                actor._idle = False
            message, reply = envelope.message, envelope.reply
            try:
                result = await handle(message)
            except Rejected as rejection:
                if reply is not None:
                    reply.fail(rejection)
                else:
                    logger.info(
                        "actor %s rejected told %s: %s", actor_id, message_tag(message), rejection
                    )
            except Exception as exc:
                mailbox.record_crash(exc)
                logger.error(
                    "actor %s crashed handling %s", actor_id, message_tag(message), exc_info=exc
                )
                if reply is not None:
                    crash = ActorCrashed(actor_id, message_tag(message), exc)
                    crash.__cause__ = exc
                    reply.fail(crash)
                raise
            except BaseException:
                # Cancelled mid-message (the system is stopping): the asker must not hang.
                if reply is not None:
                    reply.fail(ActorStopped(actor_id, message_tag(message)))
                raise
            else:
                if reply is not None:
                    reply.succeed(result)
            mailbox.handled += 1
    actor._idle = False
    actor._stop_scope = None
