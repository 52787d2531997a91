"""Cache values: raw bytes or msgpack, size limits, and the StoredEntry envelope."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from actors.cache._codec import (
    ENCODING_MSGPACK,
    ENCODING_RAW,
    StoredEntry,
    decode_value,
    encode_value,
    pack_entry,
    unpack_entry,
)
from actors.cache._keys import short_repr
from runtime import Rejected

LIMIT = 1024


class Profile(msgspec.Struct, frozen=True):
    name: str
    age: int


def test_bytes_pass_through_untouched() -> None:
    payload, encoding = encode_value(b"\x00\xffraw", max_value_bytes=LIMIT)
    assert (payload, encoding) == (b"\x00\xffraw", ENCODING_RAW)
    assert decode_value(payload, encoding) == b"\x00\xffraw"
    assert decode_value(payload, encoding, type=bytes) == b"\x00\xffraw"


@pytest.mark.parametrize(
    "value",
    [{"a": 1, "b": [1, 2.5, None]}, [1, "two", True], "text", 42, -7, 3.5, None, bytearray(b"x")],
)
def test_other_values_round_trip_through_msgpack(value: object) -> None:
    payload, encoding = encode_value(value, max_value_bytes=LIMIT)
    assert encoding == ENCODING_MSGPACK
    assert payload == msgspec.msgpack.encode(value)
    decoded = decode_value(payload, encoding)
    assert decoded == (bytes(value) if isinstance(value, bytearray) else value)


def test_structs_round_trip_with_a_target_type() -> None:
    payload, encoding = encode_value(Profile(name="ada", age=36), max_value_bytes=LIMIT)
    assert encoding == ENCODING_MSGPACK
    assert decode_value(payload, encoding) == {"name": "ada", "age": 36}
    assert decode_value(payload, encoding, type=Profile) == Profile(name="ada", age=36)
    assert decode_value(*encode_value([1, 2], max_value_bytes=LIMIT), type=list[int]) == [1, 2]


def test_a_value_past_the_limit_is_rejected() -> None:
    with pytest.raises(Rejected) as caught:
        encode_value(b"x" * 11, max_value_bytes=10)
    assert caught.value.code == "value_too_large"
    assert caught.value.message == (
        "the value (bytes) is 11 bytes; the limit is 10 bytes (max_value_bytes)"
    )
    with pytest.raises(Rejected) as caught:
        encode_value({"k": "v" * 20}, max_value_bytes=10)
    assert caught.value.message == (
        "the value (dict) encodes to 24 bytes; the limit is 10 bytes (max_value_bytes)"
    )
    assert encode_value(b"x" * 10, max_value_bytes=10) == (b"x" * 10, ENCODING_RAW)


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^max_value_bytes must be > 0, got 0$"):
        encode_value(b"x", max_value_bytes=0)


def test_unencodable_values_are_rejected_naming_the_type() -> None:
    with pytest.raises(Rejected) as caught:
        encode_value(object(), max_value_bytes=LIMIT)
    assert caught.value.code == "unencodable_value"
    assert caught.value.message == (
        "cannot encode a value of type object as msgpack: "
        "Encoding objects of type object is unsupported"
    )
    with pytest.raises(Rejected) as caught:
        encode_value({"when": random.Random()}, max_value_bytes=LIMIT)
    assert caught.value.message == (
        "cannot encode a value of type dict as msgpack: "
        "Encoding objects of type Random is unsupported"
    )
    with pytest.raises(Rejected) as caught:
        encode_value(2**70, max_value_bytes=LIMIT)
    assert caught.value.message == (
        "cannot encode a value of type int as msgpack: can't serialize ints < -2**63 or > 2**64 - 1"
    )
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(Rejected) as caught:
        encode_value(cyclic, max_value_bytes=LIMIT)
    assert caught.value.code == "unencodable_value"


def test_corrupt_payloads_are_rejected() -> None:
    with pytest.raises(Rejected) as caught:
        decode_value(b"\xc1", ENCODING_MSGPACK)
    assert caught.value.code == "undecodable_value"
    assert caught.value.message == (
        "cannot decode the cached value b'\\xc1' (1 bytes, encoding 1): "
        "MessagePack data is malformed: invalid opcode '\\xc1' (byte 0)"
    )
    payload, encoding = encode_value({"name": "ada"}, max_value_bytes=LIMIT)
    with pytest.raises(Rejected) as caught:
        decode_value(payload, encoding, type=Profile)
    assert caught.value.message == (
        f"cannot decode the cached value {payload!r} ({len(payload)} bytes, encoding 1) "
        "as Profile: Object missing required field `age`"
    )
    with pytest.raises(Rejected) as caught:
        decode_value(b"raw", ENCODING_RAW, type=int)
    assert caught.value.message == (
        "cannot decode the cached value b'raw' (3 bytes, encoding 0) as int: "
        "Expected `int`, got `bytes`"
    )


def test_an_unknown_encoding_is_rejected() -> None:
    with pytest.raises(Rejected) as caught:
        decode_value(b"x", 7)
    assert (caught.value.code, caught.value.message) == (
        "undecodable_value",
        "unknown value encoding 7; expected 0 (raw bytes) or 1 (msgpack)",
    )


# -- the envelope ---------------------------------------------------------------------------


def test_stored_entry_round_trips_as_a_msgpack_array() -> None:
    entry = StoredEntry(
        payload=b"v", encoding=ENCODING_RAW, fresh_until=10.0, stale_until=15.0, tags=("a", "b")
    )
    blob = pack_entry(entry)
    assert msgspec.msgpack.decode(blob) == [b"v", 0, 10.0, 15.0, ["a", "b"]]
    assert unpack_entry(blob) == entry
    plain = StoredEntry(payload=b"", encoding=ENCODING_MSGPACK, fresh_until=1.0, stale_until=1.0)
    assert unpack_entry(pack_entry(plain)) == plain
    assert plain.tags == ()
    # An envelope written before ``tags`` existed (or by a node that omits it) still decodes.
    assert unpack_entry(msgspec.msgpack.encode([b"v", 1, 1.0, 2.0])).tags == ()


def test_stored_entry_freshness() -> None:
    entry = StoredEntry(payload=b"v", encoding=0, fresh_until=10.0, stale_until=15.0)
    assert entry.is_fresh(9.9) and not entry.is_gone(9.9)
    assert not entry.is_fresh(10.0) and not entry.is_gone(14.9)
    assert entry.is_gone(15.0)


def test_stored_entry_refuses_inconsistent_fields() -> None:
    with pytest.raises(
        ValueError, match=r"^StoredEntry encoding must be 0 \(raw bytes\) or 1 \(msgpack\), got 5$"
    ):
        StoredEntry(payload=b"", encoding=5, fresh_until=1.0, stale_until=1.0)
    with pytest.raises(
        ValueError, match=r"^StoredEntry stale_until \(1.0\) is before fresh_until \(2.0\)$"
    ):
        StoredEntry(payload=b"", encoding=0, fresh_until=2.0, stale_until=1.0)


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "Input data was truncated"),
        (b"plain text", "Expected `array`, got `int`"),  # 'p' is a msgpack fixint
        (msgspec.msgpack.encode({"a": 1}), "Expected `array`, got `object`"),
        (msgspec.msgpack.encode([b"v", 1]), "Expected `array` of at least length 4, got 2"),
        (
            msgspec.msgpack.encode([b"v", 9, 1.0, 1.0]),
            "StoredEntry encoding must be 0 (raw bytes) or 1 (msgpack), got 9",
        ),
    ],
)
def test_unpack_entry_rejects_foreign_bytes(blob: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        unpack_entry(blob)
    assert caught.value.code == "undecodable_value"
    assert caught.value.message == (
        f"the L2 blob {short_repr(blob)} ({len(blob)} bytes) is not a cache entry: {reason}"
    )


def test_unpack_entry_never_crashes_on_random_bytes() -> None:
    rng = random.Random(1234)
    good = pack_entry(StoredEntry(payload=b"abc", encoding=0, fresh_until=1.0, stale_until=2.0))
    for _ in range(2000):
        blob = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        noise = rng.randbytes(rng.randint(0, 40))
        for candidate in (bytes(blob), noise):
            try:
                unpack_entry(candidate)
            except Rejected as exc:
                assert exc.code == "undecodable_value"
