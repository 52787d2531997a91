"""The actor base class and the receive loop the runtime runs for it.

Subclass :class:`Actor`, implement ``handle`` (dispatch with ``match`` and
``assert_never``), and optionally ``on_start`` and ``on_stop``. The runtime
owns the loop: it takes one message at a time from the mailbox, calls
``handle``, and answers the asker. Only that loop touches the actor's state.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import InvalidStateError
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple

import anyio

from ._errors import ActorCrashed, ActorStopped, Rejected
from ._extensions import Extensions
from ._mailbox import Ask
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
_CHECKPOINT_EVERY = 256
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

    A told message arrives as itself, an ask as an :class:`Ask` carrying the
    message and its asker's future. The loop is the hot path of every actor:
    it keeps to locals and one branch per kind of item.
    """
    receive = mailbox.receive
    receive_nowait = receive.receive_nowait
    handle = actor.handle
    actor_id = mailbox.actor_id
    handled = mailbox.handled
    actor._stop_requested = False
    with anyio.CancelScope() as stop_scope:
        actor._stop_scope = stop_scope
        streak = 0  # messages taken since the loop last let other tasks run
        while not actor._stop_requested:
            try:
                item = receive_nowait()
            except anyio.WouldBlock:
                # Only an idle actor is interrupted by stop(); a busy one finishes its message.
                actor._idle = True
                item = await receive.receive()
                actor._idle = False
                streak = 0
            if type(item) is Ask:
                message, future = item.message, item.future
                try:
                    result = await handle(message)
                except Rejected as rejection:
                    if not future.done():
                        future.set_exception(rejection)
                except Exception as exc:
                    _crashed(mailbox, message, exc, future)
                    raise
                except BaseException:
                    # Cancelled mid-message (the system is stopping): the asker must not hang.
                    if not future.done():
                        future.set_exception(ActorStopped(actor_id, message_tag(message)))
                    raise
                else:
                    try:
                        future.set_result(result)
                    except InvalidStateError:
                        pass  # the asker timed out or was cancelled: nobody waits
                finally:
                    item.deadlines.pop(item, None)  # settled: its deadline no longer matters
            else:
                try:
                    await handle(item)
                except Rejected as rejection:
                    logger.info(
                        "actor %s rejected told %s: %s", actor_id, message_tag(item), rejection
                    )
                except Exception as exc:
                    _crashed(mailbox, item, exc, None)
                    raise
            handled += 1
            mailbox.handled = handled
            streak += 1
            if streak >= _CHECKPOINT_EVERY:
                streak = 0
                # A busy actor still lets other tasks run now and then (anyio's
                # checkpoint on asyncio, which the runtime runs on, minus its dispatch).
                await asyncio.sleep(0)
    actor._idle = False
    actor._stop_scope = None


def _crashed(
    mailbox: Mailbox, message: object, exc: Exception, future: asyncio.Future[Any] | None
) -> None:
    """Record and log a crash once, with the message's tag; fail the asker with ActorCrashed."""
    mailbox.record_crash(exc)
    tag = message_tag(message)
    logger.error("actor %s crashed handling %s", mailbox.actor_id, tag, exc_info=exc)
    if future is not None and not future.done():
        crash = ActorCrashed(mailbox.actor_id, tag, exc)
        crash.__cause__ = exc
        future.set_exception(crash)
