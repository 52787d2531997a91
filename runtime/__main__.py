"""``python -m runtime`` (or ``switchyard``): run one Switchyard node, or work with its tokens.

Usage::

    python -m runtime [SETTINGS...]                       run a node (--help lists every setting)
    python -m runtime [SETTINGS...] token issue --sub alice --role admin [--ttl-seconds N]
    python -m runtime [SETTINGS...] token check TOKEN     verify a token, print its claims
    python -m runtime --version

Settings flags come before the command; ``token`` also takes the auth settings
(``--jwt-secret``, ``--jwt-algorithms``, ``--jwt-audience``, ``--jwt-issuer``)
after it. ``token --sub alice`` is short for ``token issue --sub alice``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import logging
import os
import re
import sys
from typing import TYPE_CHECKING, NoReturn

import anyio
import msgspec

from ._auth import AuthError
from ._boot import load_hook, run_node, token_verifier
from ._clock import SystemClock
from ._configuration import load_configuration
from ._errors import ConfigError, RestartIntensityExceeded
from ._logging import configure_logging
from ._sections import SettingsSection
from .node import SECTIONS, compose

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

    from ._auth import TokenVerifier
    from ._configuration import Configuration

__all__ = ["console", "main"]

logger = logging.getLogger("runtime.node")

EXIT_OK, EXIT_CRASHED, EXIT_CONFIG = 0, 1, 2
EXIT_REJECTED = 1  # `token check`: the token is not valid

PROG = "python -m runtime"
COMMANDS = ("token",)
# Settings flags that take no value; every other one takes exactly one (as its variable does).
_VALUELESS_FLAGS = frozenset({"-h", "--help", "--version"})
# Flags whose values must never appear in an error message.
_SECRET_FLAGS = ("--jwt-secret", "--jwt-public-key", "--redis-url")
_AUTH_FLAGS = ("--jwt-secret", "--jwt-algorithms", "--jwt-audience", "--jwt-issuer")
_MASK = "**********"
_SHOWABLE_WORD = re.compile(r"[A-Za-z][\w-]{0,31}")

_COMMANDS_HELP = f"""
commands (after the settings flags; without one, the node runs):
  token issue --sub ID [--role ROLE]... [--ttl-seconds N] [--name TEXT]
                        print a token signed with SWITCHYARD_JWT_SECRET (or --jwt-secret)
  token check TOKEN     verify a token with this node's settings; print its claims as
                        JSON (exit 0), or the auth error code and message (exit 1)

`{PROG} token issue --help` lists the token flags;
`{PROG} --version` prints the version;
the `switchyard` console script is the same command as `{PROG}`."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    settings_args, command, command_args = _split(args)
    if "--version" in settings_args:
        print(f"switchyard {_version()}")  # noqa: T201
        return EXIT_OK
    if "-h" in settings_args or "--help" in settings_args:
        return _print_help(settings_args)
    if command is None:
        return _run(settings_args)
    if command == "token":
        return _token(settings_args, command_args)
    shown = repr(command) if _SHOWABLE_WORD.fullmatch(command) else "(not shown)"
    print(  # noqa: T201
        f"{PROG}: unknown command {shown}; the commands are: {', '.join(COMMANDS)} "
        f"(see {PROG} --help)",
        file=sys.stderr,
    )
    return EXIT_CONFIG


def console() -> NoReturn:
    """The ``switchyard`` console script: :func:`main`, then exit with its status."""
    sys.exit(main())


# -- the settings ------------------------------------------------------------------------


def _load_configuration(args: Sequence[str]) -> Configuration:
    """The node's settings and its sections: defaults < ``SWITCHYARD_*`` variables < ``args``.

    The one place the CLI loads settings. The sections are Switchyard's own and,
    when ``--app`` or ``SWITCHYARD_APP`` names a hook, those its module declares.
    Raises ``ConfigError``, or ``SystemExit`` for ``--help`` and malformed flags
    (argparse's own handling).
    """
    return load_configuration(args, sections=_sections(args))


def _sections(args: Sequence[str]) -> tuple[SettingsSection[Any], ...]:
    """Switchyard's sections, then every section at the module level of the app hook's module.

    The hook's module is imported (as the node will import it), the hook is not
    called; so ``--help`` lists the app's settings and its flags work at load time.

    Raises:
        ConfigError: the module cannot be imported or has no such callable.
    """
    spec = _app_spec(args)
    if spec is None:
        return SECTIONS
    load_hook(spec)  # imports the module (a failure is its ConfigError); the hook is not run
    module = sys.modules[spec.partition(":")[0]]
    found: dict[int, SettingsSection[Any]] = {}
    for value in vars(module).values():
        if isinstance(value, SettingsSection) and all(value is not own for own in SECTIONS):
            found.setdefault(id(value), value)
    return (*SECTIONS, *found.values())


def _app_spec(args: Sequence[str]) -> str | None:
    """The hook ``--app`` names in ``args`` (the last one wins), else ``SWITCHYARD_APP``."""
    spec: str | None = None
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--app" and index + 1 < len(args):
            spec = args[index + 1]
        elif arg.startswith("--app="):
            spec = arg.partition("=")[2]
        index += 1 if arg in _VALUELESS_FLAGS or "=" in arg else 2
    if spec is None:
        spec = os.environ.get("SWITCHYARD_APP")
    return spec if spec and spec.strip() else None


def _configuration_or_status(args: Sequence[str], who: str) -> Configuration | int:
    """:func:`_load_configuration`, or the exit status after reporting why it failed."""
    try:
        return _load_configuration(args)
    except ConfigError as exc:
        print(f"{who}: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    except SystemExit as exc:  # argparse has printed the usage error
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG


def _print_help(settings_args: Sequence[str]) -> int:
    """Every setting (from the settings loader, with the app's sections), then the commands."""
    try:
        _load_configuration(settings_args)
    except ConfigError as exc:  # the environment is read first: a bad variable stops even this
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    except SystemExit as exc:
        print(_COMMANDS_HELP)  # noqa: T201
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    raise AssertionError("load_configuration(['--help']) returned instead of printing the help")


def _split(args: list[str]) -> tuple[list[str], str | None, list[str]]:
    """Split ``args`` into the settings flags, the command (if any) and the command's args.

    The command is the first argument that is neither a flag nor a flag's value.
    """
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-"):
            return args[:index], arg, args[index + 1 :]
        index += 1 if arg in _VALUELESS_FLAGS or "=" in arg else 2
    return args, None, []


def _version() -> str:
    try:
        return importlib.metadata.version("switchyard")
    except importlib.metadata.PackageNotFoundError:
        return "(unknown: not installed)"


# -- running a node ----------------------------------------------------------------------


def _run(settings_args: list[str]) -> int:
    """Run a node until SIGINT/SIGTERM; return the process exit status."""
    configuration = _configuration_or_status(settings_args, PROG)
    if isinstance(configuration, int):
        return configuration
    settings = configuration.node
    configure_logging(settings.log_level, settings.log_format)
    try:
        anyio.run(
            functools.partial(run_node, configuration, compose=compose),
            backend="asyncio",
            backend_options={"use_uvloop": _uvloop_available()},
        )
    except BaseExceptionGroup as group:
        return _exit_status(group)
    except ConfigError as exc:
        logger.critical("configuration error: %s", exc)
        return EXIT_CONFIG
    except RestartIntensityExceeded as exc:
        logger.critical("node stopped: %s", exc, exc_info=exc)
        return EXIT_CRASHED
    except Exception as exc:
        logger.critical("node failed to boot: %s", exc, exc_info=exc)
        return EXIT_CRASHED
    return EXIT_OK


def _exit_status(group: BaseExceptionGroup[BaseException]) -> int:
    """Log why the node stopped (an escalation or a failed boot) and pick the exit status."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    for error in leaves:
        if isinstance(error, RestartIntensityExceeded):
            logger.critical("node stopped: %s", error, exc_info=error)
        else:
            logger.critical("node stopped by an unexpected error: %s", error, exc_info=error)
    if leaves and all(isinstance(e, ConfigError) for e in leaves):
        return EXIT_CONFIG
    return EXIT_CRASHED


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# -- token issue / token check -----------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser whose error messages never show the value of a secret flag."""

    def __init__(self, *args: object, secrets: Sequence[str] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._secrets = [secret for secret in secrets if secret]

    def error(self, message: str) -> NoReturn:
        for secret in self._secrets:
            message = message.replace(secret, _MASK)
        super().error(message)


def _secret_values(args: Sequence[str]) -> Iterator[str]:
    """The values given to secret flags in ``args`` (``--flag VALUE`` or ``--flag=VALUE``)."""
    for index, arg in enumerate(args):
        for flag in _SECRET_FLAGS:
            if arg == flag and index + 1 < len(args):
                yield args[index + 1]
            elif arg.startswith(flag + "="):
                yield arg.partition("=")[2]


def _token_parser(secrets: Sequence[str]) -> _Parser:
    prog = f"{PROG} token"
    parser = _Parser(
        prog=prog,
        description=(
            "Issue or check a JWT with this node's auth settings (SWITCHYARD_JWT_* variables, "
            "or the flags below)."
        ),
        allow_abbrev=False,
        secrets=secrets,
    )
    commands = parser.add_subparsers(dest="action", required=True, metavar="{issue,check}")
    issue = commands.add_parser(
        "issue",
        help="print a token signed with the secret (for development)",
        description="Print a JWT signed with SWITCHYARD_JWT_SECRET (or --jwt-secret).",
        allow_abbrev=False,
        secrets=secrets,
    )
    issue.add_argument("--sub", required=True, help="the subject (user id)")
    issue.add_argument("--role", action="append", default=[], help="a role; repeatable")
    issue.add_argument("--name", help="a display name")
    issue.add_argument(
        "--ttl-seconds", type=float, default=3600.0, help="lifetime (default 3600: 1 h)"
    )
    check = commands.add_parser(
        "check",
        help="verify a token; print its claims as JSON, or why it is refused (exit 1)",
        description=(
            "Verify TOKEN as this node would. Prints its claims as one line of JSON and "
            "exits 0, or prints the auth error code and message and exits 1."
        ),
        allow_abbrev=False,
        secrets=secrets,
    )
    check.add_argument("token", metavar="TOKEN", help="the JWT (without 'Bearer ')")
    for sub in (issue, check):
        auth = sub.add_argument_group("auth settings (override the SWITCHYARD_JWT_* variables)")
        for flag in _AUTH_FLAGS:
            metavar = (
                "SECRET" if flag in _SECRET_FLAGS else "A,B" if "algorithms" in flag else "TEXT"
            )
            auth.add_argument(flag, dest=flag[2:].replace("-", "_"), metavar=metavar)
    return parser


def _token(settings_args: list[str], args: list[str]) -> int:
    """``token issue`` / ``token check``: return the exit status."""
    who = f"{PROG} token"
    if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
        args = ["issue", *args]  # `token --sub alice` is short for `token issue --sub alice`
    parser = _token_parser(list(_secret_values([*settings_args, *args])))
    try:
        options = parser.parse_args(args)
    except SystemExit as exc:  # usage error (already printed) or --help
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    overrides = [
        f"{flag}={value}"
        for flag in _AUTH_FLAGS
        if (value := getattr(options, flag[2:].replace("-", "_"))) is not None
    ]
    configuration = _configuration_or_status([*settings_args, *overrides], who)
    if isinstance(configuration, int):
        return configuration
    settings = configuration.node
    # Warnings (PyJWT's on a short key) and log records as the node would write them.
    configure_logging(settings.log_level, settings.log_format)
    if settings.jwt_secret is None and settings.jwt_public_key is None:
        print(  # noqa: T201
            f"{who}: no signing secret is configured: set SWITCHYARD_JWT_SECRET "
            "(or pass --jwt-secret) to issue or check tokens",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        verifier = token_verifier(settings, SystemClock())
    except ConfigError as exc:
        print(f"{who}: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    assert verifier is not None  # the secret is set
    if options.action == "check":
        return _check(verifier, options.token, who)
    return _issue(verifier, options, who)


def _issue(verifier: TokenVerifier, options: argparse.Namespace, who: str) -> int:
    try:
        token = verifier.issue(
            options.sub,
            roles=tuple(options.role),
            ttl_seconds=options.ttl_seconds,
            name=options.name,
        )
    except ValueError as exc:  # a bad subject or lifetime; never about the secret
        print(f"{who} issue: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    print(token)  # noqa: T201
    return EXIT_OK


def _check(verifier: TokenVerifier, token: str, who: str) -> int:
    try:
        principal = verifier.verify(token)
    except AuthError as exc:  # its code and message never contain the token or the secret
        print(f"{who} check: {exc.code}: {exc.message}", file=sys.stderr)  # noqa: T201
        return EXIT_REJECTED
    print(msgspec.json.encode(dict(principal.claims)).decode())  # noqa: T201
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
