"""Ask deadlines: one timer per timeout value of a ref, watched on the injectable clock.

Each ask must still fail at its own deadline (not before, not a timer period
later), whatever other asks share its group, and nothing may stay behind once
asks are answered, crash, or are abandoned.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from runtime import ActorCrashed, ActorRef, ActorStopped, AskTimeout, ChildSpec
from runtime.testing import ManualClock, open_system

from .workers import Block, Crash, Ping, Worker


class Outcomes:
    """What each named asker ended with: a reply, or the name of the error it raised."""

    def __init__(self) -> None:
        self.by_name: dict[str, object] = {}
        self.sent = 0

    async def ask(self, ref: ActorRef[Any], name: str, message: object, seconds: float) -> None:
        pending = ref.ask(message, timeout_seconds=seconds)
        self.sent += 1
        try:
            self.by_name[name] = await pending
        except (AskTimeout, ActorCrashed, ActorStopped) as exc:  # the outcome under test
            self.by_name[name] = type(exc).__name__


async def test_asks_with_different_timeouts_each_fail_at_their_own_deadline() -> None:
    clock = ManualClock()
    gate = anyio.Event()
    log: list[tuple[str, str]] = []
    outcomes = Outcomes()
    async with open_system(
        [ChildSpec("w", lambda: Worker("w", log, gate=gate))], clock=clock
    ) as refs:
        ref = refs["w"]
        await ref.tell(Block())  # the actor is stuck: no ask is answered until the gate opens
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, ref, "short", Ping(n=1), 1.0)
            tg.start_soon(outcomes.ask, ref, "long", Ping(n=2), 3.0)
            tg.start_soon(outcomes.ask, ref, "short-too", Ping(n=3), 1.0)
            await anyio.wait_all_tasks_blocked()
            clock.advance(0.999)
            await anyio.wait_all_tasks_blocked()
            assert outcomes.by_name == {}  # not one of them before its deadline
            clock.advance(0.001)
            await anyio.wait_all_tasks_blocked()
            assert outcomes.by_name == {"short": "AskTimeout", "short-too": "AskTimeout"}
            clock.advance(1.999)
            await anyio.wait_all_tasks_blocked()
            assert "long" not in outcomes.by_name
            clock.advance(0.001)
        assert outcomes.by_name["long"] == "AskTimeout"
        gate.set()
        # The actor still handles the abandoned messages, and answers the next ask.
        assert await ref.ask(Ping(n=4)) == ("w", 0, 4)
        stats = ref.statistics()
    assert (stats.handled, stats.crashes) == (5, 0)  # the block, three timed out, the last


async def test_an_ask_sent_later_in_a_group_gets_its_own_full_timeout() -> None:
    clock = ManualClock()
    gate = anyio.Event()
    outcomes = Outcomes()
    async with open_system(
        [ChildSpec("w", lambda: Worker("w", [], gate=gate))], clock=clock
    ) as refs:
        ref = refs["w"]
        await ref.tell(Block())
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, ref, "first", Ping(n=1), 2.0)
            await anyio.wait_all_tasks_blocked()
            clock.advance(1.0)
            tg.start_soon(outcomes.ask, ref, "second", Ping(n=2), 2.0)  # deadline t=3
            await anyio.wait_all_tasks_blocked()
            clock.advance(1.0)  # t=2: the group's timer fires for the first, re-arms for the second
            await anyio.wait_all_tasks_blocked()
            assert outcomes.by_name == {"first": "AskTimeout"}
            clock.advance(0.5)
            await anyio.wait_all_tasks_blocked()
            assert "second" not in outcomes.by_name
            gate.set()  # answered before its deadline: the second succeeds
        assert outcomes.by_name["second"] == ("w", 0, 2)


async def test_answered_and_crashed_asks_leave_no_timer_once_the_deadline_passes() -> None:
    clock = ManualClock()
    async with open_system([ChildSpec("w", lambda: Worker("w", []))], clock=clock) as refs:
        ref = refs["w"]
        for n in range(200):
            assert await ref.ask(Ping(n=n), timeout_seconds=5.0) == ("w", 0, n)
        with pytest.raises(ActorCrashed):
            await ref.ask(Crash(), timeout_seconds=5.0)
        await anyio.wait_all_tasks_blocked()
        # One timer for the whole group (never one per ask), until its deadline passes ...
        assert clock.pending_timers == 1
        clock.advance(5.0)
        # ... then the group has nothing left to watch and is dropped with its timer.
        assert clock.pending_timers == 0
        assert await ref.ask(Ping(n=1), timeout_seconds=5.0) == ("w", 0, 1)  # a new group


async def test_a_cancelled_ask_is_skipped_by_the_actor_and_gone_after_its_deadline() -> None:
    clock = ManualClock()
    gate = anyio.Event()
    log: list[tuple[str, str]] = []
    async with open_system(
        [ChildSpec("w", lambda: Worker("w", log, gate=gate))], clock=clock
    ) as refs:
        ref = refs["w"]
        await ref.tell(Block())
        with anyio.move_on_after(0) as scope:  # real time: the asker gives up at once
            await ref.ask(Ping(n=1), timeout_seconds=5.0)
        assert scope.cancelled_caught
        gate.set()
        assert await ref.ask(Ping(n=2), timeout_seconds=5.0) == ("w", 0, 2)
        clock.advance(5.0)
        assert clock.pending_timers == 0
        stats = ref.statistics()
    assert (stats.crashes, stats.handled) == (0, 3)  # the block, the abandoned ping, the last


async def test_an_ask_waiting_for_room_times_out_within_the_same_timeout() -> None:
    clock = ManualClock()
    gate = anyio.Event()
    outcomes = Outcomes()
    spec = ChildSpec("w", lambda: Worker("w", [], gate=gate), mailbox_size=1)
    async with open_system([spec], clock=clock) as refs:
        ref = refs["w"]
        await ref.tell(Block())  # taken by the actor, which blocks
        await anyio.wait_all_tasks_blocked()
        await ref.tell(Ping(n=1))  # fills the one slot
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, ref, "waits", Ping(n=2), 1.5)
            await anyio.wait_all_tasks_blocked()
            assert ref.statistics().mailbox_depth == 1
            clock.advance(1.5)
        assert outcomes.by_name == {"waits": "AskTimeout"}
        gate.set()
        assert await ref.ask(Ping(n=3), timeout_seconds=1.5) == ("w", 0, 3)


async def test_an_ask_that_gets_room_in_time_is_answered() -> None:
    clock = ManualClock()
    gate = anyio.Event()
    outcomes = Outcomes()
    spec = ChildSpec("w", lambda: Worker("w", [], gate=gate), mailbox_size=1)
    async with open_system([spec], clock=clock) as refs:
        ref = refs["w"]
        await ref.tell(Block())
        await anyio.wait_all_tasks_blocked()
        await ref.tell(Ping(n=1))  # the mailbox is full
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, ref, "waits", Ping(n=2), 2.0)
            await anyio.wait_all_tasks_blocked()
            clock.advance(1.9)
            gate.set()  # room before the deadline: the ask goes in and is answered
        assert outcomes.by_name == {"waits": ("w", 0, 2)}
        clock.advance(1.0)  # past its old deadline: no late failure, no timer left
        assert clock.pending_timers == 0
