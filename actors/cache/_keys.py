"""Cache key names: validation of user input, the Redis namespace, and Redis-exact glob matching.

Every user-supplied key, pattern, tag and TTL passes through here before it
reaches L1 or L2; a bad one raises :class:`CacheKeyError` (a
:class:`runtime.Rejected`) with a stable code and a message naming the value.

:class:`KeySpace` lays out the Redis keys of one deployment::

    {prefix}:cache:{key}              an entry (a sub-prefix is a key prefix:
    {prefix}:cache:{sub}:{key}        full_key(k, "t1") == full_key("t1:" + k))
    {prefix}:cache-tag:{tag}          the set of entry keys carrying a tag
    {prefix}:cache-lock:{key}         a fill lock for an entry

so ``{prefix}:cache:*`` never matches tag indexes or locks.

:func:`compile_glob` turns a Redis glob into a matcher that agrees exactly with
Redis ``SCAN MATCH`` (``stringmatchlen`` in Redis ``util.c``): it works on the
UTF-8 bytes of the key (``?`` is one byte), negates classes with ``^`` only
(``[!a]`` is the class of ``!`` and ``a``), swaps reversed ranges (``[z-a]``),
treats ``[]`` as an empty class and a trailing ``\\`` as a literal, and closes an
unclosed ``[`` at the end of the pattern. Matching is O(len(key) * len(pattern))
(each ``*`` commits to the leftmost fit of the fixed-width segment after it),
so hostile patterns cannot make it backtrack exponentially.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, NamedTuple

from runtime import Rejected

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "MAX_KEY_CHARS",
    "MAX_PATTERN_CHARS",
    "MAX_SUB_PREFIX_CHARS",
    "MAX_TAG_CHARS",
    "MAX_TTL_SECONDS",
    "CacheKeyError",
    "KeySpace",
    "compile_glob",
    "short_repr",
    "validate_key",
    "validate_pattern",
    "validate_stale",
    "validate_tag",
    "validate_tags",
    "validate_ttl",
]

MAX_KEY_CHARS: Final = 256
MAX_SUB_PREFIX_CHARS: Final = 64
MAX_PATTERN_CHARS: Final = 256
MAX_TAG_CHARS: Final = 128
MAX_TTL_SECONDS: Final = 30 * 24 * 3600.0

# Whitespace (Unicode), C0/C1 controls, and lone surrogates (not encodable as UTF-8).
_BAD_CHAR: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_GLOB_CHAR: Final = re.compile(r"[*?\[\]\\]")
_GLOB_CHARS_TEXT: Final = "* ? [ ] \\"


class CacheKeyError(Rejected):
    """Invalid cache input; ``code`` is one of ``invalid_key``, ``invalid_pattern``,
    ``invalid_tag`` or ``invalid_ttl``, and ``value`` is the offending input."""

    def __init__(self, code: str, message: str, *, value: object) -> None:
        self.value = value
        super().__init__(code, message)


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (ending in ``...``) for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_name(value: object, *, kind: str, code: str, max_chars: int, glob_ok: bool) -> str:
    if not isinstance(value, str):
        raise CacheKeyError(
            code,
            f"{kind} must be a string, got {type(value).__name__} {short_repr(value)}",
            value=value,
        )
    if not value:
        raise CacheKeyError(
            code, f"{kind} '' is empty; use 1 to {max_chars} characters", value=value
        )
    if len(value) > max_chars:
        raise CacheKeyError(
            code,
            f"{kind} {short_repr(value)} is {len(value)} characters long; the limit is {max_chars}",
            value=value,
        )
    if bad := _BAD_CHAR.search(value):
        raise CacheKeyError(
            code,
            f"{kind} {short_repr(value)} contains the whitespace or control character "
            f"{bad.group()!r} at index {bad.start()}; remove it",
            value=value,
        )
    if not glob_ok and (glob := _GLOB_CHAR.search(value)):
        raise CacheKeyError(
            code,
            f"{kind} {short_repr(value)} contains the glob metacharacter {glob.group()!r} "
            f"at index {glob.start()}; none of {_GLOB_CHARS_TEXT} may appear in a {kind}",
            value=value,
        )
    return value


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid user key (1..256 characters, no whitespace,
    control or glob characters); raise ``CacheKeyError("invalid_key")`` otherwise."""
    return _check_name(
        key, kind="cache key", code="invalid_key", max_chars=MAX_KEY_CHARS, glob_ok=False
    )


def validate_tag(tag: object) -> str:
    """Return ``tag`` if it is valid (1..128 characters, same alphabet as keys);
    raise ``CacheKeyError("invalid_tag")`` otherwise."""
    return _check_name(
        tag, kind="cache tag", code="invalid_tag", max_chars=MAX_TAG_CHARS, glob_ok=False
    )


def validate_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid Redis glob over user keys; raise
    ``CacheKeyError("invalid_pattern")`` otherwise.

    Valid: 1..256 characters without whitespace or control characters, every
    ``[`` closed, classes of ASCII characters only (Redis matches a class
    against one byte), no class opening with ``!`` (Redis negates with ``^``
    only) and no trailing lone ``\\``. ``"*"`` means every key.
    """
    kind, code = "cache pattern", "invalid_pattern"
    if pattern == "":
        raise CacheKeyError(
            code, "cache pattern '' is empty; use '*' to match every key", value=pattern
        )
    text = _check_name(pattern, kind=kind, code=code, max_chars=MAX_PATTERN_CHARS, glob_ok=True)
    described = short_repr(text)
    for token in _tokenize([ord(char) for char in text]):
        if isinstance(token, _Class):
            if not token.closed:
                raise CacheKeyError(
                    code,
                    f"cache pattern {described} has an unclosed '[' at index {token.position}; "
                    "close the class with ']' or escape the bracket as '\\['",
                    value=pattern,
                )
            if not token.negated and text[token.position + 1] == "!":
                raise CacheKeyError(
                    code,
                    f"cache pattern {described} opens a class with '!' at index {token.position}; "
                    "Redis negates with '^', so write '[^...]', or '[\\!...]' for a literal '!'",
                    value=pattern,
                )
            members = [*token.singles, *(end for pair in token.ranges for end in pair)]
            if non_ascii := [member for member in members if member > 0x7F]:
                raise CacheKeyError(
                    code,
                    f"cache pattern {described} has the non-ASCII character "
                    f"{chr(non_ascii[0])!r} in the class at index {token.position}; Redis "
                    "matches a class against a single byte, so use '?' or '*' instead",
                    value=pattern,
                )
        elif isinstance(token, _Literal) and token.lone_escape:
            raise CacheKeyError(
                code,
                f"cache pattern {described} ends with a lone '\\' at index {token.position}; "
                "escape the next character with it, or write '\\\\' for a backslash",
                value=pattern,
            )
    return text


def validate_ttl(ttl_seconds: float | None, default: float, *, name: str = "ttl_seconds") -> float:
    """The TTL to use: ``ttl_seconds``, or ``default`` when it is ``None``.

    Raises ``CacheKeyError("invalid_ttl")`` unless the result is a finite
    number with ``0 < ttl <= 30 days``; the message names the argument ``name``.
    """
    value: object = default if ttl_seconds is None else ttl_seconds
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_TTL_SECONDS
    ):
        raise CacheKeyError(
            "invalid_ttl",
            f"{name} must be a finite number > 0 and <= {MAX_TTL_SECONDS:.0f} (30 days), "
            f"got {short_repr(value)}",
            value=value,
        )
    return float(value)


def validate_stale(stale_seconds: float) -> float:
    """``stale_seconds`` as a float: 0, or a valid duration (else ``CacheKeyError``)."""
    if stale_seconds == 0:
        return 0.0
    return validate_ttl(stale_seconds, stale_seconds, name="stale_seconds")


def validate_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Validated tags; a bare string is refused rather than split into letters."""
    if isinstance(tags, str | bytes):
        raise CacheKeyError(
            "invalid_tag",
            f"tags must be a list of tags, got a single {type(tags).__name__} "
            f"{short_repr(tags)}; write tags=[{short_repr(tags)}]",
            value=tags,
        )
    if not isinstance(tags, tuple | list) and not isinstance(tags, Iterable):
        raise CacheKeyError(
            "invalid_tag",
            f"tags must be a list of tags, got {type(tags).__name__} {short_repr(tags)}",
            value=tags,
        )
    return tuple(validate_tag(tag) for tag in tags)


class KeySpace:
    """The Redis key names of one deployment's cache (see the module docstring).

    Args:
        prefix: the deployment's key prefix; 1..64 characters, no whitespace,
            control or glob characters (raises ``ValueError`` otherwise).
    """

    def __init__(self, prefix: str = "switchyard") -> None:
        try:
            _check_name(prefix, kind="prefix", code="", max_chars=64, glob_ok=False)
        except CacheKeyError as exc:
            raise ValueError(f"invalid KeySpace prefix: {exc.message}") from exc
        self._prefix = prefix
        self._namespace = f"{prefix}:cache:"
        self._tag_namespace = f"{prefix}:cache-tag:"
        self._lock_namespace = f"{prefix}:cache-lock:"

    @property
    def prefix(self) -> str:
        """The deployment's key prefix."""
        return self._prefix

    @property
    def namespace(self) -> str:
        """The common start of every entry key: ``"{prefix}:cache:"``."""
        return self._namespace

    def _sub(self, sub_prefix: str | None) -> str:
        if sub_prefix is None:
            return self._namespace
        _check_name(
            sub_prefix,
            kind="cache sub-prefix",
            code="invalid_key",
            max_chars=MAX_SUB_PREFIX_CHARS,
            glob_ok=False,
        )
        return f"{self._namespace}{sub_prefix}:"

    def full_key(self, key: str, sub_prefix: str | None = None) -> str:
        """The Redis key of user ``key``: ``"{prefix}:cache[:{sub_prefix}]:{key}"``.

        Raises ``CacheKeyError("invalid_key")`` for an invalid key or sub-prefix.
        """
        return self._sub(sub_prefix) + validate_key(key)

    def full_pattern(self, pattern: str, sub_prefix: str | None = None) -> str:
        """The Redis glob matching user keys that match ``pattern``, in the same namespace.

        Raises ``CacheKeyError("invalid_pattern")`` (or ``"invalid_key"`` for a bad sub-prefix).
        """
        namespace = self._sub(sub_prefix)
        return namespace + validate_pattern(pattern)

    def user_key(self, full_key: str, sub_prefix: str | None = None) -> str:
        """Strip the namespace (and ``sub_prefix``) from ``full_key``; ``ValueError`` if absent."""
        namespace = self._sub(sub_prefix)
        if not full_key.startswith(namespace) or len(full_key) == len(namespace):
            raise ValueError(f"{full_key!r} is not a key of the cache namespace {namespace!r}")
        return full_key[len(namespace) :]

    def tag_key(self, tag: str) -> str:
        """The Redis key of the set indexing ``tag``: ``"{prefix}:cache-tag:{tag}"``.

        Raises ``CacheKeyError("invalid_tag")`` for an invalid tag.
        """
        return self._tag_namespace + validate_tag(tag)

    def lock_key(self, full_key: str) -> str:
        """The fill-lock key of an entry: ``"{prefix}:cache-lock:{key without namespace}"``."""
        return self._lock_namespace + self.user_key(full_key)

    def matcher(self, full_pattern: str) -> Callable[[str], bool]:
        """A predicate on full keys that agrees with Redis ``SCAN MATCH full_pattern``."""
        return compile_glob(full_pattern)

    def __repr__(self) -> str:
        return f"KeySpace({self._prefix!r})"


# -- Redis glob -----------------------------------------------------------------------------

_STAR, _QUESTION, _BACKSLASH, _OPEN, _CLOSE, _CARET, _DASH = (ord(c) for c in "*?\\[]^-")


class _Literal(NamedTuple):
    code: int
    position: int
    lone_escape: bool = False


class _AnyOne(NamedTuple):
    position: int


class _Star(NamedTuple):
    position: int


class _Class(NamedTuple):
    position: int
    negated: bool
    singles: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]
    closed: bool


_Token = _Literal | _AnyOne | _Star | _Class


def _tokenize(codes: Sequence[int]) -> list[_Token]:
    """Split a glob into tokens exactly as Redis ``stringmatchlen`` reads it."""
    tokens: list[_Token] = []
    size = len(codes)
    i = 0
    while i < size:
        code = codes[i]
        if code == _STAR:
            tokens.append(_Star(i))
            i += 1
        elif code == _QUESTION:
            tokens.append(_AnyOne(i))
            i += 1
        elif code == _BACKSLASH:
            if i + 1 < size:
                tokens.append(_Literal(codes[i + 1], i))
                i += 2
            else:  # Redis: a trailing backslash is itself a literal
                tokens.append(_Literal(code, i, lone_escape=True))
                i += 1
        elif code == _OPEN:
            start = i
            i += 1
            negated = i < size and codes[i] == _CARET
            i += negated
            singles: list[int] = []
            ranges: list[tuple[int, int]] = []
            closed = False
            while i < size:  # the order of these tests is Redis's
                code = codes[i]
                if code == _BACKSLASH and i + 1 < size:
                    singles.append(codes[i + 1])
                    i += 2
                elif code == _CLOSE:
                    closed = True
                    i += 1
                    break
                elif i + 2 < size and codes[i + 1] == _DASH:
                    ranges.append((code, codes[i + 2]))  # the end may be ']' or '\\', raw
                    i += 3
                else:
                    singles.append(code)
                    i += 1
            tokens.append(_Class(start, negated, tuple(singles), tuple(ranges), closed))
        else:
            tokens.append(_Literal(code, i))
            i += 1
    return tokens


def _signed(byte: int) -> int:
    """Redis compares class ranges as C ``char``, which is signed on the platforms it runs on."""
    return byte - 256 if byte >= 0x80 else byte


def _byte_set_regex(members: set[int]) -> bytes:
    if not members:
        return b"(?!)"
    parts: list[bytes] = []
    ordered = sorted(members)
    start = previous = ordered[0]
    for byte in [*ordered[1:], -1]:
        if byte == previous + 1:
            previous = byte
            continue
        parts.append(
            b"\\x%02x" % start if start == previous else b"\\x%02x-\\x%02x" % (start, previous)
        )
        start = previous = byte
    return b"[" + b"".join(parts) + b"]"


def _token_regex(token: _Literal | _AnyOne | _Class) -> bytes:
    if isinstance(token, _Literal):
        return b"\\x%02x" % token.code
    if isinstance(token, _AnyOne):
        return b"."
    members = set(token.singles)
    for low, high in token.ranges:
        first, last = sorted((_signed(low), _signed(high)))
        members.update(byte for byte in range(256) if first <= _signed(byte) <= last)
    if token.negated:
        members = set(range(256)) - members
    return _byte_set_regex(members)


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A predicate that agrees exactly with Redis ``SCAN MATCH pattern`` on a key.

    Any pattern compiles (the caller validates user input first); keys and
    pattern are compared as UTF-8 bytes, like Redis. Compiled matchers are
    cached (512 most recent patterns).
    """
    raw = pattern.encode("utf-8", "surrogatepass")
    segments: list[list[bytes]] = [[]]
    for token in _tokenize(raw):
        if isinstance(token, _Star):
            segments.append([])
        else:
            segments[-1].append(_token_regex(token))
    if len(segments) == 1:
        body = b"".join(segments[0])
    else:
        # Each middle segment has a fixed width, so its leftmost fit is always the best one:
        # commit to it (atomic group) rather than let the regex engine backtrack into it.
        middle = b"".join(b"(?>.*?" + b"".join(seg) + b")" for seg in segments[1:-1] if seg)
        body = b"".join(segments[0]) + middle + b".*" + b"".join(segments[-1])
    regex = re.compile(b"\\A" + body + b"\\Z", re.DOTALL)
    match = regex.match
    empty_matches = not raw  # Redis matches "" only against the empty pattern ("*" too fails)

    def matches(key: str) -> bool:
        if not key:
            return empty_matches
        return match(key.encode("utf-8", "surrogatepass")) is not None

    return matches
