"""Settings sections: a frozen Struct of settings with its own variables, flags and heading.

The node's own :class:`~runtime.Settings` is one section (``SWITCHYARD_<FIELD>``,
``--<field>``); every actor package declares another::

    class CacheSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
        l1_max_entries: Annotated[int, Meta(ge=1, description="L1 bound, in entries.")] = 10_000

    CACHE_SETTINGS = SettingsSection("cache", CacheSettings, title="Cache")

which reads ``SWITCHYARD_CACHE_L1_MAX_ENTRIES`` and ``--cache-l1-max-entries``.
Each field's ``msgspec.Meta`` is the single source of its description and
bounds, for ``--help`` and for validation; a check that ``Meta`` cannot
express goes in the Struct's ``__post_init__`` as
``raise ConfigError(field_name, value, problem)``, and the loader renames it
after the variable or flag that supplied the value.

This module holds what every section shares: the field introspection, the
``--help`` text, turning raw strings into values, and translating msgspec's
validation errors into :class:`~runtime.ConfigError` texts such as
``SWITCHYARD_PORT has value 'abc'; expected an integer`` (secrets show as
``'**********'``).
"""

from __future__ import annotations

import argparse
import difflib
import re
import textwrap
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_args, get_type_hints

import msgspec

from ._errors import ConfigError
from ._settings import MASK, Secret

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["S", "SettingsSection"]

S = TypeVar("S", bound=msgspec.Struct)

ENV_PREFIX = "SWITCHYARD_"

# Names a container platform injects (Kubernetes service links, Docker links), for a
# Service named like the prefix: FOO_SERVICE_HOST, FOO_SERVICE_PORT[_NAME],
# FOO_PORT_8000_TCP[_PROTO|_PORT|_ADDR]. FOO_PORT itself is injected with a URL value.
_INJECTED_NAME = re.compile(
    r"\w+_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)"
)
_INJECTED_PORT_VALUE = re.compile(r"(?i)(tcp|udp|sctp)://\S*")
_SECTION_NAME = re.compile(r"[a-z][a-z0-9_]*")
_VARIABLE_PREFIX = re.compile(r"[A-Z][A-Z0-9_]*_")


def injected_by_value(name: str, value: str) -> bool:
    """Whether ``name=value`` is a platform's ``FOO_PORT=tcp://10.0.0.1:8000``."""
    return name.endswith("_PORT") and bool(_INJECTED_PORT_VALUE.fullmatch(value.strip()))


def injected(name: str, value: str) -> bool:
    """Whether a container platform, not a user, set this variable (see ``_INJECTED_NAME``)."""
    return bool(_INJECTED_NAME.fullmatch(name)) or injected_by_value(name, value)


class Field(msgspec.Struct, frozen=True, kw_only=True):
    """What the loader and ``--help`` need to know about one field of a section."""

    name: str
    env: str
    flag: str
    dest: str  # the argparse destination: the field name, qualified for a section
    description: str
    kind: str  # "int", "float", "str", "secret", "list" or "choice"
    optional: bool
    choices: tuple[str, ...]
    bounds: str
    default: Any


class SettingsSection(Generic[S]):
    """A named group of settings: a frozen msgspec Struct and where its values come from.

    Args:
        name: a lower-case word (``"cache"``); it names the flags
            (``--cache-<field-with-dashes>``) and the section in error messages.
        schema: a frozen ``msgspec.Struct`` whose fields all have defaults and
            are annotated as ``Annotated[type, Meta(description=..., bounds)]``.
        title: the heading of the section in ``--help``.
        env_prefix: the variables' prefix (default ``SWITCHYARD_<NAME>_``).
        flag_prefix: the flags' prefix (default ``--<name-with-dashes>-``).
        description: a sentence shown under the heading in ``--help``.

    Raises:
        TypeError: ``schema`` is not a frozen Struct, or a field has no default.
        ValueError: ``name`` is not a lower-case word, or a variable name would
            be mistaken for one a container platform injects, or a prefix is
            malformed (``env_prefix`` upper case ending in ``_``, ``flag_prefix``
            starting with ``--``).

    Read a section's validated value with ``setup.section(SECTION)`` in an
    ``install`` function or a setup hook.
    """

    __slots__ = ("description", "env_prefix", "fields", "flag_prefix", "name", "schema", "title")

    def __init__(
        self,
        name: str,
        schema: type[S],
        *,
        title: str,
        env_prefix: str | None = None,
        flag_prefix: str | None = None,
        description: str = "",
    ) -> None:
        if not _SECTION_NAME.fullmatch(name):
            raise ValueError(f"section name {name!r} must be a lower-case word, such as 'cache'")
        config = getattr(schema, "__struct_config__", None)
        if not isinstance(schema, type) or config is None or not config.frozen:
            raise TypeError(f"section {name!r}: schema must be a frozen msgspec.Struct type")
        self.name = name
        self.schema = schema
        self.title = title
        self.env_prefix = ENV_PREFIX + name.upper() + "_" if env_prefix is None else env_prefix
        self.flag_prefix = (
            "--" + name.replace("_", "-") + "-" if flag_prefix is None else flag_prefix
        )
        self.description = description
        if not _VARIABLE_PREFIX.fullmatch(self.env_prefix):
            raise ValueError(f"section {name!r}: env_prefix {self.env_prefix!r} must end in '_'")
        if not self.flag_prefix.startswith("--"):
            raise ValueError(f"section {name!r}: flag_prefix {self.flag_prefix!r} must start '--'")
        self.fields: tuple[Field, ...] = _introspect(self)
        for field in self.fields:
            if field.default is msgspec.NODEFAULT:
                raise TypeError(f"section {name!r}: field {field.name!r} needs a default")
            if _INJECTED_NAME.fullmatch(field.env):
                raise ValueError(
                    f"section {name!r}: variable {field.env} would be taken for one that a "
                    "container platform injects; rename the field"
                )

    def defaults(self) -> S:
        """The section with every field at its default."""
        return self.schema()

    def __repr__(self) -> str:
        return f"SettingsSection({self.name!r}, {self.schema.__qualname__})"


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


def _introspect(section: SettingsSection[Any]) -> tuple[Field, ...]:
    specs = []
    hints = get_type_hints(section.schema)  # Literal values in declaration order
    qualify = section.flag_prefix != "--"  # the node's own fields keep their bare names
    struct = msgspec.inspect.type_info(section.schema)
    assert isinstance(struct, msgspec.inspect.StructType)
    for field in struct.fields:
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
            Field(
                name=field.name,
                env=section.env_prefix + field.name.upper(),
                flag=section.flag_prefix + field.name.replace("_", "-"),
                dest=f"{section.name}.{field.name}" if qualify else field.name,
                description=description,
                kind=kind,
                optional=optional,
                choices=get_args(hints[field.name]) if kind == "choice" else (),
                bounds=_bounds(info),
                default=field.default,
            )
        )
    return tuple(specs)


def _help(spec: Field) -> str:
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


class HelpFormatter(argparse.HelpFormatter):
    """Wrap help without splitting long variable names at underscores or dashes."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


_METAVARS = {"int": "N", "float": "NUMBER", "str": "TEXT", "secret": "SECRET", "list": "A,B"}


def add_arguments(parser: argparse.ArgumentParser, section: SettingsSection[Any]) -> None:
    """Add one flag per field of ``section``, under the section's heading."""
    about = f"Variables {section.env_prefix}*, flags {section.flag_prefix}*."
    if section.flag_prefix == "--":  # the node's own settings: "flags --*" says nothing
        about = ""
    description = " ".join(part for part in (section.description, about) if part) or None
    group = parser.add_argument_group(section.title, description)
    for spec in section.fields:
        metavar = "|".join(spec.choices) if spec.choices else _METAVARS[spec.kind]
        group.add_argument(spec.flag, dest=spec.dest, metavar=metavar, help=_help(spec))


def _prepare(spec: Field, raw: str) -> object:
    """Turn one raw string into the shape msgspec's lax mode converts."""
    if spec.kind == "list":
        return [item.strip() for item in raw.split(",") if item.strip()]
    if spec.optional and not raw.strip():
        return None
    if spec.kind == "choice":
        return next((c for c in spec.choices if c.casefold() == raw.casefold()), raw)
    return raw


_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"(?i)[+-]?(inf|infinity|nan)")


def _syntax_problem(spec: Field, raw: str) -> str | None:
    """What msgspec's lax mode would wrongly accept: ``1e3`` as an integer, ``inf`` as a number."""
    if spec.optional and not raw.strip():
        return None
    if spec.kind == "int" and not _INTEGER.fullmatch(raw):
        if not _NUMBER.fullmatch(raw):
            return "expected an integer"
        example = spec.default if isinstance(spec.default, int) else 10
        return f"expected an integer written in digits, such as {example}"
    if spec.kind == "float" and _NON_FINITE.fullmatch(raw.strip()):
        return "expected a finite number"
    return None


def _dec_hook(type_: type, obj: object) -> object:
    if type_ is Secret and isinstance(obj, str):
        return Secret(obj)
    raise TypeError("expected a string")


_PATH = re.compile(r" - at `\$\.(\w+)[^`]*`$")
_BOUND = re.compile(r"Expected `(\w+)` (<=|>=|<|>) (\S+)")
_WRONG_TYPE = re.compile(r"Expected `([^`]+)`, got `[^`]+`")
_LENGTH = re.compile(r"Expected `(str|array)` of length (>=|<=) (\d+)")


def _plain(text: str, spec: Field | None) -> str:
    """Translate one msgspec validation text into the problem part of a ConfigError."""
    if match := _BOUND.fullmatch(text):
        noun, op, limit = match.groups()
        return f"expected {_NOUNS.get(noun, noun)} {op} {float(limit):g}"
    if match := _WRONG_TYPE.fullmatch(text):
        noun = match.group(1).removesuffix(" | null")
        return f"expected {_NOUNS.get(noun, noun)}"
    if match := _LENGTH.fullmatch(text):
        kind, op, count = match.groups()
        unit = "characters" if kind == "str" else "items"
        if op == "<=":
            return f"expected at most {count} {unit}"
        if count == "1":
            return "expected a non-empty string" if kind == "str" else "expected at least one item"
        return f"expected at least {count} {unit}"
    if text.startswith("Invalid enum value") and spec is not None:
        return "expected one of " + ", ".join(spec.choices) + " (any case)"
    if spec is not None and spec.kind == "secret":
        return "expected a string"  # never echo anything about a secret's value
    return text[:1].lower() + text[1:]


Supplied = dict[str, tuple[str, object]]  # field -> (variable, flag or name, value given)


def _config_error(
    exc: msgspec.ValidationError, section: SettingsSection[Any], supplied: Supplied
) -> ConfigError:
    by_name = {spec.name: spec for spec in section.fields}
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
        return ConfigError(field or section.name, "(default)", problem)
    source, raw = supplied[field]
    return ConfigError(source, MASK if by_name[field].kind == "secret" else raw, problem)


def convert(section: SettingsSection[S], supplied: Mapping[str, tuple[str, str]]) -> S:
    """Build the section from raw strings, by field; errors name where a value came from.

    Raises:
        ConfigError: a value is malformed or out of range.
    """
    specs = {spec.name: spec for spec in section.fields}
    for name, (source, raw) in supplied.items():
        if problem := _syntax_problem(specs[name], raw):
            raise ConfigError(source, raw, problem)
    mapping = {name: _prepare(specs[name], raw) for name, (_, raw) in supplied.items()}
    try:
        return msgspec.convert(mapping, section.schema, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        # The translated error is complete; chaining msgspec's text adds noise at boot.
        raise _config_error(exc, section, dict(supplied)) from None


def validate(section: SettingsSection[S], value: object) -> S:
    """Check a section value built in code against its bounds (``cache.l1_max_entries ...``).

    Raises:
        TypeError: ``value`` is not an instance of the section's schema.
        ConfigError: a field is out of its bounds.
    """
    if not isinstance(value, section.schema):
        raise TypeError(
            f"section {section.name!r} takes a {section.schema.__qualname__}, "
            f"got {type(value).__name__}"
        )
    fields = msgspec.structs.asdict(value)
    supplied: Supplied = {name: (f"{section.name}.{name}", raw) for name, raw in fields.items()}
    try:
        return msgspec.convert(fields, section.schema)
    except msgspec.ValidationError as exc:
        raise _config_error(exc, section, supplied) from None


def _looks_secret(name: str) -> bool:
    return bool(re.search("SECRET|PASSWORD|TOKEN|KEY|URL", name.upper()))


def unknown_variable(name: str, value: str, known: Iterable[Field]) -> ConfigError:
    """The error for a variable no setting reads, with the closest known one as a hint."""
    by_suffix = {spec.env.removeprefix(ENV_PREFIX): spec for spec in known}
    # Compare without the shared prefix, which would make every name look close.
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), list(by_suffix), n=1)
    # A misspelt secret variable is still a secret.
    secret = _looks_secret(name) or (bool(close) and by_suffix[close[0]].kind == "secret")
    hint = (
        f"did you mean {by_suffix[close[0]].env}?"
        if close
        else "see `python -m runtime --help` for the list"
    )
    return ConfigError(name, MASK if secret else value, f"unknown setting; {hint}")


def unknown_argument(arguments: list[str], known: Iterable[Field]) -> ConfigError:
    """The error for the first command-line argument that no flag of any section takes.

    ``unknown flag --bogus``, with ``did you mean --port?`` only when a known
    flag is close (compared without the ``--`` every flag shares). The value
    given to an unknown flag is never shown: it may be a misspelt secret's.
    """
    first = arguments[0]
    if not first.startswith("-"):
        return ConfigError(
            "argument",
            first,
            "unexpected argument",
            message=f"unexpected argument {first!r}; see `python -m runtime --help`",
        )
    flag = first.partition("=")[0]
    by_name = {spec.flag.removeprefix("--"): spec.flag for spec in known}
    close = difflib.get_close_matches(flag.lstrip("-"), list(by_name), n=1)
    hint = (
        f"did you mean {by_name[close[0]]}?"
        if close
        else "see `python -m runtime --help` for the list"
    )
    return ConfigError(flag, None, "unknown flag", message=f"unknown flag {flag}; {hint}")
