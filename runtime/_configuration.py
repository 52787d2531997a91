"""Loading a node's configuration: its own settings and every section, from one environment.

:func:`load_configuration` reads the defaults, the environment and the flags
once, validates the node's :class:`~runtime.Settings` and the sections it is
given, and returns a :class:`Configuration`. A section first asked for later
(by a setup hook) is validated then, from the same captured variables and
flags, with the same errors. Once the node is assembled,
:meth:`Configuration.check_unknown` makes a ``SWITCHYARD_*`` variable or a flag
that nothing read an error, with the closest known name as a hint.

Variables a container platform injects are not settings and are ignored:
Kubernetes' service links for a Service named ``switchyard`` are
``SWITCHYARD_SERVICE_HOST``, ``SWITCHYARD_SERVICE_PORT[_<NAME>]``,
``SWITCHYARD_PORT_8000_TCP[_PROTO|_PORT|_ADDR]`` and
``SWITCHYARD_PORT=tcp://10.0.0.1:8000``; a ``SWITCHYARD_PORT`` with a plain
number is the node's port.

``SWITCHYARD_CACHE_PREFIX`` is a deprecated alias of ``SWITCHYARD_REDIS_PREFIX``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, cast

from ._errors import ConfigError
from ._sections import (
    ENV_PREFIX,
    HelpFormatter,
    S,
    SettingsSection,
    add_arguments,
    convert,
    injected,
    injected_by_value,
    unknown_argument,
    unknown_variable,
    validate,
)
from ._settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    import msgspec

    from ._sections import Field

__all__ = ["NODE_SETTINGS", "Configuration", "build_parser", "load_configuration", "load_settings"]

logger = logging.getLogger("runtime.settings")

NODE_SETTINGS: SettingsSection[Settings] = SettingsSection(
    "node",
    Settings,
    title="node settings",
    env_prefix=ENV_PREFIX,
    flag_prefix="--",
    description="The node's own: server, Redis, auth, CORS, limits and logging.",
)

# Deprecated variable -> the node field it sets.
_ALIASES = {"SWITCHYARD_CACHE_PREFIX": "redis_prefix"}


def _check_distinct(sections: Iterable[SettingsSection[Any]]) -> None:
    """Refuse two sections with one name, or two fields with one variable."""
    names: dict[str, SettingsSection[Any]] = {}
    owners: dict[str, str] = dict.fromkeys(_ALIASES, "node (deprecated alias)")
    for section in sections:
        if names.setdefault(section.name, section) is not section:
            raise ValueError(f"two settings sections are named {section.name!r}")
        for spec in section.fields:
            owner = owners.setdefault(spec.env, section.name)
            if owner != section.name:
                raise ValueError(
                    f"variable {spec.env} is declared by sections {owner!r} and {section.name!r}"
                )


def build_parser(sections: Sequence[SettingsSection[Any]] = ()) -> argparse.ArgumentParser:
    """Build the ``python -m runtime`` argument parser: one flag per setting.

    The node's settings come first, then each section under its own heading.
    Flags default to "not given", so the loader can tell a flag from the
    environment or the default.

    Raises:
        ValueError: two sections share a name or a variable.
    """
    _check_distinct((NODE_SETTINGS, *sections))
    parser = argparse.ArgumentParser(
        prog="python -m runtime",
        description="Run one Switchyard node: the actor system behind a Quart app on Hypercorn.",
        epilog=(
            f"Precedence: defaults < {ENV_PREFIX}* environment variables < flags. "
            f"An unknown {ENV_PREFIX}* variable or flag is an error; variables a container "
            "platform injects (*_SERVICE_HOST, *_SERVICE_PORT*, *_PORT_<n>_TCP*, and "
            "*_PORT=tcp://...) are ignored. Lists are comma-separated. "
            "SWITCHYARD_CACHE_PREFIX is a deprecated alias of SWITCHYARD_REDIS_PREFIX."
        ),
        formatter_class=HelpFormatter,
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,  # a misspelt flag is an error, not a silent prefix match
    )
    for section in (NODE_SETTINGS, *sections):
        add_arguments(parser, section)
    return parser


class Configuration:
    """The node's validated settings and every section's, from one set of sources.

    Build it with :func:`load_configuration` (environment and flags) or
    :meth:`of` (values given in code). ``node`` is the node's own
    :class:`~runtime.Settings`; :meth:`section` returns one section's value.
    """

    def __init__(self, node: Settings) -> None:
        """Prefer :meth:`of` or :func:`load_configuration`; this holds ``node`` alone."""
        self._node = node
        self._values: dict[SettingsSection[Any], Any] = {NODE_SETTINGS: node}
        self._loaded = False  # True: a section not yet validated reads the sources below
        self._environ: dict[str, str] = {}
        self._flags: dict[str, str] = {}  # argparse destination -> raw value
        self._parsed: set[SettingsSection[Any]] = {NODE_SETTINGS}
        self._extras: list[str] = []  # arguments no parsed section took (yet)
        self._notices: list[tuple[int, str]] = []
        self._announced = 0

    @classmethod
    def of(
        cls,
        settings: Settings | None = None,
        sections: Mapping[SettingsSection[Any], msgspec.Struct] | None = None,
    ) -> Configuration:
        """A configuration given in code, for tests and embedding; no environment is read.

        Args:
            settings: the node's settings (default: ``Settings()``).
            sections: a value per section; a section not given takes its defaults.

        Raises:
            TypeError: a value is not an instance of its section's schema.
            ConfigError: a section's value is out of its bounds
                (``cache.l1_max_entries has value 0; expected an integer >= 1``).
        """
        configuration = cls(settings or Settings())
        for section, value in (sections or {}).items():
            configuration._claim(section)
            configuration._values[section] = validate(section, value)
        return configuration

    @classmethod
    def _from_sources(
        cls, environ: dict[str, str], flags: dict[str, str], extras: list[str], parsed: set[Any]
    ) -> Configuration:
        configuration = cls(Settings())
        configuration._loaded = True
        configuration._environ = environ
        configuration._flags = flags
        configuration._extras = extras
        configuration._parsed |= parsed
        configuration._node = configuration._load(NODE_SETTINGS)
        configuration._values[NODE_SETTINGS] = configuration._node
        return configuration

    @property
    def node(self) -> Settings:
        """The node's own settings."""
        return self._node

    def replace_node(self, node: Settings) -> None:
        """Swap in changed node settings (``run_node`` adds a generated dev secret so)."""
        self._node = node
        self._values[NODE_SETTINGS] = node

    @property
    def sections(self) -> tuple[SettingsSection[Any], ...]:
        """The sections validated so far (without the node's own)."""
        return tuple(section for section in self._values if section is not NODE_SETTINGS)

    def section(self, section: SettingsSection[S]) -> S:
        """The validated value of ``section``.

        A section that :func:`load_configuration` was not given is validated
        now, from the same environment and flags (and then kept); in a
        configuration built with :meth:`of`, it takes its defaults.

        Raises:
            ConfigError: a value of the section is malformed or out of range;
                the error names the variable or flag.
            ValueError: another section has the same name or a same variable.
        """
        known = self._values.get(section)
        if known is not None:
            return cast("S", known)
        self._claim(section)
        value = self._load(section) if self._loaded else section.defaults()
        self._values[section] = value
        return value

    def check_unknown(self, sections: Iterable[SettingsSection[Any]] = ()) -> None:
        """Fail on a ``SWITCHYARD_*`` variable or a flag that no setting reads.

        ``sections`` are validated first (like :meth:`section`); the sections
        validated before count too. Variables a container platform injects are
        ignored, and logged at INFO; deprecation warnings are logged here.

        Raises:
            ConfigError: the first unknown variable (in sorted order) or flag,
                with the closest known name across every section as a hint.
        """
        for section in sections:
            self.section(section)
        known = [spec for section in self._values for spec in section.fields]
        if self._loaded:
            prefixes = tuple({ENV_PREFIX, *(section.env_prefix for section in self._values)})
            consumed = {spec.env for spec in known} | set(_ALIASES)
            ignored = []
            for name in sorted(self._environ):
                if not name.startswith(prefixes) or name in consumed:
                    continue
                value = self._environ[name]
                if not injected(name, value):
                    raise unknown_variable(name, value, known)
                ignored.append(name)
            if ignored:
                self._notices.append(
                    (
                        logging.INFO,
                        f"ignoring {', '.join(ignored)}: variables a container platform "
                        "injects, not settings",
                    )
                )
            self._check_arguments(known)
        self._announce()

    def _check_arguments(self, known: list[Field]) -> None:
        if self._extras:
            raise unknown_argument(self._extras, known)

    def _announce(self) -> None:
        """Log the notices (deprecations, ignored variables) not logged yet."""
        for level, text in self._notices[self._announced :]:
            logger.log(level, "%s", text)
        self._announced = len(self._notices)

    def _claim(self, section: SettingsSection[Any]) -> None:
        if not isinstance(section, SettingsSection):
            raise TypeError(f"expected a SettingsSection, got {type(section).__name__}")
        _check_distinct((*self._values, section))

    def _load(self, section: SettingsSection[S]) -> S:
        supplied: dict[str, tuple[str, str]] = {}
        for spec in section.fields:
            raw = self._environ.get(spec.env)
            if raw is None:
                continue
            if injected_by_value(spec.env, raw):
                self._notices.append(
                    (
                        logging.INFO,
                        f"ignoring {spec.env}={raw!r}: a container platform's service link, "
                        "not the setting",
                    )
                )
                continue
            supplied[spec.name] = (spec.env, raw)
        if section is NODE_SETTINGS:
            self._apply_aliases(supplied)
        flags = self._section_flags(section)
        for spec in section.fields:
            if spec.dest in flags:
                supplied[spec.name] = (spec.flag, flags[spec.dest])
        return convert(section, supplied)

    def _apply_aliases(self, supplied: dict[str, tuple[str, str]]) -> None:
        by_name = {spec.name: spec for spec in NODE_SETTINGS.fields}
        for old, field in _ALIASES.items():
            raw = self._environ.get(old)
            if raw is None:
                continue
            new = by_name[field].env
            current = supplied.get(field)
            if current is not None and current[1] != raw:
                raise ConfigError(
                    old,
                    raw,
                    f"it is a deprecated alias of {new}, which has value {current[1]!r}; "
                    f"set {new} alone",
                )
            self._notices.append((logging.WARNING, f"{old} is deprecated; set {new} instead"))
            supplied.setdefault(field, (old, raw))

    def _section_flags(self, section: SettingsSection[Any]) -> dict[str, str]:
        """The flags given for ``section``; a late section takes its own from the leftovers."""
        if section not in self._parsed:
            self._parsed.add(section)
            if self._extras:
                parser = argparse.ArgumentParser(
                    prog="python -m runtime",
                    add_help=False,
                    argument_default=argparse.SUPPRESS,
                    allow_abbrev=False,
                    exit_on_error=False,
                )
                add_arguments(parser, section)
                try:
                    namespace, self._extras = parser.parse_known_args(self._extras)
                except argparse.ArgumentError as exc:
                    name = exc.argument_name or "argument"
                    raise ConfigError(
                        name, None, exc.message, message=f"{name}: {exc.message}"
                    ) from None
                self._flags.update(vars(namespace))
        return self._flags

    def __repr__(self) -> str:
        names = ", ".join(section.name for section in self.sections)
        return f"Configuration(node={self._node!r}, sections=[{names}])"


def load_configuration(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    sections: Sequence[SettingsSection[Any]] = (),
) -> Configuration:
    """Read the node's settings and ``sections`` from defaults, variables and flags.

    Args:
        argv: command-line arguments without the program name; ``None`` reads
            ``sys.argv[1:]``.
        environ: environment variables; ``None`` reads ``os.environ``. They are
            captured: a section asked for later reads the same values.
        sections: the sections to validate now and to list in ``--help``.

    Returns:
        The configuration; call :meth:`Configuration.check_unknown` once every
        part of the node has asked for its section (``assemble_node`` does).

    Raises:
        ConfigError: a value is malformed or out of range; the error names the
            variable or flag and the value (secrets masked).
        ValueError: two sections share a name or a variable.
        SystemExit: ``--help`` (status 0) or a flag without its value (status 2).
    """
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    sections = tuple(sections)
    namespace, extras = build_parser(sections).parse_known_args(list(argv))
    configuration = Configuration._from_sources(
        dict(environ), vars(namespace), extras, set(sections)
    )
    for section in sections:
        configuration.section(section)
    return configuration


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the node's own settings from defaults, ``SWITCHYARD_*`` variables and flags.

    The same as ``load_configuration(argv, environ).node``, except that a flag
    no node setting takes is an error here. Variables are not checked for
    typos here (a section may read them); :meth:`Configuration.check_unknown`
    does that.

    Raises:
        ConfigError: a value is malformed or out of range, or a flag is unknown.
        SystemExit: ``--help`` (status 0) or a flag without its value (status 2).
    """
    configuration = load_configuration(argv, environ)
    configuration._check_arguments(list(NODE_SETTINGS.fields))
    configuration._announce()
    return configuration.node
