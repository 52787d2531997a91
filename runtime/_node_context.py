"""What a running node hands its HTTP edge and its setup hook."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import anyio

from ._extensions import Extensions
from ._statistics import StatisticsRegistry

if TYPE_CHECKING:
    from ._auth import TokenVerifier
    from ._clock import Clock
    from ._extensions import Extension
    from ._fanout import Fanout
    from ._redis import RedisLink
    from ._ref import Refs
    from ._settings import Settings
    from ._supervisor import Supervisor

__all__ = ["NodeContext", "ReadinessCheck"]

T = TypeVar("T")

ReadinessCheck = Callable[[], "str | None"]
"""A package's readiness check: ``None`` when ready, else the reason it is not (a sentence)."""


class NodeContext:
    """The live parts of one node: settings, clock, supervisor, Redis link, fanout, auth.

    :meth:`get` returns what an actor package provided on the
    :class:`~runtime.NodeSetup` by typed key (``node_context().get(CACHE)``);
    ``statistics`` is the node's registry of statistics sources;
    ``readiness_checks`` are the packages' own checks that ``/readyz`` runs;
    ``stopping`` is set once the node starts to drain (the same event
    :attr:`NodeSetup.stopping <runtime.NodeSetup.stopping>` handed the packages).

    Routes reach it through :func:`runtime.node_context`; it is built once
    per node by the boot code, never as a module-level global.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock,
        supervisor: Supervisor,
        redis: RedisLink | None,
        fanout: Fanout,
        verifier: TokenVerifier | None,
        extensions: Extensions | None = None,
        statistics: StatisticsRegistry | None = None,
        stopping: anyio.Event | None = None,
        readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.supervisor = supervisor
        self.redis = redis
        self.fanout = fanout
        self.verifier = verifier
        self.extensions = Extensions() if extensions is None else extensions
        self.statistics = StatisticsRegistry() if statistics is None else statistics
        self.stopping = anyio.Event() if stopping is None else stopping
        self.readiness_checks: Mapping[str, ReadinessCheck] = dict(readiness_checks or {})

    def get(self, key: Extension[T]) -> T:
        """The facade provided under ``key``.

        Raises:
            ConfigError: no installed package provides ``key``.
        """
        return self.extensions.get(key)

    def find(self, key: Extension[T]) -> T | None:
        """The part provided under ``key``, or ``None`` (``find(REDIS)`` on an in-memory node)."""
        return self.extensions.find(key)

    @property
    def refs(self) -> Refs:
        """The refs of every actor on this node, by actor id."""
        return self.supervisor.refs
