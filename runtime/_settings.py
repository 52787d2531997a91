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

from ._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MASK", "Secret", "Settings", "redact_url"]

MASK = "**********"
_PREFIX_GLOB = re.compile(r"[*?\[\]\\]")

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
    if settings.app is not None and not _APP_SPEC.fullmatch(settings.app):
        yield "app", "expected 'module:function', such as 'myapp.node:create_app'"
    if re.search(r"\s", settings.redis_prefix):
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
    port: Annotated[int, Meta(ge=1, le=65535, description="TCP port of the server.")] = 8000
    redis_url: Annotated[
        Secret | None, Meta(description="redis://, rediss:// or unix:// URL; unset: in memory.")
    ] = None
    redis_health_interval_seconds: Annotated[
        float, Meta(gt=0, description="Seconds between Redis health checks.")
    ] = 1.0
    redis_reconnect_max_seconds: Annotated[
        float, Meta(gt=0, description="Longest back-off between Redis reconnect attempts.")
    ] = 5.0
    redis_prefix: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            description="Prefix of every Redis key the node writes, without spaces.",
        ),
    ] = "switchyard"
    jwt_secret: Annotated[Secret | None, Meta(description="JWT key; unset disables auth.")] = None
    jwt_algorithms: Annotated[
        tuple[str, ...], Meta(min_length=1, description=f"JWS algorithms: {_ALLOWED}.")
    ] = ("HS256",)
    jwt_audience: Annotated[str | None, Meta(description="Required 'aud' claim, if set.")] = None
    jwt_issuer: Annotated[str | None, Meta(description="Required 'iss' claim, if set.")] = None
    jwt_leeway_seconds: Annotated[
        float, Meta(ge=0, le=300, description="Clock skew allowed on 'exp' and 'nbf'.")
    ] = 0.0
    cors_origins: Annotated[
        tuple[str, ...], Meta(description="CORS origins, e.g. https://example.com, or '*'.")
    ] = ()
    max_body_bytes: Annotated[int, Meta(ge=1, description="Largest request body accepted.")] = (
        1_048_576
    )
    shutdown_grace_seconds: Annotated[
        float, Meta(ge=0, description="Time given to in-flight work on shutdown.")
    ] = 10.0
    ask_timeout_seconds: Annotated[
        float, Meta(gt=0, description="Default timeout of an ask to an actor.")
    ] = 5.0
    mailbox_size: Annotated[int, Meta(ge=1, description="Capacity of each actor's mailbox.")] = 1024
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
            description="Redis connections for commands; more simultaneous ones wait in line.",
        ),
    ] = 100
    redis_command_timeout_seconds: Annotated[
        float,
        Meta(
            ge=0.01,
            le=30,
            description="Deadline of every Redis command, the wait for a connection included.",
        ),
    ] = 0.5
    redis_reconnect_probe_seconds: Annotated[
        float,
        Meta(
            ge=0.05,
            le=10,
            description="Longest wait between attempts to reach Redis while it is down.",
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
            raise ConfigError(name, MASK if name == "redis_url" else getattr(self, name), problem)

    @property
    def redacted_redis_url(self) -> str | None:
        """The Redis URL with its password hidden, for logs; ``None`` when unset."""
        return None if self.redis_url is None else redact_url(self.redis_url.reveal())
