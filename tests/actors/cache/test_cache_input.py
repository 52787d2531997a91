"""The cache through its Python API: invalid input is rejected with a code and changes nothing.

Most tests run three times: on L1 alone (``l1``), on L1 over a memory L2
(``memory``) and on L1 over a real Redis (``redis``, marked ``redis``); tests
that need an L2 run on the last two. Time moves only through the
:class:`ManualClock`; concurrency is synchronised on events and on
``anyio.wait_all_tasks_blocked()``, never on sleeps.

Where a test needs a second node, ``env.running_nodes(2)`` starts one on the
same L2 (its L1 starts empty, so what it reads comes from L2).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from actors.cache import CacheSettings
from runtime import Rejected

from .conftest import CacheEnv, Loader

MISSING: Any = object()


REJECTIONS = [
    pytest.param(
        lambda c: c.get("a b"),
        "invalid_key",
        "cache key 'a b' contains the whitespace or control character ' ' at index 1; remove it",
        id="space-in-key",
    ),
    pytest.param(
        lambda c: c.set("", 1),
        "invalid_key",
        "cache key '' is empty; use 1 to 256 characters",
        id="empty-key",
    ),
    pytest.param(
        lambda c: c.set("user:*", 1),
        "invalid_key",
        "cache key 'user:*' contains the glob metacharacter '*' at index 5; "
        "none of * ? [ ] \\ may appear in a cache key",
        id="glob-in-key",
    ),
    pytest.param(
        lambda c: c.get("x" * 257),
        "invalid_key",
        f"cache key '{'x' * 76}... is 257 characters long; the limit is 256",
        id="long-key",
    ),
    pytest.param(
        lambda c: c.exists(7),
        "invalid_key",
        "cache key must be a string, got int 7",
        id="int-key",
    ),
    pytest.param(
        lambda c: c.get_many(["ok", "a\tb"]),
        "invalid_key",
        "cache key 'a\\tb' contains the whitespace or control character '\\t' at index 1; "
        "remove it",
        id="tab-in-get-many",
    ),
    pytest.param(
        lambda c: c.get("k", prefix="a b"),
        "invalid_key",
        "cache sub-prefix 'a b' contains the whitespace or control character ' ' at index 1; "
        "remove it",
        id="bad-sub-prefix",
    ),
    pytest.param(
        lambda c: c.set("k", 1, ttl_seconds=0),
        "invalid_ttl",
        "ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got 0",
        id="zero-ttl",
    ),
    pytest.param(
        lambda c: c.set("k", 1, ttl_seconds=math.nan),
        "invalid_ttl",
        "ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got nan",
        id="nan-ttl",
    ),
    pytest.param(
        lambda c: c.set("k", 1, ttl_seconds=31 * 24 * 3600),
        "invalid_ttl",
        "ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got 2678400",
        id="ttl-over-30-days",
    ),
    pytest.param(
        lambda c: c.get_or_set("k", Loader(), ttl_seconds=-1),
        "invalid_ttl",
        "ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got -1",
        id="negative-ttl-get-or-set",
    ),
    pytest.param(
        lambda c: c.set("k", 1, tags=["a b"]),
        "invalid_tag",
        "cache tag 'a b' contains the whitespace or control character ' ' at index 1; remove it",
        id="bad-tag",
    ),
    pytest.param(
        lambda c: c.invalidate_tag("t?"),
        "invalid_tag",
        "cache tag 't?' contains the glob metacharacter '?' at index 1; "
        "none of * ? [ ] \\ may appear in a cache tag",
        id="glob-in-tag",
    ),
    pytest.param(
        lambda c: c.invalidate_pattern("user:["),
        "invalid_pattern",
        "cache pattern 'user:[' has an unclosed '[' at index 5; "
        "close the class with ']' or escape the bracket as '\\['",
        id="unclosed-class",
    ),
    pytest.param(
        lambda c: c.invalidate_pattern("user:[!a]"),
        "invalid_pattern",
        "cache pattern 'user:[!a]' opens a class with '!' at index 5; Redis negates with '^', "
        "so write '[^...]', or '[\\!...]' for a literal '!'",
        id="bang-class",
    ),
    pytest.param(
        lambda c: c.invalidate_pattern(""),
        "invalid_pattern",
        "cache pattern '' is empty; use '*' to match every key",
        id="empty-pattern",
    ),
    pytest.param(
        lambda c: c.set("k", b"x" * 65),
        "value_too_large",
        "the value (bytes) is 65 bytes; the limit is 64 bytes (max_value_bytes)",
        id="oversize-bytes",
    ),
    pytest.param(
        lambda c: c.set("k", "x" * 64),
        "value_too_large",
        "the value (str) encodes to 66 bytes; the limit is 64 bytes (max_value_bytes)",
        id="oversize-object",
    ),
    pytest.param(
        lambda c: c.get_or_set("k", Loader(b"x" * 65)),
        "value_too_large",
        "the value (bytes) is 65 bytes; the limit is 64 bytes (max_value_bytes)",
        id="oversize-loaded-value",
    ),
    pytest.param(
        lambda c: c.set("k", object()),
        "unencodable_value",
        "cannot encode a value of type object as msgpack: "
        "Encoding objects of type object is unsupported",
        id="unencodable",
    ),
]


@pytest.mark.parametrize(("call", "code", "message"), REJECTIONS)
async def test_invalid_input_is_rejected_and_changes_nothing(
    env: CacheEnv, call: Any, code: str, message: str
) -> None:
    async with env.running_cache(settings=CacheSettings(max_value_bytes=64)) as cache:
        await cache.set("keep", "kept", tags=["t"])
        with pytest.raises(Rejected) as caught:
            await call(cache)
        assert (caught.value.code, caught.value.message) == (code, message)
        assert str(caught.value) == f"{code}: {message}"
        assert await cache.get("keep") == "kept"
        assert await cache.get("k", default=MISSING) is MISSING
        stats = await cache.statistics()
        assert (stats.l1_entries, stats.writes) == (1, 1 if env.has_l2 else 0)


async def test_a_key_of_an_unhashable_type_is_rejected_like_any_invalid_key(
    env: CacheEnv,
) -> None:
    # Regression (_facade.py, Cache._full): the memo lookup used to hash (key, prefix) before
    # the key was validated, so a list key raised a bare TypeError; now it is invalid_key.
    async with env.running_cache() as cache:
        with pytest.raises(Rejected) as caught:
            await cache.get(["a"])  # type: ignore[arg-type]
        assert (caught.value.code, caught.value.message) == (
            "invalid_key",
            "cache key must be a string, got list ['a']",
        )


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        pytest.param(lambda c: c.set("k", 1, stale_seconds=-1), "stale_seconds", id="stale"),
        pytest.param(
            lambda c: c.get_or_set("k", Loader(), stale_seconds=math.inf),
            "stale_seconds",
            id="stale-get-or-set",
        ),
    ],
)
async def test_a_bad_stale_seconds_is_rejected_naming_that_argument(
    env: CacheEnv, call: Any, argument: str
) -> None:
    # Regression (stale_seconds validation): the message used to say "ttl_seconds must be
    # ...", telling the caller to fix the wrong argument; now it names the argument given.
    async with env.running_cache() as cache:
        with pytest.raises(Rejected) as caught:
            await call(cache)
        assert caught.value.code == "invalid_ttl"
        assert caught.value.message.startswith(f"{argument} must be"), caught.value.message


async def test_a_refresh_seconds_of_zero_is_rejected_naming_that_argument(env: CacheEnv) -> None:
    # Regression (_facade.py, Cache.warm): the same, for refresh_seconds; now it is named.
    async with env.running_cache() as cache:
        with pytest.raises(Rejected) as caught:
            cache.warm("k", Loader(), refresh_seconds=0)
        assert caught.value.code == "invalid_ttl"
        assert caught.value.message.startswith("refresh_seconds must be"), caught.value.message


async def test_tags_given_as_one_string_are_not_split_into_letters(env: CacheEnv) -> None:
    # Regression (tag validation in set and get_or_set): ``tuple(... for tag in tags)`` used
    # to iterate a str, so tags="users" tagged the entry "u", "s", "e", "r", "s", hidden from
    # L1Store and RedisL2, which refuse a bare string; now a bare string is invalid_tag.
    async with env.running_cache() as cache:
        try:
            await cache.set("k", 1, tags="users")
        except (TypeError, Rejected):
            return  # refusing a bare string is fine too
        await cache.invalidate_tag("users")
        assert await cache.get("k") is None
