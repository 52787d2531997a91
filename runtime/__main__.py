"""``python -m runtime``: run one Switchyard node (``--help`` lists every setting).

``python -m runtime token --sub alice --role admin`` prints a token signed with
the configured ``SWITCHYARD_JWT_SECRET``, for trying authenticated routes.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from typing import TYPE_CHECKING

import anyio

from ._boot import run_node, token_verifier
from ._clock import SystemClock
from ._configuration import load_configuration, load_settings
from ._errors import ConfigError, RestartIntensityExceeded
from ._logging import configure_logging
from .node import SECTIONS, compose

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger("runtime.node")

EXIT_OK, EXIT_CRASHED, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run a node until SIGINT/SIGTERM; return the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["token"]:
        return _print_token(args[1:])
    try:
        configuration = load_configuration(args, sections=SECTIONS)
        settings = configuration.node
    except ConfigError as exc:
        print(f"python -m runtime: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
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


def _print_token(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime token",
        description="Print a JWT signed with SWITCHYARD_JWT_SECRET (for development).",
    )
    parser.add_argument("--sub", required=True, help="the subject (user id)")
    parser.add_argument("--role", action="append", default=[], help="a role; repeatable")
    parser.add_argument("--name", help="a display name")
    parser.add_argument("--ttl-seconds", type=float, default=3600.0, help="lifetime (default 1 h)")
    options = parser.parse_args(argv)
    try:
        settings = load_settings([])
        if settings.jwt_secret is None:
            raise ConfigError("SWITCHYARD_JWT_SECRET", None, "set it to sign tokens")
        verifier = token_verifier(settings, SystemClock())
        assert verifier is not None  # the secret is set
        claims = (("aud", settings.jwt_audience), ("iss", settings.jwt_issuer))
        extra = {name: value for name, value in claims if value}
        token = verifier.issue(
            options.sub,
            roles=tuple(options.role),
            ttl_seconds=options.ttl_seconds,
            name=options.name,
            **extra,
        )
    except ConfigError as exc:
        print(f"python -m runtime token: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    print(token)  # noqa: T201
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
