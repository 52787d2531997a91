"""The message base type and the error shape every edge uses.

Messages are frozen, tagged msgspec Structs. The same Struct is decoded from a
WebSocket frame or an HTTP body, travels to an actor as an object, and is
stored in Redis as msgpack. Tags are explicit and dotted (``"cache.get"``):
the default tag would be the class name, and a rename would then silently
change the wire format.
"""

from __future__ import annotations

import msgspec

__all__ = ["ErrorBody", "ErrorReply", "Message", "message_tag"]


class Message(msgspec.Struct, frozen=True, tag_field="type"):
    """Base of every actor message. Subclasses set an explicit dotted ``tag``."""


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
