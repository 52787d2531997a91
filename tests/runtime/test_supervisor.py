"""OTP semantics: strategies, restart types, intensity, ordered start and stop, nesting."""

from __future__ import annotations

import functools
import logging
from typing import Any

import anyio
import pytest

from runtime import (
    ActorCrashed,
    ActorStopped,
    ChildSpec,
    ConfigError,
    RestartIntensityExceeded,
    Supervisor,
    SupervisorSpec,
)
from runtime.testing import ManualClock, open_system

from .workers import Crash, Ping, StopSelf, Worker

Log = list[tuple[str, str]]


def specs(log: Log, *names: str, **options: Any) -> list[ChildSpec]:
    return [ChildSpec(name, functools.partial(Worker, name, log), **options) for name in names]


async def crash(refs: object, actor_id: str) -> None:
    with pytest.raises(ActorCrashed):
        await refs[actor_id].ask(Crash())  # type: ignore[index]


async def settle(refs: object, *actor_ids: str) -> None:
    """Round-trip every actor: after this each restart in flight has completed."""
    for actor_id in actor_ids:
        await refs[actor_id].ask(Ping())  # type: ignore[index]


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    log: Log = []
    async with open_system(specs(log, "a", "b", "c")):
        assert log == [("start", "a"), ("start", "b"), ("start", "c")]
    assert log[3:] == [("stop", "c"), ("stop", "b"), ("stop", "a")]


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    log: Log = []
    async with open_system(specs(log, "a", "b", "c"), strategy="one_for_one") as refs:
        log.clear()
        await crash(refs, "b")
        await settle(refs, "a", "b", "c")
        assert log == [("stop", "b"), ("start", "b")]
        assert [refs[x].statistics().restarts for x in "abc"] == [0, 1, 0]


async def test_one_for_all_restarts_every_child_in_order() -> None:
    log: Log = []
    async with open_system(specs(log, "a", "b", "c"), strategy="one_for_all") as refs:
        log.clear()
        await crash(refs, "b")
        await settle(refs, "a", "b", "c")
        assert log == [
            ("stop", "b"),
            ("stop", "c"),
            ("stop", "a"),
            ("start", "a"),
            ("start", "b"),
            ("start", "c"),
        ]


async def test_rest_for_one_restarts_the_child_and_those_started_after_it() -> None:
    log: Log = []
    async with open_system(specs(log, "a", "b", "c"), strategy="rest_for_one") as refs:
        log.clear()
        await crash(refs, "b")
        await settle(refs, "a", "b", "c")
        assert log == [("stop", "b"), ("stop", "c"), ("start", "b"), ("start", "c")]
        assert await refs["a"].ask(Ping(n=1)) == ("a", 0, 1)


@pytest.mark.parametrize(
    ("restart", "after_crash", "after_normal_stop"),
    [
        ("permanent", "running", "running"),
        ("transient", "running", "stopped"),
        ("temporary", "stopped", "stopped"),
    ],
)
async def test_restart_types(restart: str, after_crash: str, after_normal_stop: str) -> None:
    log: Log = []
    children = [
        ChildSpec("crashy", lambda: Worker("crashy", log), restart=restart),  # type: ignore[arg-type]
        ChildSpec("quitter", lambda: Worker("quitter", log), restart=restart),  # type: ignore[arg-type]
    ]
    async with open_system(children) as refs:
        await crash(refs, "crashy")
        assert await refs["quitter"].ask(StopSelf()) == "stopping"
        for actor_id, expected in (("crashy", after_crash), ("quitter", after_normal_stop)):
            with anyio.fail_after(1):
                while refs[actor_id].statistics().state != expected:
                    await anyio.wait_all_tasks_blocked()
        if after_crash == "stopped":
            with pytest.raises(ActorStopped):
                await refs["crashy"].ask(Ping())
        else:
            assert await refs["crashy"].ask(Ping(n=3)) == ("crashy", 1, 3)


async def test_intensity_exceeded_escalates_with_the_last_crash_as_cause() -> None:
    log: Log = []
    clock = ManualClock()
    with pytest.raises(RestartIntensityExceeded) as info:
        async with open_system(
            specs(log, "a", "b"), max_restarts=2, within_seconds=10, clock=clock
        ) as refs:
            await crash(refs, "b")
            await crash(refs, "b")
            await crash(refs, "b")
            await anyio.sleep_forever()  # the escalation cancels the block
    assert str(info.value) == (
        "supervisor 'root' gave up: child 'b' needed more than 2 restarts within 10s; "
        "escalating to the parent"
    )
    assert isinstance(info.value.__cause__, RuntimeError)
    assert log[-2:] == [("stop", "b"), ("stop", "a")] or log[-1] == ("stop", "a")


async def test_restarts_outside_the_window_do_not_count() -> None:
    log: Log = []
    clock = ManualClock()
    async with open_system(specs(log, "a"), max_restarts=1, within_seconds=5, clock=clock) as refs:
        for _ in range(4):
            await crash(refs, "a")
            await settle(refs, "a")
            clock.advance(5.01)
        assert refs["a"].statistics().restarts == 4


async def test_restart_backoff_waits_on_the_clock() -> None:
    log: Log = []
    clock = ManualClock()
    supervisor = Supervisor(specs(log, "a"), clock=clock, backoff_seconds=1.0, max_restarts=5)
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        await crash(supervisor.refs, "a")
        await anyio.wait_all_tasks_blocked()
        assert supervisor.refs["a"].statistics().state == "restarting"
        clock.advance(0.99)
        await anyio.wait_all_tasks_blocked()
        assert supervisor.refs["a"].statistics().state == "restarting"
        clock.advance(0.01)
        await settle(supervisor.refs, "a")
        assert supervisor.refs["a"].statistics().state == "running"
        tg.cancel_scope.cancel()


async def test_failing_first_start_fails_the_boot_and_stops_started_children() -> None:
    log: Log = []
    children: list[ChildSpec | SupervisorSpec] = [
        ChildSpec("a", lambda: Worker("a", log)),
        ChildSpec("b", lambda: Worker("b", log, fail_start=OSError("database unreachable"))),
        ChildSpec("c", lambda: Worker("c", log)),
    ]
    with pytest.raises(OSError, match="database unreachable"):
        async with open_system(children):
            pytest.fail("the block must not run when the boot fails")
    assert log == [("start", "a"), ("start", "b"), ("stop", "a")]


async def test_shutdown_timeout_then_cancel(caplog: pytest.LogCaptureFixture) -> None:
    log: Log = []
    children: list[ChildSpec | SupervisorSpec] = [
        ChildSpec("a", lambda: Worker("a", log)),
        ChildSpec("slow", lambda: Worker("slow", log, hang_on_stop=True), shutdown_seconds=0.01),
    ]
    with anyio.fail_after(5):
        async with open_system(children):
            pass
    assert log[2:] == [("stop-cancelled", "slow"), ("stop", "a")]
    assert (
        "actor slow: on_stop() overran its shutdown_seconds=0.01 and was cancelled"
        in caplog.messages
    )


async def test_nested_supervisor_restarts_its_subtree_and_refs_stay_valid() -> None:
    log: Log = []
    inner = SupervisorSpec("inner", specs(log, "x", "y"), max_restarts=0)
    async with open_system([*specs(log, "a"), inner], max_restarts=3) as refs:
        log.clear()
        await crash(refs, "x")  # inner gives up at once and escalates to root
        await settle(refs, "a", "x", "y")
        assert log == [
            ("stop", "x"),
            ("stop", "y"),
            ("start", "x"),
            ("start", "y"),
        ]
        assert [refs[x].statistics().restarts for x in ("a", "x", "y")] == [0, 1, 1]


async def test_escalation_climbs_through_nested_supervisors() -> None:
    log: Log = []
    inner = SupervisorSpec("inner", specs(log, "x"), max_restarts=0)
    with pytest.raises(RestartIntensityExceeded) as info:
        async with open_system([inner], max_restarts=0) as refs:
            await crash(refs, "x")
            await anyio.sleep_forever()
    assert info.value.supervisor_id == "root"
    assert info.value.child_id == "inner"
    assert isinstance(info.value.__cause__, RestartIntensityExceeded)


async def test_crash_of_a_failed_restart_counts_toward_intensity() -> None:
    log: Log = []
    starts = {"n": 0}

    def flaky() -> Worker:
        starts["n"] += 1
        failing = OSError("still down") if starts["n"] > 1 else None
        return Worker("w", log, fail_start=failing)

    with pytest.raises(RestartIntensityExceeded):
        async with open_system([ChildSpec("w", flaky)], max_restarts=3) as refs:
            await crash(refs, "w")
            await anyio.sleep_forever()
    assert starts["n"] == 4  # the first start plus three failed restarts


def test_bad_specs_are_config_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"ChildSpec\('a'\).id has value 'a'; this id is already used"
    ):
        Supervisor(
            [ChildSpec("a", lambda: Worker("a", [])), ChildSpec("a", lambda: Worker("a", []))]
        )
    with pytest.raises(ConfigError) as info:
        Supervisor([ChildSpec("a", lambda: Worker("a", []), restart="forever")])  # type: ignore[arg-type]
    assert str(info.value) == (
        "ChildSpec('a').restart has value 'forever'; "
        "expected one of permanent, transient, temporary"
    )
    with pytest.raises(ConfigError, match=r"Supervisor\('root'\).strategy has value 'all_for_one'"):
        Supervisor([], strategy="all_for_one")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"mailbox_size has value 0; expected an integer >= 1"):
        Supervisor([ChildSpec("a", lambda: Worker("a", []), mailbox_size=0)])
    with pytest.raises(ConfigError) as info:
        Supervisor([], mailbox_size=0)
    assert str(info.value) == (
        "Supervisor('root').mailbox_size has value 0; expected an integer >= 1"
    )


def capacities(supervisor: Supervisor) -> dict[str, int]:
    return {key: ref.statistics().mailbox_capacity for key, ref in supervisor.refs.items()}


def test_mailbox_size_defaults_to_the_supervisors_and_nested_supervisors_inherit_it() -> None:
    log: Log = []
    children: list[ChildSpec | SupervisorSpec] = [
        ChildSpec("a", lambda: Worker("a", log)),
        ChildSpec("b", lambda: Worker("b", log), mailbox_size=3),
        SupervisorSpec("inner", [ChildSpec("c", lambda: Worker("c", log))]),
    ]
    configured, default = Supervisor(children, mailbox_size=7), Supervisor(children)
    try:
        assert capacities(configured) == {"a": 7, "b": 3, "c": 7}
        assert capacities(default) == {"a": 1024, "b": 3, "c": 1024}
    finally:
        configured.close()
        default.close()


async def test_restart_is_logged_without_repeating_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    log: Log = []
    async with open_system(specs(log, "a")) as refs:
        await crash(refs, "a")
        await settle(refs, "a")
    restart_lines = [r for r in caplog.records if r.name == "runtime.supervisor"]
    assert [r.getMessage() for r in restart_lines] == [
        "root: restarting child a after RuntimeError: boom"
    ]
    assert restart_lines[0].exc_info is None


def test_actor_states_cover_the_whole_tree() -> None:
    log: Log = []
    supervisor = Supervisor([*specs(log, "a"), SupervisorSpec("inner", specs(log, "x"))])
    try:
        assert supervisor.actor_states() == {"a": "starting", "x": "starting"}
        assert sorted(supervisor.refs) == ["a", "x"]
    finally:
        supervisor.close()
    assert supervisor.actor_states() == {"a": "stopped", "x": "stopped"}
