"""Supervision with Erlang/OTP semantics on an anyio task group.

A :class:`Supervisor` starts its children left to right (each ``on_start``
completes before the next child starts; a failing first start fails the boot),
restarts them by their restart type and its strategy, gives up when it sees
more than ``max_restarts`` restarts within ``within_seconds`` (raising
:class:`~runtime.RestartIntensityExceeded` to its parent), and stops its
children in reverse start order, each within its ``shutdown_seconds``.

Mailboxes are created once per child spec, when the tree is built, so refs
stay valid across restarts; messages queued during a restart go to the new
incarnation. The root supervisor closes every mailbox when it exits, failing
queued asks with :class:`~runtime.ActorStopped`.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from ._children import ActorChild, Child, ServiceChild, StartFlag, SupervisorChild
from ._clock import SystemClock
from ._errors import ConfigError, RestartIntensityExceeded
from ._extensions import Extensions
from ._mailbox import ActorState, ActorStatistics, Mailbox
from ._notifier import Notifier
from ._ref import ActorRef, Refs
from ._specs import RESTART_TYPES as _RESTART_TYPES
from ._specs import STRATEGIES as _STRATEGIES
from ._specs import (
    ChildSpec,
    RestartType,
    ServiceSpec,
    ServiceStatistics,
    Strategy,
    SupervisorSpec,
    SupervisorStatistics,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskGroup, TaskStatus

    from ._clock import Clock

__all__ = [
    "ChildSpec",
    "RestartType",
    "ServiceSpec",
    "ServiceStatistics",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "SupervisorStatistics",
]

logger = logging.getLogger("runtime.supervisor")


class Supervisor:
    """Runs a list of children with OTP restart semantics; see the module docstring.

    ``mailbox_size`` is the capacity of every child's mailbox whose spec
    leaves it unset, in this supervisor and the ones nested in it.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec | ServiceSpec | SupervisorSpec],
        *,
        id: str = "root",
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        within_seconds: float = 5.0,
        backoff_seconds: float = 0.0,
        backoff_max_seconds: float = 5.0,
        clock: Clock | None = None,
        ask_timeout_seconds: float = 5.0,
        extensions: Extensions | None = None,
        mailbox_size: int = 1024,
        _registry: dict[str, Mailbox | None] | None = None,
        _refs: dict[str, ActorRef[Any]] | None = None,
    ) -> None:
        _check(
            strategy in _STRATEGIES,
            f"Supervisor({id!r}).strategy",
            strategy,
            f"expected one of {', '.join(_STRATEGIES)}",
        )
        _check(
            max_restarts >= 0,
            f"Supervisor({id!r}).max_restarts",
            max_restarts,
            "expected an integer >= 0",
        )
        _check(
            within_seconds > 0,
            f"Supervisor({id!r}).within_seconds",
            within_seconds,
            "expected a number of seconds > 0",
        )
        _check(
            backoff_seconds >= 0,
            f"Supervisor({id!r}).backoff_seconds",
            backoff_seconds,
            "expected a number of seconds >= 0",
        )
        _check(
            isinstance(mailbox_size, int) and mailbox_size >= 1,
            f"Supervisor({id!r}).mailbox_size",
            mailbox_size,
            "expected an integer >= 1",
        )
        self.id = id
        self.mailbox_size = mailbox_size
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within_seconds = within_seconds
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.clock: Clock = clock or SystemClock()
        self.ask_timeout_seconds = ask_timeout_seconds
        self.extensions = extensions if extensions is not None else Extensions()
        self._is_root = _registry is None
        self._registry: dict[str, Mailbox | None] = {id: None} if _registry is None else _registry
        self._ref_map: dict[str, ActorRef[Any]] = {} if _refs is None else _refs
        self.refs = Refs(self._ref_map)  # one shared view of the whole tree
        self._children: list[Child] = []
        try:
            for spec in children:
                self._children.append(self._build(spec))
        except BaseException:
            if self._is_root:  # release the mailboxes built before the bad spec
                for mailbox in self._registry.values():
                    if mailbox is not None:
                        mailbox.close()
            raise
        self._restarts: deque[float] = deque()
        self._restarts_total = 0
        self._tg: TaskGroup | None = None
        self._wake = Notifier()

    def _build(self, spec: ChildSpec | ServiceSpec | SupervisorSpec) -> Child:
        _check(
            isinstance(spec, ChildSpec | ServiceSpec | SupervisorSpec),
            "child spec",
            spec,
            "expected a ChildSpec, a ServiceSpec or a SupervisorSpec",
        )
        _check(bool(spec.id), "ChildSpec.id", spec.id, "expected a non-empty actor id")
        _check(
            spec.id not in self._registry,
            f"ChildSpec({spec.id!r}).id",
            spec.id,
            "this id is already used in the supervision tree",
        )
        _check(
            spec.restart in _RESTART_TYPES,
            f"ChildSpec({spec.id!r}).restart",
            spec.restart,
            f"expected one of {', '.join(_RESTART_TYPES)}",
        )
        if isinstance(spec, SupervisorSpec):
            self._registry[spec.id] = None
            nested = Supervisor(
                spec.children,
                id=spec.id,
                strategy=spec.strategy,
                max_restarts=spec.max_restarts,
                within_seconds=spec.within_seconds,
                backoff_seconds=spec.backoff_seconds,
                backoff_max_seconds=spec.backoff_max_seconds,
                clock=self.clock,
                ask_timeout_seconds=self.ask_timeout_seconds,
                extensions=self.extensions,
                mailbox_size=self.mailbox_size,
                _registry=self._registry,
                _refs=self._ref_map,
            )
            return SupervisorChild(nested, spec.restart)
        if isinstance(spec, ServiceSpec):
            _check(
                callable(spec.run),
                f"ServiceSpec({spec.id!r}).run",
                spec.run,
                "expected an async callable taking task_status",
            )
            self._registry[spec.id] = None
            return ServiceChild(spec)
        _check(
            callable(spec.start),
            f"ChildSpec({spec.id!r}).start",
            spec.start,
            "expected a callable that returns a new Actor",
        )
        _check(
            spec.shutdown_seconds >= 0,
            f"ChildSpec({spec.id!r}).shutdown_seconds",
            spec.shutdown_seconds,
            "expected a number of seconds >= 0",
        )
        size = self.mailbox_size if spec.mailbox_size is None else spec.mailbox_size
        try:
            mailbox = Mailbox(spec.id, size)
        except ValueError as exc:
            raise ConfigError(
                f"ChildSpec({spec.id!r}).mailbox_size", size, "expected an integer >= 1"
            ) from exc
        self._registry[spec.id] = mailbox
        self._ref_map[spec.id] = ActorRef(
            mailbox, clock=self.clock, ask_timeout_seconds=self.ask_timeout_seconds
        )
        return ActorChild(spec, mailbox, self)

    def _own_mailboxes(self) -> list[Mailbox]:
        boxes: list[Mailbox] = []
        for child in self._children:
            if isinstance(child, ActorChild):
                boxes.append(child.mailbox)
            elif isinstance(child, SupervisorChild):
                boxes.extend(child.supervisor._own_mailboxes())
        return boxes

    def _own_services(self) -> list[ServiceChild]:
        services: list[ServiceChild] = []
        for child in self._children:
            if isinstance(child, ServiceChild):
                services.append(child)
            elif isinstance(child, SupervisorChild):
                services.extend(child.supervisor._own_services())
        return services

    def actor_statistics(self) -> list[ActorStatistics]:
        """A snapshot of every actor in this tree, in start order."""
        return [box.statistics() for box in self._own_mailboxes()]

    def service_statistics(self) -> list[ServiceStatistics]:
        """A snapshot of every supervised service in this tree, in start order."""
        return [service.statistics() for service in self._own_services()]

    def service_states(self) -> dict[str, ActorState]:
        """The state of every supervised service in this tree, by id."""
        return {service.id: service.state for service in self._own_services()}

    def actor_states(self) -> dict[str, ActorState]:
        """The state of every actor in this tree, by actor id (for readiness checks)."""
        return {box.actor_id: box.state for box in self._own_mailboxes()}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the tree until cancelled; raise ``RestartIntensityExceeded`` on giving up.

        ``task_status.started()`` is called once every child has started, so
        ``await task_group.start(supervisor.run)`` returns a booted system.
        """
        try:
            await self._run(StartFlag(task_status))
        finally:
            if self._is_root:
                self.close()

    def close(self) -> None:
        """Close every mailbox in this tree: queued asks fail with ActorStopped."""
        for mailbox in self._own_mailboxes():
            mailbox.close()

    async def _run(self, started: StartFlag) -> None:
        failure: BaseException | None = None
        self._restarts.clear()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                for child in self._children:
                    if not child.terminated:
                        await self._start_child(child)
                started()
                failure = await self._supervise()
            except Exception as exc:  # noqa: BLE001 - a failed first start, raised below
                failure = exc
            finally:
                with anyio.CancelScope(shield=True):
                    for child in reversed(self._children):
                        await child.stop()
        if failure is not None:
            raise failure

    def _on_child_exit(self, child: Child, reason: BaseException | None) -> None:
        # Called by a child's task as it ends: note it and wake the supervising loop.
        # One slot per child keeps this bounded, and restarting a child clears a
        # stale note (a sibling that crashed while one_for_all was restarting it).
        child.pending_exit = (reason,)
        self._wake.notify()

    async def _start_child(self, child: Child) -> None:
        assert self._tg is not None
        await self._tg.start(child.run, self._on_child_exit)

    async def _supervise(self) -> BaseException:
        while True:
            exited = next((c for c in self._children if c.pending_exit is not None), None)
            if exited is None:
                await self._wake.wait()
                continue
            assert exited.pending_exit is not None
            (reason,) = exited.pending_exit
            exited.pending_exit = None
            try:
                await self._on_exit(exited, reason)
            except RestartIntensityExceeded as exc:
                return exc

    async def _on_exit(self, child: Child, reason: BaseException | None) -> None:
        if child.restart == "temporary" or (child.restart == "transient" and reason is None):
            how = "crashed" if reason is not None else "stopped"
            logger.info(
                "%s: child %s %s; %s, not restarting", self.id, child.id, how, child.restart
            )
            child.terminate()
            return
        self._count_restart(child, reason)
        if reason is None:
            logger.info("%s: child %s stopped; permanent, restarting", self.id, child.id)
        else:
            logger.warning(
                "%s: restarting child %s after %s: %s",
                self.id,
                child.id,
                type(reason).__name__,
                reason,
            )
        affected = self._affected(child)
        for sibling in reversed(affected):
            if sibling is not child:
                await sibling.stop()
        restart: list[Child] = []
        for sibling in affected:
            if sibling is not child and sibling.restart == "temporary":
                sibling.terminate()  # OTP: temporary siblings are not restarted by the strategy
            else:
                restart.append(sibling)
        await self._backoff()
        for sibling in restart:
            sibling.mark_restarting()
            try:
                await self._start_child(sibling)
            except Exception as exc:
                logger.error("%s: child %s failed to restart", self.id, sibling.id, exc_info=exc)
                sibling.pending_exit = (exc,)
                break

    def _affected(self, child: Child) -> list[Child]:
        live = [c for c in self._children if not c.terminated]
        if self.strategy == "one_for_all":
            return live
        if self.strategy == "rest_for_one":
            return live[live.index(child) :]
        return [child]

    def _count_restart(self, child: Child, reason: BaseException | None) -> None:
        now = self.clock.monotonic()
        self._restarts.append(now)
        self._restarts_total += 1
        self._forget_old_restarts(now)
        if len(self._restarts) > self.max_restarts:
            error = RestartIntensityExceeded(
                self.id, child.id, self.max_restarts, self.within_seconds
            )
            error.__cause__ = reason
            raise error

    def _forget_old_restarts(self, now: float) -> None:
        while self._restarts and self._restarts[0] <= now - self.within_seconds:
            self._restarts.popleft()

    def supervisor_statistics(self) -> list[SupervisorStatistics]:
        """A snapshot of this supervisor and every nested one, outermost first."""
        self._forget_old_restarts(self.clock.monotonic())
        mine = SupervisorStatistics(
            supervisor_id=self.id,
            strategy=self.strategy,
            children=len(self._children),
            restarts=self._restarts_total,
            recent_restarts=len(self._restarts),
            max_restarts=self.max_restarts,
            within_seconds=self.within_seconds,
        )
        nested = [
            stats
            for child in self._children
            if isinstance(child, SupervisorChild)
            for stats in child.supervisor.supervisor_statistics()
        ]
        return [mine, *nested]

    async def _backoff(self) -> None:
        if self.backoff_seconds <= 0:
            return
        exponent = max(0, len(self._restarts) - 1)
        await self.clock.sleep(min(self.backoff_max_seconds, self.backoff_seconds * 2**exponent))

    def __repr__(self) -> str:
        return (
            f"Supervisor({self.id!r}, strategy={self.strategy!r}, children={len(self._children)})"
        )


def _check(ok: bool, name: str, value: object, problem: str) -> None:
    if not ok:
        raise ConfigError(name, value, problem)
