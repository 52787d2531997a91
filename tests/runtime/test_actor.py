"""Refs and the receive loop: tell, tell_nowait, ask, errors and statistics."""

from __future__ import annotations

import anyio
import pytest

from runtime import (
    ActorCrashed,
    ActorStopped,
    AskTimeout,
    ChildSpec,
    MailboxFull,
    Rejected,
)
from runtime.testing import ManualClock, Probe, open_system

from .workers import Block, Crash, Ping, Refuse, StopSelf, Worker


async def test_ask_returns_the_handlers_reply() -> None:
    log: list[tuple[str, str]] = []
    async with open_system([ChildSpec("w", lambda: Worker("w", log))]) as refs:
        assert await refs["w"].ask(Ping(n=7)) == ("w", 0, 7)
        stats = refs["w"].statistics()
    assert stats.handled == 1
    assert stats.state == "running"
    assert stats.mailbox_capacity == 1024


async def test_tells_are_handled_in_order_before_a_later_ask() -> None:
    probe = Probe(reply="ok")
    async with open_system([ChildSpec("probe", lambda: probe)]) as refs:
        for n in range(5):
            await refs["probe"].tell(Ping(n=n))
        assert await refs["probe"].ask(Ping(n=99)) == "ok"
    assert [m.n for m in probe.received] == [0, 1, 2, 3, 4, 99]


async def test_rejected_reaches_the_asker_and_the_actor_carries_on() -> None:
    log: list[tuple[str, str]] = []
    async with open_system([ChildSpec("w", lambda: Worker("w", log))]) as refs:
        with pytest.raises(Rejected) as info:
            await refs["w"].ask(Refuse())
        assert (info.value.code, info.value.message) == ("bad_input", "refused on purpose")
        assert await refs["w"].ask(Ping(n=1)) == ("w", 0, 1)
        stats = refs["w"].statistics()
    assert (stats.crashes, stats.restarts) == (0, 0)


async def test_ask_timeout_names_actor_message_and_mailbox_depth() -> None:
    clock = ManualClock()
    gate = anyio.Event()
    log: list[tuple[str, str]] = []
    spec = ChildSpec("w", lambda: Worker("w", log, gate=gate), mailbox_size=4)
    async with open_system([spec], clock=clock) as refs:
        await refs["w"].tell(Block())  # the actor is now stuck on the gate
        await refs["w"].tell(Ping())

        async def advance_when_blocked() -> None:
            await anyio.wait_all_tasks_blocked()
            clock.advance(2.5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(advance_when_blocked)
            with pytest.raises(AskTimeout) as info:
                await refs["w"].ask(Ping(), timeout_seconds=2.5)
        gate.set()
    assert str(info.value) == (
        "ask(test.ping) to 'w' timed out after 2.5s; the mailbox holds 2/4 messages, "
        "so the actor is overloaded or stuck"
    )
    assert isinstance(info.value, TimeoutError)


async def test_ask_to_a_crashing_actor_raises_actor_crashed_with_the_cause() -> None:
    log: list[tuple[str, str]] = []
    async with open_system([ChildSpec("w", lambda: Worker("w", log))]) as refs:
        with pytest.raises(ActorCrashed) as info:
            await refs["w"].ask(Crash(reason="disk on fire"))
        assert await refs["w"].ask(Ping(n=2)) == ("w", 1, 2)  # restarted, same ref
    assert str(info.value) == (
        "actor 'w' crashed while handling test.crash: RuntimeError: disk on fire; "
        "its supervisor decides whether it restarts"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_ask_to_a_stopped_actor_raises_actor_stopped() -> None:
    log: list[tuple[str, str]] = []
    spec = ChildSpec("w", lambda: Worker("w", log), restart="temporary")
    async with open_system([spec]) as refs:
        with pytest.raises(ActorCrashed):
            await refs["w"].ask(Crash())
        with pytest.raises(ActorStopped) as info:
            await refs["w"].ask(Ping())
        with pytest.raises(ActorStopped):
            await refs["w"].tell(Ping())
        with pytest.raises(ActorStopped):
            refs["w"].tell_nowait(Ping())
        assert refs["w"].statistics().state == "stopped"
    assert str(info.value) == (
        "cannot deliver test.ping to actor 'w': the actor is stopped; it was temporary, "
        "gave up after its restart intensity, or the system is shutting down"
    )


async def test_asks_queued_at_shutdown_fail_with_actor_stopped() -> None:
    gate = anyio.Event()
    log: list[tuple[str, str]] = []
    outcomes: list[str] = []

    async def ask_and_record(ref: object) -> None:
        try:
            await ref.ask(Ping())  # type: ignore[attr-defined]
        except ActorStopped:
            outcomes.append("stopped")

    spec = ChildSpec("w", lambda: Worker("w", log, gate=gate))
    async with anyio.create_task_group() as tg, open_system([spec]) as refs:
        await refs["w"].tell(Block())
        tg.start_soon(ask_and_record, refs["w"])
        tg.start_soon(ask_and_record, refs["w"])
        await anyio.wait_all_tasks_blocked()
    assert outcomes == ["stopped", "stopped"]


async def test_tell_waits_while_the_mailbox_is_full_and_tell_nowait_reports_it() -> None:
    gate = anyio.Event()
    log: list[tuple[str, str]] = []
    spec = ChildSpec("w", lambda: Worker("w", log, gate=gate), mailbox_size=2)
    delivered = anyio.Event()
    async with open_system([spec]) as refs:
        await refs["w"].tell(Block())
        await anyio.wait_all_tasks_blocked()  # the actor took Block and waits on the gate
        await refs["w"].tell(Ping(n=1))
        await refs["w"].tell(Ping(n=2))
        with pytest.raises(MailboxFull) as info:
            refs["w"].tell_nowait(Ping(n=3))

        async def blocked_tell() -> None:
            await refs["w"].tell(Ping(n=3))
            delivered.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_tell)
            await anyio.wait_all_tasks_blocked()
            assert not delivered.is_set()  # backpressure: the sender waits
            gate.set()
            with anyio.fail_after(1):
                await delivered.wait()
        assert await refs["w"].ask(Ping(n=4)) == ("w", 0, 4)
        assert refs["w"].statistics().handled == 5
    assert str(info.value) == (
        "mailbox of actor 'w' is full (2/2 messages); test.ping was not queued: "
        "use tell() to wait for room, or raise mailbox_size"
    )


async def test_refs_stay_valid_across_restarts_and_the_crashing_message_is_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe_log: list[tuple[str, str]] = []
    async with open_system([ChildSpec("w", lambda: Worker("w", probe_log))]) as refs:
        ref = refs["w"]
        await ref.tell(Crash(reason="first"))
        await ref.tell(Ping(n=1))  # queued while the actor crashes and restarts
        assert await ref.ask(Ping(n=2)) == ("w", 1, 2)
        stats = ref.statistics()
    assert (stats.crashes, stats.restarts, stats.handled) == (1, 1, 2)
    assert stats.last_crash_reason == "RuntimeError: first"
    assert probe_log.count(("start", "w")) == 2  # one crash, one restart, no retry loop
    crash_records = [
        r for r in caplog.records if r.getMessage() == "actor w crashed handling test.crash"
    ]
    assert len(crash_records) == 1
    assert crash_records[0].exc_info is not None


async def test_a_failing_background_task_crashes_and_restarts_the_actor() -> None:
    from runtime import Actor

    started = []

    class Leaky(Actor[Ping]):
        async def on_start(self) -> None:
            started.append(1)
            if len(started) == 1:
                self.start_soon(self._fail)

        async def _fail(self) -> None:
            raise ValueError("background failure")

        async def handle(self, message: Ping) -> int:
            return len(started)

    async with open_system([ChildSpec("leaky", Leaky)]) as refs:
        assert await refs["leaky"].ask(Ping()) == 2
        assert refs["leaky"].statistics().last_crash_reason == "ValueError: background failure"


async def test_stop_ends_a_transient_actor_normally_without_restart() -> None:
    log: list[tuple[str, str]] = []
    spec = ChildSpec("w", lambda: Worker("w", log), restart="transient")
    async with open_system([spec]) as refs:
        assert await refs["w"].ask(StopSelf()) == "stopping"
        with anyio.fail_after(1):
            while refs["w"].statistics().state != "stopped":
                await anyio.wait_all_tasks_blocked()
    assert log == [("start", "w"), ("stop", "w")]


async def test_statistics_track_depth_while_busy() -> None:
    gate = anyio.Event()
    log: list[tuple[str, str]] = []
    async with open_system([ChildSpec("w", lambda: Worker("w", log, gate=gate))]) as refs:
        await refs["w"].tell(Block())
        await anyio.wait_all_tasks_blocked()
        for n in range(3):
            await refs["w"].tell(Ping(n=n))
        assert refs["w"].statistics().mailbox_depth == 3
        gate.set()
        await refs["w"].ask(Ping())
        assert refs["w"].statistics().mailbox_depth == 0


def test_repr_of_refs_names_the_actor() -> None:
    from runtime import Supervisor

    supervisor = Supervisor([ChildSpec("cache", lambda: Probe())])
    try:
        assert repr(supervisor.refs["cache"]) == "ActorRef('cache')"
        with pytest.raises(KeyError, match="no actor 'hub' in this system; known actors: cache"):
            supervisor.refs["hub"]
    finally:
        supervisor.close()


async def test_a_busy_actor_lets_other_tasks_run_before_its_mailbox_runs_dry() -> None:
    probe = Probe(reply="ok")
    seen_by_other_task: list[int] = []
    async with open_system([ChildSpec("probe", lambda: probe, mailbox_size=1024)]) as refs:
        for n in range(1000):  # queued without a single suspension
            refs["probe"].tell_nowait(Ping(n=n))

        async def other_task() -> None:
            seen_by_other_task.append(len(probe.received))

        async with anyio.create_task_group() as tg:
            tg.start_soon(other_task)
        assert await refs["probe"].ask(Ping(n=-1)) == "ok"
    # The other task ran while the actor was still working through the 1,000 messages.
    assert len(seen_by_other_task) == 1
    assert 0 < seen_by_other_task[0] < 1000
