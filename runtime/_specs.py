"""What a supervision tree is built from: child specs, and the snapshots it reports.

A :class:`ChildSpec` runs an actor, a :class:`ServiceSpec` a long-running
non-actor task (the node's Redis link and fanout reader), a
:class:`SupervisorSpec` a nested supervisor. See :mod:`runtime._supervisor`
for the semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

import msgspec

from ._actor import Actor
from ._mailbox import ActorState

__all__ = [
    "RESTART_TYPES",
    "STRATEGIES",
    "ChildSpec",
    "RestartType",
    "ServiceSpec",
    "ServiceStatistics",
    "Strategy",
    "SupervisorSpec",
    "SupervisorStatistics",
]

RestartType = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
RESTART_TYPES = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


class ChildSpec(msgspec.Struct, frozen=True):
    """How to run one actor: ``start`` builds a fresh actor for every incarnation.

    ``restart``: ``permanent`` always restarts, ``transient`` only after a
    crash, ``temporary`` never. ``shutdown_seconds`` bounds ``on_stop``
    before it is cancelled. ``mailbox_size`` bounds the inbox; ``None`` takes
    the supervisor's default (a node's is ``SWITCHYARD_MAILBOX_SIZE``).
    """

    id: str
    start: Callable[[], Actor[Any]]
    restart: RestartType = "permanent"
    shutdown_seconds: float = 5.0
    mailbox_size: int | None = None


class ServiceSpec(msgspec.Struct, frozen=True):
    """A supervised service that is not an actor: a long-running ``run`` coroutine.

    The node runs its Redis link and fanout reader this way. ``run`` has the
    anyio ``task_status`` convention (``await task_group.start(run)``): the
    service counts as started once it calls ``task_status.started()``. When
    ``run`` raises, the supervisor restarts it by ``restart`` and its
    strategy, exactly as it would an actor; when it returns, it has stopped
    normally.
    """

    id: str
    run: Callable[..., Coroutine[Any, Any, None]]
    restart: RestartType = "permanent"
    shutdown_seconds: float = 5.0


class ServiceStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one supervised service."""

    service_id: str
    state: ActorState
    crashes: int
    restarts: int
    last_crash_reason: str | None


class SupervisorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one supervisor: its policy and how close it is to giving up.

    ``recent_restarts`` counts the restarts within the last ``within_seconds``;
    past ``max_restarts`` the supervisor gives up and escalates.
    """

    supervisor_id: str
    strategy: Strategy
    children: int
    restarts: int
    recent_restarts: int
    max_restarts: int
    within_seconds: float


class SupervisorSpec(msgspec.Struct, frozen=True):
    """A nested supervisor: a child that supervises children of its own.

    It inherits its parent's clock, ask timeout and default mailbox size.
    """

    id: str
    children: Sequence[ChildSpec | ServiceSpec | SupervisorSpec]
    strategy: Strategy = "one_for_one"
    max_restarts: int = 3
    within_seconds: float = 5.0
    restart: RestartType = "permanent"
    backoff_seconds: float = 0.0
    backoff_max_seconds: float = 5.0
