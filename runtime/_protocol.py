"""The message base type and the error shape every edge uses.

Messages are frozen, tagged msgspec Structs. The same Struct is decoded from a
WebSocket frame or an HTTP body, travels to an actor as an object, and is
stored in Redis as msgpack. Tags are explicit and dotted (``"cache.get"``):
the default tag would be the class name, and a rename would then silently
change the wire format.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

__all__ = ["ErrorBody", "ErrorReply", "Message", "Request", "message_tag"]

R = TypeVar("R")


class Message(msgspec.Struct, frozen=True, tag_field="type"):
    """Base of every actor message. Subclasses set an explicit dotted ``tag``.

    A message that is only told (an event, a notification) derives from
    ``Message``; a command that is asked derives from :class:`Request`.
    """


class Request(Message, Generic[R], frozen=True):
    """A message that is asked, typed with its reply: ``class Get(Request[GetReply], ...)``.

    ``await ref.ask(Get(...))`` is then typed as returning ``GetReply``. By
    convention the reply of ``<Command>`` is a public ``<Command>Reply`` Struct
    (or a plain type such as ``int`` or ``None`` where a Struct would add nothing).
    """


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """What went wrong: a stable machine-readable ``code`` and a sentence for people."""

    code: str
    message: str


class ErrorReply(msgspec.Struct, frozen=True, kw_only=True):
    """The error envelope of every edge: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorBody

    @classmethod
    def of(cls, code: str, message: str) -> ErrorReply:
        """Build the envelope from a code and a message."""
        return cls(error=ErrorBody(code=code, message=message))


def message_tag(message: object) -> str:
    """The wire tag of a message (``"cache.get"``), or its class name for other objects."""
    config = getattr(type(message), "__struct_config__", None)
    tag = getattr(config, "tag", None)
    return tag if isinstance(tag, str) else type(message).__name__
