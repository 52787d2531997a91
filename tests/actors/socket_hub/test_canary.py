"""The fanout canary: a node that stops hearing its own publishes is reported deaf."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from actors.socket_hub._canary import Canary
from runtime import MemoryFanout, RedisUnavailable
from runtime.testing import ManualClock


class DeafFanout(MemoryFanout):
    """Accepts every publish and delivers none: a subscription Redis dropped silently."""

    async def publish(self, channel: str, data: bytes) -> int:
        await anyio.lowlevel.checkpoint()
        return 1


class DownFanout(MemoryFanout):
    """Redis is down: every publish fails."""

    async def publish(self, channel: str, data: bytes) -> int:
        raise RedisUnavailable("publish", "connection refused")


async def run_until(
    canary: Canary, clock: ManualClock, condition: Callable[[], bool] | None, seconds: float
) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(canary.run)
        steps = int(seconds / 0.1)
        for _ in range(steps):
            if condition is not None and condition():
                break
            clock.advance(0.1)
            await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()


async def test_a_fanout_that_hears_itself_is_not_deaf() -> None:
    clock = ManualClock()
    canary = Canary(MemoryFanout(), "node1", clock, interval_seconds=1.0, timeout_seconds=0.5)
    await run_until(canary, clock, lambda: canary.returned >= 3, 5.0)
    assert canary.returned >= 3 and canary.sent >= 3
    assert canary.deaf is False and canary.reason() is None
    assert canary.round_trip_ms is not None


async def test_a_fanout_that_hears_nothing_is_deaf_and_readiness_says_why() -> None:
    clock = ManualClock()
    canary = Canary(DeafFanout(), "node1", clock, interval_seconds=1.0, timeout_seconds=0.5)
    await run_until(canary, clock, lambda: canary.deaf, 2.0)
    assert canary.deaf is True and canary.returned == 0 and canary.sent >= 1
    reason = canary.reason()
    assert reason is not None and "deaf" in reason and "0.5s" in reason


@pytest.mark.parametrize("fanout", [DownFanout()], ids=["redis-down"])
async def test_a_failed_publish_is_not_taken_for_deafness(fanout: MemoryFanout) -> None:
    clock = ManualClock()
    canary = Canary(fanout, "node1", clock, interval_seconds=1.0, timeout_seconds=0.5)
    await run_until(canary, clock, None, 3.0)
    assert canary.sent == 0 and canary.deaf is False  # readiness reports the outage itself
