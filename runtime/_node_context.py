"""What a running node hands its HTTP edge and its setup hook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from ._auth import TokenVerifier
    from ._clock import Clock
    from ._fanout import Fanout
    from ._redis import RedisLink
    from ._ref import Refs
    from ._settings import Settings
    from ._supervisor import Supervisor

__all__ = ["NodeContext"]


class NodeContext:
    """The live parts of one node: settings, clock, supervisor, Redis link, fanout, auth.

    ``extensions`` are what actor packages registered on the
    :class:`~runtime.NodeSetup` (for example the cache's Python API).

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
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.supervisor = supervisor
        self.redis = redis
        self.fanout = fanout
        self.verifier = verifier
        self.extensions: dict[str, Any] = {} if extensions is None else extensions
        self.stopping = anyio.Event()

    @property
    def refs(self) -> Refs:
        return self.supervisor.refs
