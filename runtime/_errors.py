"""Errors raised by the runtime, all rooted at :class:`ActorSystemError`.

The tree::

    ActorSystemError
    ├── ActorStopped              the actor's mailbox is closed; nothing will handle the message
    ├── MailboxFull               tell_nowait() found the mailbox at capacity
    ├── AskTimeout                no reply within the ask's timeout
    ├── ActorCrashed              the actor crashed while handling this ask
    ├── RestartIntensityExceeded  a supervisor gave up: too many restarts in its period
    ├── ConfigError               a setting is missing or malformed
    ├── Rejected                  a handler refused a message (user error: code + message)
    └── RedisUnavailable          Redis is configured but cannot be reached right now

Each error takes structured arguments, keeps them as attributes and formats
a message that says what happened, with which value, and what to do.
"""

from __future__ import annotations

__all__ = [
    "ActorCrashed",
    "ActorStopped",
    "ActorSystemError",
    "AskTimeout",
    "ConfigError",
    "MailboxFull",
    "RedisUnavailable",
    "Rejected",
    "RestartIntensityExceeded",
]


class ActorSystemError(Exception):
    """Root of every error the runtime raises on purpose."""


class ActorStopped(ActorSystemError):
    """The actor is stopped (or stopping): its mailbox takes no more messages."""

    def __init__(self, actor_id: str, message_type: str | None = None) -> None:
        self.actor_id = actor_id
        self.message_type = message_type
        what = f"{message_type} to " if message_type else ""
        super().__init__(
            f"cannot deliver {what}actor {actor_id!r}: the actor is stopped; "
            "it was temporary, gave up after its restart intensity, or the system is shutting down"
        )


class MailboxFull(ActorSystemError):
    """``tell_nowait`` found the mailbox at capacity; the message was not queued."""

    def __init__(self, actor_id: str, message_type: str, capacity: int) -> None:
        self.actor_id = actor_id
        self.message_type = message_type
        self.capacity = capacity
        super().__init__(
            f"mailbox of actor {actor_id!r} is full ({capacity}/{capacity} messages); "
            f"{message_type} was not queued: use tell() to wait for room, or raise mailbox_size"
        )


class AskTimeout(ActorSystemError, TimeoutError):
    """No reply arrived within the ask's timeout."""

    def __init__(
        self,
        actor_id: str,
        message_type: str,
        timeout_seconds: float,
        mailbox_depth: int,
        mailbox_capacity: int,
    ) -> None:
        self.actor_id = actor_id
        self.message_type = message_type
        self.timeout_seconds = timeout_seconds
        self.mailbox_depth = mailbox_depth
        self.mailbox_capacity = mailbox_capacity
        super().__init__(
            f"ask({message_type}) to {actor_id!r} timed out after {timeout_seconds:g}s; "
            f"the mailbox holds {mailbox_depth}/{mailbox_capacity} messages, "
            "so the actor is overloaded or stuck"
        )


class ActorCrashed(ActorSystemError):
    """The actor raised an unexpected exception while handling this ask."""

    def __init__(self, actor_id: str, message_type: str, reason: BaseException) -> None:
        self.actor_id = actor_id
        self.message_type = message_type
        self.reason = reason
        super().__init__(
            f"actor {actor_id!r} crashed while handling {message_type}: "
            f"{type(reason).__name__}: {reason}; its supervisor decides whether it restarts"
        )


class RestartIntensityExceeded(ActorSystemError):
    """A supervisor saw more restarts than its intensity allows and gave up."""

    def __init__(
        self, supervisor_id: str, child_id: str, max_restarts: int, within_seconds: float
    ) -> None:
        self.supervisor_id = supervisor_id
        self.child_id = child_id
        self.max_restarts = max_restarts
        self.within_seconds = within_seconds
        super().__init__(
            f"supervisor {supervisor_id!r} gave up: child {child_id!r} needed more than "
            f"{max_restarts} restarts within {within_seconds:g}s; escalating to the parent"
        )


class ConfigError(ActorSystemError, ValueError):
    """A setting is missing or malformed; ``name`` is the variable or flag at fault.

    The text is ``<name> has value <value!r>; <problem>``, or ``message`` when
    given (for an error no value belongs to, such as ``unknown flag --bogus``).
    """

    def __init__(self, name: str, value: object, problem: str, *, message: str = "") -> None:
        self.name = name
        self.value = value
        self.problem = problem
        super().__init__(message or f"{name} has value {value!r}; {problem}")


class Rejected(ActorSystemError):
    """A handler refused a message because of the caller's input.

    Raise it from ``Actor.handle``: the asker receives it, the actor carries on
    (it is not a crash). ``code`` is a stable machine-readable word,
    ``message`` a sentence for people.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class RedisUnavailable(ActorSystemError):
    """Redis is configured but the operation could not reach it."""

    def __init__(self, operation: str, reason: BaseException | str) -> None:
        self.operation = operation
        self.reason = reason
        detail = (
            f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else reason
        )
        super().__init__(f"redis unavailable during {operation}: {detail}")
