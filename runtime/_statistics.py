"""Node-wide statistics: one registry of frozen snapshots, and ``GET /api/statistics``.

Every actor package and every runtime part registers a function that returns
a frozen msgspec Struct (or a list of them) under a unique dotted name::

    setup.add_statistics("cache", cache.statistics)

The runtime registers its own parts: ``runtime.actors`` (every mailbox),
``runtime.services`` (the supervised Redis link and fanout reader),
``runtime.redis``, ``runtime.fanout`` and ``runtime.http``. The metrics actor
maps this registry to Prometheus; ``GET /api/statistics`` (admin role)
returns every snapshot as one JSON object keyed by name. A source that raises
is reported as an error entry for that name, and the others still answer.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

import msgspec
from quart import Blueprint, Response

from ._errors import ConfigError
from ._http import node_context, require_auth
from ._openapi import document_errors
from ._protocol import ErrorBody
from ._responses import json_response

__all__ = [
    "StatisticsError",
    "StatisticsRegistry",
    "StatisticsSource",
    "statistics_blueprint",
]

logger = logging.getLogger("runtime.statistics")

StatisticsSource = Callable[[], Any]
"""A function that returns a fresh snapshot (a frozen Struct or a list of them), or an
awaitable of one: ``cache.statistics`` asks the cache actor, the rest read counters."""

_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


class StatisticsError(msgspec.Struct, frozen=True, kw_only=True):
    """The entry of a source that raised while it was read."""

    error: ErrorBody


class StatisticsRegistry:
    """Named statistics sources of one node, read on demand (nothing is polled)."""

    __slots__ = ("_sources",)

    def __init__(self) -> None:
        self._sources: dict[str, StatisticsSource] = {}

    def add(self, name: str, source: StatisticsSource) -> None:
        """Register ``source`` under ``name`` (dotted lower-case words, unique per node).

        Raises:
            ConfigError: the name is malformed or already registered.
        """
        if not _NAME.fullmatch(name):
            raise ConfigError(
                "statistics name", name, "expected dotted lower-case words, such as 'cache'"
            )
        if name in self._sources:
            raise ConfigError("statistics name", name, "already registered on this node")
        if not callable(source):
            raise ConfigError(f"statistics {name!r}", source, "expected a function")
        self._sources[name] = source

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(self._sources)

    async def read(self, name: str) -> Any:
        """One fresh snapshot. Raises ``KeyError`` for an unknown name."""
        outcome = self._sources[name]()
        return await outcome if inspect.isawaitable(outcome) else outcome

    async def snapshot(self) -> dict[str, Any]:
        """Every source's snapshot by name; a failing source yields a :class:`StatisticsError`."""
        snapshots: dict[str, Any] = {}
        for name in self._sources:
            try:
                snapshots[name] = await self.read(name)
            except Exception as exc:
                logger.warning("statistics source %s failed: %s", name, exc, exc_info=exc)
                problem = ErrorBody(
                    code="statistics_failed", message=f"{type(exc).__name__}: {exc}"
                )
                snapshots[name] = StatisticsError(error=problem)
        return snapshots

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def __len__(self) -> int:
        return len(self._sources)

    def __repr__(self) -> str:
        return f"StatisticsRegistry({self.names()})"


def statistics_blueprint() -> Blueprint:
    """``GET /api/statistics`` (admin role): every registered snapshot, by name."""
    blueprint = Blueprint("statistics", __name__)

    @blueprint.get("/api/statistics")
    @document_errors(401, 403)
    @require_auth("admin")
    async def all_statistics() -> Response:
        return json_response(await node_context().statistics.snapshot())

    return blueprint
