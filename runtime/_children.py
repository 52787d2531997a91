"""The running slots of a supervisor: one per actor, service or nested supervisor.

Each slot runs one incarnation at a time and reports how it ended to its
:class:`~runtime._supervisor.Supervisor`, which decides what happens next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._actor import Actor, ActorContext, serve
from ._specs import ServiceStatistics

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from ._mailbox import ActorState, Mailbox
    from ._specs import ChildSpec, RestartType, ServiceSpec
    from ._supervisor import Supervisor

__all__ = ["ActorChild", "Child", "ServiceChild", "StartFlag", "SupervisorChild", "unwrap"]

logger = logging.getLogger("runtime.supervisor")


def unwrap(exc: BaseException) -> BaseException:
    """The lone exception inside nested single-member groups (task groups wrap errors)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class StartFlag:
    """Forwards ``started()`` to a task status and remembers that it happened.

    Once started, the child's scope is shielded: from then on only its
    supervisor stops it, so that shutdown runs in reverse start order instead
    of cancelling every child at once.
    """

    def __init__(self, status: TaskStatus[None], scope: anyio.CancelScope | None = None) -> None:
        self._status = status
        self._scope = scope
        self.started = False

    def __call__(self) -> None:
        self.started = True
        if self._scope is not None:
            self._scope.shield = True
        self._status.started()


Report = Callable[["Child", "BaseException | None"], None]


class Child:
    """One running slot of a supervisor: an actor or a nested supervisor."""

    def __init__(self, child_id: str, restart: RestartType) -> None:
        self.id = child_id
        self.restart = restart
        self.alive = False
        self.terminated = False
        self.stop_requested = False
        # How the last incarnation ended, until the supervisor has dealt with it:
        # a 1-tuple of the crash reason (None for a normal exit), or None.
        self.pending_exit: tuple[BaseException | None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._finished = anyio.Event()

    async def run(self, report: Report, *, task_status: TaskStatus[None]) -> None:
        """Run one incarnation; report how it ended unless the supervisor stopped it."""
        self._scope = anyio.CancelScope()
        started = StartFlag(task_status, self._scope)
        self.alive, self.stop_requested, self._finished = True, False, anyio.Event()
        self.pending_exit = None
        reason: BaseException | None = None
        try:
            with self._scope:
                try:
                    await self._incarnate(started)
                except Exception as exc:  # noqa: BLE001 - the supervisor's one catch-all
                    reason = unwrap(exc)
                    if not started.started:  # a failed start: the caller of start() sees it
                        raise reason from reason.__cause__
        finally:
            self.alive = False
            self._finished.set()
        if not self.stop_requested:
            report(self, reason)

    async def stop(self) -> None:
        """Cancel the running incarnation and wait until it has finished."""
        if not self.alive or self._scope is None:
            return
        self.stop_requested = True
        self._scope.cancel()
        await self._finished.wait()

    async def _incarnate(self, started: StartFlag) -> None:
        raise NotImplementedError

    def mark_restarting(self) -> None:
        """Record that the supervisor is about to restart this child."""

    def terminate(self) -> None:
        """Remove this child for good: it will not be restarted again."""
        self.terminated = True


class ActorChild(Child):
    def __init__(self, spec: ChildSpec, mailbox: Mailbox, supervisor: Supervisor) -> None:
        super().__init__(spec.id, spec.restart)
        self.spec = spec
        self.mailbox = mailbox
        self._supervisor = supervisor

    async def _incarnate(self, started: StartFlag) -> None:
        actor = self.spec.start()
        if not isinstance(actor, Actor):
            raise TypeError(
                f"ChildSpec {self.id!r}: start() returned {actor!r}, which is not an Actor"
            )
        mailbox, clock = self.mailbox, self._supervisor.clock
        mailbox.state = "starting"
        crashes_before = mailbox.crashes
        try:
            async with anyio.create_task_group() as tg:
                actor._context = ActorContext(
                    actor_id=self.id,
                    clock=clock,
                    refs=self._supervisor.refs,
                    self_ref=self._supervisor.refs[self.id],
                    task_group=tg,
                    extensions=self._supervisor.extensions,
                )
                await actor.on_start()
                mailbox.state = "running"
                started()
                try:
                    await serve(actor, mailbox)
                finally:
                    mailbox.state = "stopped" if mailbox.closed else "restarting"
                    with (
                        anyio.CancelScope(shield=True),
                        clock.move_on_after(self.spec.shutdown_seconds) as stop_scope,
                    ):
                        await actor.on_stop()
                    if stop_scope.cancelled_caught:
                        logger.warning(
                            "actor %s: on_stop() overran its shutdown_seconds=%g and was cancelled",
                            self.id,
                            self.spec.shutdown_seconds,
                        )
                tg.cancel_scope.cancel()  # a normal stop ends the background tasks too
        except Exception as exc:
            if started.started and mailbox.crashes == crashes_before:
                # Not a handler crash (serve() reports those): a background task failed.
                mailbox.record_crash(unwrap(exc))
                logger.error("actor %s crashed in a background task", self.id, exc_info=exc)
            raise

    def mark_restarting(self) -> None:
        self.mailbox.restarts += 1
        self.mailbox.state = "restarting"

    def terminate(self) -> None:
        super().terminate()
        self.mailbox.close()


class ServiceChild(Child):
    def __init__(self, spec: ServiceSpec) -> None:
        super().__init__(spec.id, spec.restart)
        self.spec = spec
        self.state: ActorState = "starting"
        self.crashes = 0
        self.restarts = 0
        self.last_crash_reason: str | None = None

    async def _incarnate(self, started: StartFlag) -> None:
        self.state = "starting"
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.spec.run)
                self.state = "running"
                started()
        except Exception as exc:
            reason = unwrap(exc)
            self.crashes += 1
            self.last_crash_reason = f"{type(reason).__name__}: {reason}"
            logger.error("service %s crashed", self.id, exc_info=reason)
            raise
        finally:
            self.state = "stopped" if self.terminated or self.stop_requested else "restarting"

    def mark_restarting(self) -> None:
        self.restarts += 1
        self.state = "restarting"

    def terminate(self) -> None:
        super().terminate()
        self.state = "stopped"

    def statistics(self) -> ServiceStatistics:
        return ServiceStatistics(
            service_id=self.id,
            state=self.state,
            crashes=self.crashes,
            restarts=self.restarts,
            last_crash_reason=self.last_crash_reason,
        )


class SupervisorChild(Child):
    def __init__(self, supervisor: Supervisor, restart: RestartType) -> None:
        super().__init__(supervisor.id, restart)
        self.supervisor = supervisor

    async def _incarnate(self, started: StartFlag) -> None:
        await self.supervisor._run(started)

    def mark_restarting(self) -> None:
        for mailbox in self.supervisor._own_mailboxes():
            mailbox.restarts += 1
            mailbox.state = "restarting"

    def terminate(self) -> None:
        super().terminate()
        self.supervisor.close()
