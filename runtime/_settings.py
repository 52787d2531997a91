"""The node's configuration: one frozen :class:`Settings` Struct, validated at boot.

Precedence: field default < ``SWITCHYARD_<FIELD>`` variable < ``--<field-with-dashes>``
flag; lists are comma-separated. Each field's ``msgspec.Meta`` is the single
source of its description and bounds, for ``--help`` and for validation. Every
failure is a :class:`~runtime._errors.ConfigError` naming the variable or flag,
e.g. ``SWITCHYARD_PORT has value 'abc'; expected an integer``; secrets show as
``'**********'``.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import hmac
import os
import re
import sys
import textwrap
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_type_hints
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from ._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ["Secret", "Settings", "build_parser", "load_settings", "redact_url"]

_ENV_PREFIX = "SWITCHYARD_"
_MASK = "**********"

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
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

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
        return _MASK
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
    if re.search(r"\s", settings.cache_prefix):
        yield "cache_prefix", "expected no whitespace, such as 'switchyard'"


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything a node reads at boot. Build it with :func:`load_settings`."""

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
    cache_prefix: Annotated[
        str, Meta(min_length=1, description="Prefix of every Redis key, without spaces.")
    ] = "switchyard"
    cache_default_ttl_seconds: Annotated[
        float, Meta(gt=0, le=2_592_000, description="TTL of cache entries set without one.")
    ] = 3600.0
    cache_l1_max_entries: Annotated[
        int, Meta(ge=1, description="In-process cache bound, in entries.")
    ] = 10_000
    cache_l1_max_bytes: Annotated[
        int, Meta(ge=1, description="In-process cache bound, in value bytes.")
    ] = 67_108_864
    cache_max_value_bytes: Annotated[
        int, Meta(ge=1, description="Largest cache value accepted, encoded.")
    ] = 1_048_576
    cache_negative_ttl_seconds: Annotated[
        float, Meta(ge=0, description="How long a loader's None is cached; 0: never.")
    ] = 0.0

    def __post_init__(self) -> None:
        # msgspec wraps this ConfigError in a ValidationError (as its __cause__);
        # load_settings renames it after the variable or flag that supplied the value.
        for name, problem in _problems(self):
            raise ConfigError(name, _MASK if name == "redis_url" else getattr(self, name), problem)

    @property
    def redacted_redis_url(self) -> str | None:
        """The Redis URL with its password hidden, for logs; ``None`` when unset."""
        return None if self.redis_url is None else redact_url(self.redis_url.reveal())


class _Field(msgspec.Struct, frozen=True, kw_only=True):
    """What the loader and ``--help`` need to know about one Settings field."""

    name: str
    env: str
    flag: str
    description: str
    kind: str  # "int", "float", "str", "secret", "list" or "choice"
    optional: bool
    choices: tuple[str, ...]
    bounds: str
    default: Any


_KINDS = {"IntType": "int", "FloatType": "float", "CustomType": "secret", "VarTupleType": "list"}
_NOUNS = {"int": "an integer", "float": "a number", "str": "a string", "array": "a list"}
_OPS = (">=", ">", "<=", "<")


def _bounds(info: msgspec.inspect.Type) -> str:
    """Render numeric and length bounds without spaces, so help wrapping keeps them whole."""
    if isinstance(info, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        if info.ge is not None and info.le is not None:
            return f"{info.ge:g}..{info.le:g}"
        pairs = zip(_OPS, (info.ge, info.gt, info.le, info.lt), strict=True)
        return ", ".join(f"{op}{value:g}" for op, value in pairs if value is not None)
    if isinstance(info, msgspec.inspect.VarTupleType) and info.min_length:
        return "non-empty"
    return ""


@functools.cache
def _fields() -> tuple[_Field, ...]:
    specs = []
    hints = get_type_hints(Settings)  # Literal values in declaration order (inspect sorts them)
    for field in msgspec.inspect.type_info(Settings).fields:  # type: ignore[union-attr]
        info, description = field.type, ""
        if isinstance(info, msgspec.inspect.Metadata):
            description = (info.extra_json_schema or {}).get("description", "")
            info = info.type
        optional = isinstance(info, msgspec.inspect.UnionType)
        if isinstance(info, msgspec.inspect.UnionType):
            info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        kind = _KINDS.get(type(info).__name__, "str")
        if isinstance(info, msgspec.inspect.LiteralType):
            kind = "choice"
        specs.append(
            _Field(
                name=field.name,
                env=_ENV_PREFIX + field.name.upper(),
                flag="--" + field.name.replace("_", "-"),
                description=description,
                kind=kind,
                optional=optional,
                choices=get_args(hints[field.name]) if kind == "choice" else (),
                bounds=_bounds(info),
                default=field.default,
            )
        )
    return tuple(specs)


def _help(spec: _Field) -> str:
    default = spec.default
    if default is None:
        shown = "unset"
    elif isinstance(default, tuple):
        shown = ",".join(default) or "empty"
    else:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
    kind_note = {"list": "comma-separated", "secret": "secret, never shown"}.get(spec.kind, "")
    choices = "one of " + ", ".join(spec.choices) if spec.choices else ""
    notes = "; ".join(note for note in (spec.bounds, choices, kind_note) if note)
    extra = f" [{notes}]" if notes else ""
    # argparse %-formats help strings, so a literal % must be doubled.
    return f"{spec.description}{extra} Env: {spec.env}. Default: {shown}.".replace("%", "%%")


class _HelpFormatter(argparse.HelpFormatter):
    """Wrap help without splitting long variable names at underscores or dashes."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


_METAVARS = {"int": "N", "float": "NUMBER", "str": "TEXT", "secret": "SECRET", "list": "A,B"}


def build_parser() -> argparse.ArgumentParser:
    """Build the ``python -m runtime`` argument parser, one flag per :class:`Settings` field.

    Flags default to "not given", so :func:`load_settings` can tell a flag
    from the environment or the default.

    Returns:
        The parser; ``--help`` lists every setting with its flag, environment
        variable, default and description.
    """
    parser = argparse.ArgumentParser(
        prog="python -m runtime",
        description="Run one Switchyard node: the actor system behind a Quart app on Hypercorn.",
        epilog=(
            f"Precedence: defaults < {_ENV_PREFIX}* environment variables < flags. "
            f"An unknown {_ENV_PREFIX}* variable is an error. Lists are comma-separated."
        ),
        formatter_class=_HelpFormatter,
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,  # a misspelt flag is an error, not a silent prefix match
    )
    group = parser.add_argument_group("settings")
    for spec in _fields():
        metavar = "|".join(spec.choices) if spec.choices else _METAVARS[spec.kind]
        group.add_argument(spec.flag, dest=spec.name, metavar=metavar, help=_help(spec))
    return parser


def _prepare(spec: _Field, raw: str) -> object:
    """Turn one raw string into the shape msgspec's lax mode converts."""
    if spec.kind == "list":
        return [item.strip() for item in raw.split(",") if item.strip()]
    if spec.optional and not raw.strip():
        return None
    if spec.kind == "choice":
        return next((c for c in spec.choices if c.casefold() == raw.casefold()), raw)
    return raw


def _dec_hook(type_: type, obj: object) -> object:
    if type_ is Secret and isinstance(obj, str):
        return Secret(obj)
    raise TypeError("expected a string")


def _unknown_variable(name: str, value: str) -> ConfigError:
    by_suffix = {spec.name.upper(): spec for spec in _fields()}
    # Compare without the shared prefix, which would make every name look close.
    close = difflib.get_close_matches(name.removeprefix(_ENV_PREFIX), list(by_suffix), n=1)
    # A misspelt secret variable is still a secret.
    secret = bool(re.search("SECRET|PASSWORD|TOKEN|KEY|URL", name)) or (
        bool(close) and by_suffix[close[0]].kind == "secret"
    )
    hint = (
        f"did you mean {by_suffix[close[0]].env}?"
        if close
        else "see `python -m runtime --help` for the list"
    )
    return ConfigError(name, _MASK if secret else value, f"unknown setting; {hint}")


_PATH = re.compile(r" - at `\$\.(\w+)[^`]*`$")
_BOUND = re.compile(r"Expected `(\w+)` (<=|>=|<|>) (\S+)")
_WRONG_TYPE = re.compile(r"Expected `([^`]+)`, got `[^`]+`")
_LENGTH = re.compile(r"Expected `(str|array)` of length >= (\d+)")


def _plain(text: str, spec: _Field | None) -> str:
    """Translate one msgspec validation text into the problem part of a ConfigError."""
    if match := _BOUND.fullmatch(text):
        noun, op, limit = match.groups()
        return f"expected {_NOUNS.get(noun, noun)} {op} {float(limit):g}"
    if match := _WRONG_TYPE.fullmatch(text):
        noun = match.group(1).removesuffix(" | null")
        return f"expected {_NOUNS.get(noun, noun)}"
    if match := _LENGTH.fullmatch(text):
        kind, count = match.groups()
        if count == "1":
            return "expected a non-empty string" if kind == "str" else "expected at least one item"
        return f"expected at least {count} {'characters' if kind == 'str' else 'items'}"
    if text.startswith("Invalid enum value") and spec is not None:
        return "expected one of " + ", ".join(spec.choices) + " (any case)"
    if spec is not None and spec.kind == "secret":
        return "expected a string"  # never echo anything about a secret's value
    return text[:1].lower() + text[1:]


def _config_error(
    exc: msgspec.ValidationError, supplied: dict[str, tuple[str, str]]
) -> ConfigError:
    by_name = {spec.name: spec for spec in _fields()}
    cause = exc.__cause__
    if isinstance(cause, ConfigError):
        field: str | None = cause.name
        problem = cause.problem
    else:
        text = str(exc)
        match = _PATH.search(text)
        field = match.group(1) if match else None
        problem = _plain(_PATH.sub("", text), by_name.get(field or ""))
    if field is None or field not in supplied:
        return ConfigError(field or "settings", "(default)", problem)
    source, raw = supplied[field]
    return ConfigError(source, _MASK if by_name[field].kind == "secret" else raw, problem)


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings from defaults, ``SWITCHYARD_*`` variables and flags.

    Args:
        argv: command-line arguments without the program name; ``None`` reads
            ``sys.argv[1:]``.
        environ: environment variables; ``None`` reads ``os.environ``.

    Returns:
        The validated, frozen settings.

    Raises:
        ConfigError: a value is malformed or out of range, or a ``SWITCHYARD_*``
            variable names no setting. The error names the variable or flag.
        SystemExit: an unknown flag (status 2) or ``--help`` (status 0).
    """
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    specs = {spec.name: spec for spec in _fields()}
    env_names = {spec.env: spec.name for spec in specs.values()}

    supplied: dict[str, tuple[str, str]] = {}  # field -> (variable or flag, raw value)
    for key in sorted(environ):
        if not key.startswith(_ENV_PREFIX):
            continue
        if key not in env_names:
            raise _unknown_variable(key, environ[key])
        supplied[env_names[key]] = (key, environ[key])
    for name, raw in vars(build_parser().parse_args(list(argv))).items():
        supplied[name] = (specs[name].flag, raw)

    mapping = {name: _prepare(specs[name], raw) for name, (_, raw) in supplied.items()}
    try:
        return msgspec.convert(mapping, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        # The translated error is complete; chaining msgspec's text adds noise at boot.
        raise _config_error(exc, supplied) from None
