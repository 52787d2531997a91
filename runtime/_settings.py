"""The node's own settings: one frozen :class:`Settings` Struct, and :class:`Secret`.

Precedence: field default < ``SWITCHYARD_<FIELD>`` variable < ``--<field-with-dashes>``
flag; lists are comma-separated. Each field's ``msgspec.Meta`` is the single
source of its description and bounds, for ``--help`` and for validation; the
loader (:mod:`runtime._configuration`) reads them like every other section's
(:mod:`runtime._sections`). Actor packages keep their settings in sections of
their own, not here.
"""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from ._auth import DEFAULT_MAX_LIFETIME_SECONDS, hmac_family, key_problem
from ._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MASK", "Secret", "Settings", "redact_url"]

MASK = "**********"
_PREFIX_GLOB = re.compile(r"[*?\[\]\\]")
# What the cache's KeySpace refuses too: C0/C1 controls and lone surrogates (whitespace apart).
_PREFIX_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SECRETS = frozenset({"redis_url", "jwt_secret", "jwt_public_key"})

_JWS_ALGORITHMS = (
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
    "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA",
)  # fmt: skip
_ALLOWED = ", ".join(_JWS_ALGORITHMS)
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
_APP_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or error messages.

    Compare and hash by value; call :meth:`reveal` at the one place that needs
    the clear text (the Redis client, the JWT verifier).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret() takes a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """Return the secret in clear text."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Constant time, so a comparison does not leak how much of a secret matched.
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


def redact_url(url: str) -> str:
    """Hide the password of a URL: ``redis://:pw@host:6379/0`` -> ``redis://:***@host:6379/0``.

    Args:
        url: any URL; one without a password comes back unchanged.

    Returns:
        The URL, safe to log.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparseable: show nothing rather than guess where a password is
        return MASK
    if password is not None:  # edit the text: urlunsplit would turn unix:/// into unix:/
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        url = url.replace(parts.netloc, f"{userinfo.partition(':')[0]}:***@{hostinfo}", 1)
    head, mark, query = url.partition("?")  # redis-py also reads ?password=...
    return head + mark + re.sub(r"(?i)(^|&)(password=)[^&#]*", r"\1\2***", query)


def _valid_redis_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError when the port is not a number in 0..65535
    except ValueError:
        return False
    return parts.scheme.lower() in _REDIS_SCHEMES


def _algorithm_problem(alg: str) -> str:
    if alg.lower() == "none":
        return f"{alg!r} is refused because it accepts unsigned tokens; use one of {_ALLOWED}"
    hint = [known for known in _JWS_ALGORITHMS if known.lower() == alg.lower()]
    if hint:
        return f"{alg!r} is not a JWS algorithm (case matters); did you mean {hint[0]}?"
    return f"{alg!r} is not a JWS algorithm; use one of {_ALLOWED}"


def _key_problems(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield (field, problem) for the JWT keys: the algorithms' family picks the key."""
    algs = settings.jwt_algorithms
    hmac = hmac_family(algs)
    if hmac is None:
        mixed = (
            "expected HS* algorithms alone or public-key algorithms alone (RS*, PS*, ES*, "
            "EdDSA): mixing them lets a public key be used as an HMAC secret"
        )
        yield "jwt_algorithms", mixed
        return
    pinned = ", ".join(algs)
    if hmac and settings.jwt_public_key is not None:
        wrong = (
            f"SWITCHYARD_JWT_ALGORITHMS is {pinned}, which verifies with SWITCHYARD_JWT_SECRET; "
            "set SWITCHYARD_JWT_ALGORITHMS to a public-key algorithm such as RS256 or ES256"
        )
        yield "jwt_public_key", wrong
    if not hmac and settings.jwt_secret is not None:
        wrong = (
            f"SWITCHYARD_JWT_ALGORITHMS is {pinned}, which verifies with "
            "SWITCHYARD_JWT_PUBLIC_KEY; unset SWITCHYARD_JWT_SECRET"
        )
        yield "jwt_secret", wrong
    field, key = ("jwt_secret", settings.jwt_secret)
    if not hmac:
        field, key = ("jwt_public_key", settings.jwt_public_key)
    if key is not None:
        if not key.reveal():
            yield field, "expected a non-empty string (unset it to disable auth)"
        elif problem := key_problem(key.reveal(), algs):
            yield field, problem


def _problems(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield (field, problem) for every value check that ``msgspec.Meta`` cannot express."""
    if settings.redis_url is not None and not _valid_redis_url(settings.redis_url.reveal()):
        # Never echo the URL or any part of it: a typo can put a password anywhere.
        yield "redis_url", "expected a valid redis://, rediss:// or unix:// URL"
    for alg in settings.jwt_algorithms:
        if alg not in _JWS_ALGORITHMS:
            yield "jwt_algorithms", _algorithm_problem(alg)
    for origin in settings.cors_origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            yield (
                "cors_origins",
                (
                    f"{origin!r} is not an origin; expected scheme://host[:port] with no path, "
                    "such as https://example.com or http://localhost:3000, or '*'"
                ),
            )
    if all(alg in _JWS_ALGORITHMS for alg in settings.jwt_algorithms):
        yield from _key_problems(settings)
    if settings.app is not None and not _APP_SPEC.fullmatch(settings.app):
        yield "app", "expected 'module:function', such as 'myapp.node:create_app'"
    if control := _PREFIX_CONTROL.search(settings.redis_prefix):
        yield "redis_prefix", f"expected no control character, found {control.group()!r}"
    elif re.search(r"\s", settings.redis_prefix):
        yield "redis_prefix", "expected no whitespace, such as 'switchyard'"
    elif glob := _PREFIX_GLOB.search(settings.redis_prefix):
        yield "redis_prefix", (f"expected no glob character (* ? [ ] \\), found {glob.group()!r}")


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The node's own settings (actor packages have sections). Build it with :func:`load_settings`.

    Build it in code for tests and embedding (``Settings(port=0)``): the checks
    of ``__post_init__`` run, the ``Meta`` bounds only when loaded.
    """

    host: Annotated[str, Meta(min_length=1, description="Interface the server binds to.")] = (
        "127.0.0.1"
    )
    port: Annotated[
        int, Meta(ge=1, le=65535, description="TCP port of the server, written in digits.")
    ] = 8000
    redis_url: Annotated[
        Secret | None, Meta(description="redis://, rediss:// or unix:// URL; unset: in memory.")
    ] = None
    redis_health_interval_seconds: Annotated[
        float, Meta(gt=0, le=60, description="Seconds between Redis health checks.")
    ] = 1.0
    redis_reconnect_max_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=300,
            description=(
                "Longest wait between attempts to reach Redis while it is down, in seconds "
                "(full-jitter backoff below it; a low cap heals fast)."
            ),
        ),
    ] = 0.5
    redis_prefix: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            description="Prefix of every Redis key the node writes, without spaces.",
        ),
    ] = "switchyard"
    jwt_secret: Annotated[
        Secret | None,
        Meta(
            description=(
                "HMAC key of HS* tokens, >= 32 bytes (64 for HS512); unset with no public key "
                "disables auth."
            )
        ),
    ] = None
    jwt_public_key: Annotated[
        Secret | None,
        Meta(
            description=(
                "PEM public key of RS*/PS*/ES*/EdDSA tokens (RSA >= 2048 bits; \\n escapes "
                "allowed); set SWITCHYARD_JWT_ALGORITHMS to match."
            )
        ),
    ] = None
    jwt_algorithms: Annotated[
        tuple[str, ...], Meta(min_length=1, description=f"JWS algorithms: {_ALLOWED}.")
    ] = ("HS256",)
    jwt_audience: Annotated[str | None, Meta(description="Required 'aud' claim, if set.")] = None
    jwt_issuer: Annotated[str | None, Meta(description="Required 'iss' claim, if set.")] = None
    jwt_leeway_seconds: Annotated[
        float,
        Meta(ge=0, le=300, description="Clock skew allowed on 'exp', 'nbf' and 'iat', in seconds."),
    ] = 0.0
    jwt_max_lifetime_seconds: Annotated[
        float,
        Meta(
            ge=1,
            le=2_592_000,
            description="Longest token lifetime (exp - iat) accepted, in seconds; 'iat' required.",
        ),
    ] = DEFAULT_MAX_LIFETIME_SECONDS
    cors_origins: Annotated[
        tuple[str, ...], Meta(description="CORS origins, e.g. https://example.com, or '*'.")
    ] = ()
    max_body_bytes: Annotated[
        int, Meta(ge=1, le=1_073_741_824, description="Largest request body accepted, in bytes.")
    ] = 1_048_576
    websocket_max_message_bytes: Annotated[
        int,
        Meta(
            ge=1024,
            le=16_777_216,
            description=(
                "Largest WebSocket message Hypercorn reads, in bytes; a larger one closes the "
                "socket with 1009 (Hypercorn's own default is 16 MiB)."
            ),
        ),
    ] = 65_536
    shutdown_grace_seconds: Annotated[
        float, Meta(ge=0, le=3600, description="Seconds given to in-flight work on shutdown.")
    ] = 10.0
    ask_timeout_seconds: Annotated[
        float, Meta(gt=0, le=3600, description="Default timeout of an ask to an actor, in seconds.")
    ] = 5.0
    mailbox_size: Annotated[
        int, Meta(ge=1, le=1_000_000, description="Capacity of each actor's mailbox, in messages.")
    ] = 1024
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], Meta(description="Lowest level logged.")
    ] = "INFO"
    log_format: Annotated[
        Literal["text", "json"], Meta(description="One readable line or one JSON object per event.")
    ] = "text"
    app: Annotated[str | None, Meta(description="App factory as 'module:function', if set.")] = None
    redis_max_connections: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description=(
                "Redis connections for commands (a count); more simultaneous ones wait in line."
            ),
        ),
    ] = 100
    redis_command_timeout_seconds: Annotated[
        float,
        Meta(
            ge=0.01,
            le=30,
            description=(
                "Deadline of every Redis command in seconds, the wait for a connection included."
            ),
        ),
    ] = 0.5
    body_timeout_seconds: Annotated[
        float,
        Meta(
            ge=0.1,
            le=600,
            description="Seconds a request body may take to arrive in full (408 beyond it).",
        ),
    ] = 10.0

    def __post_init__(self) -> None:
        # msgspec wraps this ConfigError in a ValidationError (as its __cause__);
        # load_settings renames it after the variable or flag that supplied the value.
        for name, problem in _problems(self):
            raise ConfigError(name, MASK if name in _SECRETS else getattr(self, name), problem)

    @property
    def redacted_redis_url(self) -> str | None:
        """The Redis URL with its password hidden, for logs; ``None`` when unset."""
        return None if self.redis_url is None else redact_url(self.redis_url.reveal())
