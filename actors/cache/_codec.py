"""Cache values on the wire: raw bytes or msgpack, in a :class:`StoredEntry` envelope in L2.

``bytes`` values are stored untouched (encoding :data:`ENCODING_RAW`); any
other value is msgpack-encoded with msgspec (:data:`ENCODING_MSGPACK`), so
Structs, dicts, lists, strings and numbers round-trip, and a target type turns
the payload back into a typed object. One module-level encoder and decoder
serve every call; typed decoders are cached per type (bounded).

The envelope stored in Redis is a msgpack array (``array_like``)::

    [payload, encoding, fresh_until, stale_until, tags]

New fields may only be appended, with defaults, so older nodes keep decoding
it. :func:`unpack_entry` never crashes on foreign bytes: anything that is not
an envelope raises ``Rejected("undecodable_value")``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Final

import msgspec

from runtime import Rejected

from ._keys import short_repr

__all__ = [
    "ENCODING_MSGPACK",
    "ENCODING_RAW",
    "StoredEntry",
    "decode_value",
    "encode_value",
    "pack_entry",
    "pack_fields",
    "unpack_entry",
]

ENCODING_RAW: Final = 0
ENCODING_MSGPACK: Final = 1

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder()


class StoredEntry(msgspec.Struct, frozen=True, array_like=True):
    """One cache entry as stored in L2.

    Attributes:
        payload: the encoded value (see :func:`encode_value`).
        encoding: :data:`ENCODING_RAW` (0) or :data:`ENCODING_MSGPACK` (1).
        fresh_until: wall-clock epoch seconds; from then on the entry is stale.
        stale_until: wall-clock epoch seconds; from then on the entry is gone.
            Equals ``fresh_until`` when there is no stale window.
        tags: the entry's tags (user tags, not tag keys).
    """

    payload: bytes
    encoding: int
    fresh_until: float
    stale_until: float
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.encoding not in (ENCODING_RAW, ENCODING_MSGPACK):
            raise ValueError(
                f"StoredEntry encoding must be {ENCODING_RAW} (raw bytes) or "
                f"{ENCODING_MSGPACK} (msgpack), got {self.encoding!r}"
            )
        if not (math.isfinite(self.fresh_until) and math.isfinite(self.stale_until)):
            raise ValueError(
                f"StoredEntry deadlines must be finite, got fresh_until={self.fresh_until!r} "
                f"and stale_until={self.stale_until!r}"
            )
        if self.stale_until < self.fresh_until:
            raise ValueError(
                f"StoredEntry stale_until ({self.stale_until!r}) is before "
                f"fresh_until ({self.fresh_until!r})"
            )

    def is_fresh(self, now: float) -> bool:
        """Whether the entry is fresh at wall-clock time ``now`` (``now < fresh_until``)."""
        return now < self.fresh_until

    def is_gone(self, now: float) -> bool:
        """Whether the entry is past its stale window at ``now`` (``now >= stale_until``)."""
        return now >= self.stale_until


_entry_encoder: Final = msgspec.msgpack.Encoder()
_entry_decoder: Final = msgspec.msgpack.Decoder(StoredEntry)


def encode_value(value: object, *, max_value_bytes: int) -> tuple[bytes, int]:
    """Encode a cache value: ``(payload, encoding)``.

    ``bytes`` pass through untouched (:data:`ENCODING_RAW`); anything else is
    msgpack (:data:`ENCODING_MSGPACK`).

    Raises:
        Rejected: ``unencodable_value`` if msgpack cannot encode the value (the
            message names the type), ``value_too_large`` if the payload is
            longer than ``max_value_bytes``.
        ValueError: ``max_value_bytes`` is not positive.
    """
    if max_value_bytes <= 0:
        raise ValueError(f"max_value_bytes must be > 0, got {max_value_bytes!r}")
    if isinstance(value, bytes):
        payload, encoding = bytes(value), ENCODING_RAW
    else:
        try:
            payload = _encoder.encode(value)
        except (TypeError, OverflowError, RecursionError) as exc:
            raise Rejected(
                "unencodable_value",
                f"cannot encode a value of type {type(value).__qualname__} as msgpack: {exc}",
            ) from exc
        encoding = ENCODING_MSGPACK
    if len(payload) > max_value_bytes:
        size = "is" if encoding == ENCODING_RAW else "encodes to"
        raise Rejected(
            "value_too_large",
            f"the value ({type(value).__qualname__}) {size} {len(payload)} bytes; "
            f"the limit is {max_value_bytes} bytes (max_value_bytes)",
        )
    return payload, encoding


@functools.lru_cache(maxsize=128)
def _typed_decoder(target: Any) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(target)


def _decoder_for(target: Any) -> msgspec.msgpack.Decoder[Any]:
    try:
        hash(target)
    except TypeError:  # an unhashable type (rare) cannot be cached: build a decoder for this call
        return msgspec.msgpack.Decoder(target)
    return _typed_decoder(target)


def _type_name(target: Any) -> str:
    return getattr(target, "__qualname__", None) or repr(target)


def decode_value(payload: bytes, encoding: int, type: Any = None) -> Any:
    """Decode a payload made by :func:`encode_value`.

    Args:
        payload: the encoded value.
        encoding: :data:`ENCODING_RAW` or :data:`ENCODING_MSGPACK`.
        type: optional target type (a Struct, ``dict[str, int]``, ...): the value is
            decoded and validated as that type, like ``msgspec.msgpack.decode(type=...)``.
            Raw payloads convert only to ``bytes``-compatible types.

    Raises:
        Rejected: ``undecodable_value`` for corrupt data, an unknown encoding, or a
            value that does not match ``type``.
    """
    try:
        if encoding == ENCODING_RAW:
            return payload if type is None else msgspec.convert(payload, type)
        if encoding == ENCODING_MSGPACK:
            if type is None:
                return _decoder.decode(payload)
            return _decoder_for(type).decode(payload)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        target = "" if type is None else f" as {_type_name(type)}"
        raise Rejected(
            "undecodable_value",
            f"cannot decode the cached value {short_repr(payload)} "
            f"({len(payload)} bytes, encoding {encoding}){target}: {exc}",
        ) from exc
    raise Rejected(
        "undecodable_value",
        f"unknown value encoding {encoding!r}; expected {ENCODING_RAW} (raw bytes) "
        f"or {ENCODING_MSGPACK} (msgpack)",
    )


def pack_entry(entry: StoredEntry) -> bytes:
    """The msgpack bytes of ``entry``, as stored in L2."""
    return _entry_encoder.encode(entry)


def pack_fields(
    payload: bytes, encoding: int, fresh_until: float, stale_until: float, tags: tuple[str, ...]
) -> bytes:
    """``pack_entry(StoredEntry(...))`` of already valid fields, without building the entry.

    (An ``array_like`` Struct encodes as the array of its fields.) The write
    path's deadlines are finite and ordered by construction.
    """
    return _entry_encoder.encode((payload, encoding, fresh_until, stale_until, tags))


def unpack_entry(blob: bytes) -> StoredEntry:
    """Decode an envelope read from L2; ``Rejected("undecodable_value")`` for anything else."""
    try:
        return _entry_decoder.decode(blob)
    except msgspec.DecodeError as exc:
        raise Rejected(
            "undecodable_value",
            f"the L2 blob {short_repr(blob)} ({len(blob)} bytes) is not a cache entry: {exc}",
        ) from exc
