"""Cache key, pattern, tag and TTL validation; the key layout; Redis-exact glob matching."""

from __future__ import annotations

import math
import random

import pytest
import redis.asyncio

from actors.cache._keys import (
    MAX_TTL_SECONDS,
    CacheKeyError,
    KeySpace,
    compile_glob,
    short_repr,
    validate_key,
    validate_pattern,
    validate_tag,
    validate_ttl,
)
from runtime import Rejected

# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "cache key '' is empty; use 1 to 256 characters"),
        (
            "k" * 257,
            f"cache key {short_repr('k' * 257)} is 257 characters long; the limit is 256",
        ),
        (
            "user 1",
            "cache key 'user 1' contains the whitespace or control character ' ' at index 4; "
            "remove it",
        ),
        (
            "a\nb",
            "cache key 'a\\nb' contains the whitespace or control character '\\n' at index 1; "
            "remove it",
        ),
        (
            "a\x7f",
            "cache key 'a\\x7f' contains the whitespace or control character '\\x7f' at index 1; "
            "remove it",
        ),
        (
            "x\ud800",
            "cache key 'x\\ud800' contains the whitespace or control character '\\ud800' "
            "at index 1; remove it",
        ),
        (
            "user:*",
            "cache key 'user:*' contains the glob metacharacter '*' at index 5; "
            "none of * ? [ ] \\ may appear in a cache key",
        ),
        (
            "a[1]",
            "cache key 'a[1]' contains the glob metacharacter '[' at index 1; "
            "none of * ? [ ] \\ may appear in a cache key",
        ),
        (
            "back\\slash",
            "cache key 'back\\\\slash' contains the glob metacharacter '\\\\' at index 4; "
            "none of * ? [ ] \\ may appear in a cache key",
        ),
        (42, "cache key must be a string, got int 42"),
    ],
)
def test_invalid_keys_are_rejected_with_exact_messages(key: object, message: str) -> None:
    with pytest.raises(CacheKeyError) as caught:
        validate_key(key)
    assert isinstance(caught.value, Rejected)
    assert caught.value.code == "invalid_key"
    assert caught.value.message == message
    assert caught.value.value == key
    assert str(caught.value) == f"invalid_key: {message}"


@pytest.mark.parametrize("key", ["a", "user:1", "k" * 256, "café:ü", "a-b_c.d/e@f!#%^&()=+~"])
def test_valid_keys_pass(key: str) -> None:
    assert validate_key(key) == key


def test_short_repr_truncates_to_80_characters() -> None:
    assert short_repr("abc") == "'abc'"
    cut = short_repr("x" * 100)
    assert len(cut) == 80
    assert cut == "'" + "x" * 76 + "..."


# -- tags and patterns ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("", "cache tag '' is empty; use 1 to 128 characters"),
        ("t" * 129, f"cache tag {short_repr('t' * 129)} is 129 characters long; the limit is 128"),
        (
            "a\tb",
            "cache tag 'a\\tb' contains the whitespace or control character '\\t' at index 1; "
            "remove it",
        ),
        (
            "team?",
            "cache tag 'team?' contains the glob metacharacter '?' at index 4; "
            "none of * ? [ ] \\ may appear in a cache tag",
        ),
    ],
)
def test_invalid_tags_are_rejected_with_exact_messages(tag: str, message: str) -> None:
    with pytest.raises(CacheKeyError) as caught:
        validate_tag(tag)
    assert (caught.value.code, caught.value.message) == ("invalid_tag", message)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "cache pattern '' is empty; use '*' to match every key"),
        (
            "p" * 257,
            f"cache pattern {short_repr('p' * 257)} is 257 characters long; the limit is 256",
        ),
        (
            "user: *",
            "cache pattern 'user: *' contains the whitespace or control character ' ' "
            "at index 5; remove it",
        ),
        (
            "user:[abc",
            "cache pattern 'user:[abc' has an unclosed '[' at index 5; close the class "
            "with ']' or escape the bracket as '\\['",
        ),
        (
            # Redis reads "a-]" as a range, so the class below is not closed.
            "x[a-]",
            "cache pattern 'x[a-]' has an unclosed '[' at index 1; close the class "
            "with ']' or escape the bracket as '\\['",
        ),
        (
            "user:[!a]",
            "cache pattern 'user:[!a]' opens a class with '!' at index 5; Redis negates "
            "with '^', so write '[^...]', or '[\\!...]' for a literal '!'",
        ),
        (
            "caf[éè]",
            "cache pattern 'caf[éè]' has the non-ASCII character 'é' in the class at index 3; "
            "Redis matches a class against a single byte, so use '?' or '*' instead",
        ),
        (
            "user:\\",
            "cache pattern 'user:\\\\' ends with a lone '\\' at index 5; escape the next "
            "character with it, or write '\\\\' for a backslash",
        ),
    ],
)
def test_invalid_patterns_are_rejected_with_exact_messages(pattern: str, message: str) -> None:
    with pytest.raises(CacheKeyError) as caught:
        validate_pattern(pattern)
    assert (caught.value.code, caught.value.message) == ("invalid_pattern", message)


@pytest.mark.parametrize(
    "pattern",
    ["*", "user:*", "user:?", "user:[a-c]", "user:[^a-c]*", "[\\!a]", "a\\*b", "[]x]", "é*"],
)
def test_valid_patterns_pass(pattern: str) -> None:
    assert validate_pattern(pattern) == pattern


# -- TTLs -----------------------------------------------------------------------------------


def test_validate_ttl_uses_the_default_for_none() -> None:
    assert validate_ttl(None, 60.0) == 60.0
    assert validate_ttl(5, 60.0) == 5.0
    assert validate_ttl(MAX_TTL_SECONDS, 60.0) == MAX_TTL_SECONDS


@pytest.mark.parametrize(
    ("ttl", "shown"),
    [
        (0, "0"),
        (-1.5, "-1.5"),
        (math.inf, "inf"),
        (math.nan, "nan"),
        (MAX_TTL_SECONDS + 1, "2592001.0"),
        (True, "True"),
        ("10", "'10'"),
    ],
)
def test_invalid_ttls_are_rejected_naming_the_value(ttl: object, shown: str) -> None:
    with pytest.raises(CacheKeyError) as caught:
        validate_ttl(ttl, 60.0)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_ttl"
    assert caught.value.message == (
        f"ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got {shown}"
    )


def test_an_invalid_default_ttl_is_rejected_too() -> None:
    with pytest.raises(CacheKeyError) as caught:
        validate_ttl(None, 0.0)
    assert caught.value.message.endswith(", got 0.0")


# -- the key space --------------------------------------------------------------------------


def test_key_space_layout() -> None:
    space = KeySpace("sy")
    assert space.prefix == "sy"
    assert space.namespace == "sy:cache:"
    assert space.full_key("user:1") == "sy:cache:user:1"
    assert space.full_key("1", sub_prefix="tenant") == "sy:cache:tenant:1"
    assert space.full_pattern("user:*") == "sy:cache:user:*"
    assert space.full_pattern("*", sub_prefix="tenant") == "sy:cache:tenant:*"
    assert space.tag_key("team-a") == "sy:cache-tag:team-a"
    assert space.lock_key("sy:cache:user:1") == "sy:cache-lock:user:1"
    assert space.user_key("sy:cache:user:1") == "user:1"
    assert space.user_key("sy:cache:tenant:1", sub_prefix="tenant") == "1"
    assert repr(space) == "KeySpace('sy')"
    assert KeySpace().full_key("k") == "switchyard:cache:k"


def test_key_space_validates_what_it_builds() -> None:
    space = KeySpace()
    with pytest.raises(CacheKeyError) as caught:
        space.full_key("a b")
    assert caught.value.code == "invalid_key"
    with pytest.raises(CacheKeyError) as caught:
        space.full_key("k", sub_prefix="t*")
    assert caught.value.code == "invalid_key"
    assert caught.value.message == (
        "cache sub-prefix 't*' contains the glob metacharacter '*' at index 1; "
        "none of * ? [ ] \\ may appear in a cache sub-prefix"
    )
    with pytest.raises(CacheKeyError) as caught:
        space.full_pattern("[x")
    assert caught.value.code == "invalid_pattern"
    with pytest.raises(CacheKeyError) as caught:
        space.tag_key("")
    assert caught.value.code == "invalid_tag"


def test_user_key_refuses_keys_outside_the_namespace() -> None:
    space = KeySpace("sy")
    for full_key in ("other:cache:k", "sy:cache:", "sy:cache-tag:t"):
        with pytest.raises(ValueError) as caught:
            space.user_key(full_key)
        assert str(caught.value) == (
            f"{full_key!r} is not a key of the cache namespace 'sy:cache:'"
        )
    with pytest.raises(ValueError) as caught:
        space.lock_key("sy:cache-tag:t")
    assert str(caught.value) == "'sy:cache-tag:t' is not a key of the cache namespace 'sy:cache:'"


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("", "prefix '' is empty; use 1 to 64 characters"),
        (
            "a b",
            "prefix 'a b' contains the whitespace or control character ' ' at index 1; remove it",
        ),
        (
            "app*",
            "prefix 'app*' contains the glob metacharacter '*' at index 3; "
            "none of * ? [ ] \\ may appear in a prefix",
        ),
    ],
)
def test_key_space_refuses_a_bad_prefix(prefix: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        KeySpace(prefix)
    assert str(caught.value) == f"invalid KeySpace prefix: {problem}"


def test_tag_and_lock_keys_are_outside_the_entry_namespace() -> None:
    space = KeySpace("sy")
    everything = space.matcher(space.full_pattern("*"))
    assert everything(space.full_key("k"))
    assert not everything(space.tag_key("t"))
    assert not everything(space.lock_key(space.full_key("k")))


# -- Redis globs ----------------------------------------------------------------------------

# (pattern, key, whether Redis matches): checked against real Redis below.
GLOB_TABLE: list[tuple[str, str, bool]] = [
    ("user:*", "user:1", True),
    ("user:*", "user:", True),  # "*" may match nothing after a prefix
    ("user:*", "users:1", False),
    ("*", "anything", True),
    ("*", "", False),  # Redis: '*' does not match the empty string
    ("", "", True),
    ("user:?", "user:1", True),
    ("user:?", "user:12", False),
    ("user:?", "user:é", False),  # '?' is one byte; 'é' is two
    ("user:??", "user:é", True),
    ("user:[a-c]", "user:b", True),
    ("user:[a-c]", "user:d", False),
    ("user:[c-a]", "user:b", True),  # reversed ranges are swapped
    ("user:[^a-c]", "user:d", True),
    ("user:[^a-c]", "user:a", False),
    ("user:[!a]", "user:!", True),  # '!' does not negate in Redis
    ("user:[!a]", "user:b", False),
    ("user:[abc]x", "user:cx", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("a[\\]]b", "a]b", True),
    ("[]x]", "x]", False),  # '[]' is an empty class that matches nothing
    ("[^]x", "yx", True),
    ("x[a-]b]", "x]", True),  # 'a-]' is a range, then 'b', then ']' closes
    ("x[a-]b]", "xb", True),
    ("x[a-]b]", "xc", False),
    ("ab[", "ab", False),  # an unclosed class still needs a character
    ("ab[", "abx", False),
    ("ab[x", "abx", True),  # and is closed at the end of the pattern
    ("a\\", "a\\", True),  # a trailing backslash is a literal
    ("*a*b*", "xxaxxbxx", True),
    ("*a*b", "ba", False),
    ("a**b", "ab", True),
    ("*[0-9]", "room:7", True),
    ("é*", "éclair", True),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), GLOB_TABLE)
def test_compile_glob_follows_redis_semantics(pattern: str, key: str, expected: bool) -> None:
    assert compile_glob(pattern)(key) is expected


def test_compile_glob_is_linear_on_hostile_patterns() -> None:
    # A backtracking regex would need ~C(300, 100) steps here; ours answers at once.
    assert compile_glob("*a" * 100 + "*b")("a" * 300) is False
    assert compile_glob("*a" * 100 + "*b")("a" * 300 + "b") is True


def _fuzz_cases(seed: int, count: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    alphabet = "ab-^]\\[*?!zé:"
    keys = sorted({"".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(300)})
    patterns = ["".join(rng.choices(alphabet, k=rng.randint(1, 7))) for _ in range(count)]
    return keys, patterns


@pytest.mark.redis
async def test_compile_glob_agrees_with_redis_scan_match(redis_url: str) -> None:
    """The table above and 1000 random patterns, matched by real Redis and by us."""
    fuzz_keys, fuzz_patterns = _fuzz_cases(seed=20240601, count=1000)
    table_keys = [key for _, key, _ in GLOB_TABLE if key]
    keys = sorted({*fuzz_keys, *table_keys})
    patterns = [pattern for pattern, _, _ in GLOB_TABLE if pattern] + fuzz_patterns
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.mset(dict.fromkeys(keys, b"1"))
        disagreements = []
        for pattern in patterns:
            found = {k.decode() async for k in client.scan_iter(match=pattern, count=1000)}
            matches = compile_glob(pattern)
            ours = {key for key in keys if matches(key)}
            if found != ours:
                disagreements.append((pattern, sorted(found ^ ours)))
        assert disagreements == []
        for pattern, key, expected in GLOB_TABLE:  # the table's expectations are Redis's
            if key:
                assert (key.encode() in {k async for k in client.scan_iter(match=pattern)}) is (
                    expected
                ), pattern
    finally:
        await client.aclose()
