"""WebSocket frames: one reusable decoder per frame union, and the error frame.

Frames are JSON text frames holding tagged msgspec Structs (tag field
``type``), usually :class:`~runtime.Message` subclasses, so the Struct decoded
from the socket is the message that travels to an actor. :class:`FrameDecoder`
wraps one ``msgspec.json.Decoder`` per union and turns every way a frame can
be bad into a :class:`FrameError` with a precise code:

==========================  ====================================================
code                        meaning
==========================  ====================================================
``malformed_frame``         not JSON (or a binary frame that is not UTF-8 JSON)
``unknown_type``            ``type`` names no frame of the union (named, with the
                            known ones)
``validation_error``        a field is missing or wrong; msgspec's message with
                            its path, e.g. ``Expected `int`, got `str` - at `$.x```
``frame_too_large``         the frame is past the session's ``max_frame_bytes``
``binary_not_supported``    a binary frame where only text frames are accepted
==========================  ====================================================

The client gets ``{"type": "error", "code": ..., "message": ...}`` (and the
``ref`` of the frame at fault, when there is one) and the connection goes on.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Generic, TypeVar, Union

import msgspec

__all__ = ["AuthFrame", "ErrorFrame", "FrameDecoder", "FrameError", "encode_frame"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


class ErrorFrame(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="error",
                 omit_defaults=True):  # fmt: skip
    """``{"type": "error", "code": ..., "message": ..., "ref": ...}``, sent to the client.

    ``ref`` echoes the ``ref`` field of the frame at fault, when the frame had
    one and could be decoded, so a client can match the error to its request.
    """

    code: str
    message: str
    ref: str | int | None = None


class AuthFrame(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="auth"):
    """``{"type": "auth", "token": "..."}``: the first frame of first-frame authentication."""

    token: str


class FrameError(Exception):
    """A frame could not be decoded: ``code`` (see the module docstring) and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def encode_frame(frame: object) -> str:
    """Encode a frame once as JSON text; send the string to many sessions (``send_encoded``)."""
    return _encoder.encode(frame).decode()


class FrameDecoder(Generic[T]):
    """Decode JSON frames into ``frame_type`` (a tagged Struct or a union of them).

    Build one per union and reuse it for every frame of every connection.

    Example::

        decoder = FrameDecoder(Join | Leave | Publish)
        frame = decoder.decode('{"type": "room.join", "room": "lobby"}')
    """

    def __init__(self, frame_type: type[T] | Any) -> None:
        self.frame_type = frame_type
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(frame_type)
        self.tag_field, self.tags = _tags_of(frame_type)
        self._tag_only: msgspec.json.Decoder[Any] | None = None
        if self.tag_field is not None:
            probe = msgspec.defstruct("_TagProbe", [(self.tag_field, object, None)])
            self._tag_only = msgspec.json.Decoder(probe)

    def __repr__(self) -> str:
        return f"FrameDecoder(tags={sorted(self.tags)!r})"

    def decode(self, data: str | bytes) -> T:
        """Decode one frame.

        Raises:
            FrameError: ``malformed_frame``, ``unknown_type`` or ``validation_error``.
        """
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise self._explain(data, exc) from None
        except msgspec.DecodeError as exc:
            raise FrameError("malformed_frame", f"frame is not valid JSON: {exc}") from None
        except UnicodeDecodeError as exc:  # a binary frame with invalid UTF-8 in a string
            problem = f"a string holds invalid UTF-8 (byte 0x{exc.object[exc.start]:02x})"
            raise FrameError("malformed_frame", f"frame is not valid JSON: {problem}") from None

    def _explain(self, data: str | bytes, exc: msgspec.ValidationError) -> FrameError:
        if self._tag_only is not None and self.tag_field is not None:
            try:
                tag = getattr(self._tag_only.decode(data), self.tag_field)
            except msgspec.MsgspecError:
                tag = None  # not an object: msgspec's own message says so
            if isinstance(tag, str) and tag not in self.tags:
                shown = tag if len(tag) <= 64 else f"{tag[:64]}..."
                return FrameError(
                    "unknown_type",
                    f"unknown frame type {shown!r}; expected one of {sorted(self.tags)}",
                )
        return FrameError("validation_error", str(exc))


def _tags_of(frame_type: object) -> tuple[str | None, frozenset[str]]:
    """The tag field and the tags of a tagged Struct or a union of them."""
    origin = typing.get_origin(frame_type)
    members = typing.get_args(frame_type) if origin in (Union, types.UnionType) else (frame_type,)
    tag_field: str | None = None
    tags: set[str] = set()
    for member in members:
        config = getattr(member, "__struct_config__", None)
        if config is None or not isinstance(config.tag, str):
            continue
        tag_field = config.tag_field
        tags.add(config.tag)
    return tag_field, frozenset(tags)
