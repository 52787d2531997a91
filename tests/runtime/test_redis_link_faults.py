"""RedisLink under faults: bursts are backpressure, stalls cost one deadline, heals are quick.

Real ``redis-server`` processes (SIGSTOP, SIGKILL, restart) and the FaultProxy
(blackhole, latency), real redis-py traffic, the link's default timing unless a
test says otherwise. Waits are bounded events; latencies are measured on the
real clock (``time.perf_counter``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from runtime._boot import _redis_link
from runtime._clock import SystemClock
from runtime._errors import RedisUnavailable
from runtime._fanout import Gap, RedisFanout
from runtime._redis import CommandDeadlineExceeded, RedisLink, RedisPoolTimeout, RedisStatus
from runtime._settings import Secret, Settings
from runtime.testing import FaultProxy, RedisServer, burst

pytestmark = pytest.mark.redis

WAIT_SECONDS = 10.0
#: Scheduling slack allowed on top of a deadline on a busy 2-core machine.
MARGIN_SECONDS = 0.25
COMMAND_DEADLINE = 0.5  # the link's default command_timeout_seconds
HEALTH_INTERVAL = 1.0  # the link's default health_interval_seconds


@asynccontextmanager
async def running(link: RedisLink, *, fanout: RedisFanout | None = None) -> AsyncIterator[None]:
    """Run the link's health loop (and the fanout's reader) for the block; wait until up."""
    async with link, anyio.create_task_group() as tg:
        await tg.start(link.run)
        if fanout is not None:
            await tg.start(fanout.run)
        with anyio.fail_after(WAIT_SECONDS):
            await link.wait_until(True)
            if fanout is not None:
                await fanout.wait_connected()
        yield
        tg.cancel_scope.cancel()


class Traffic:
    """Workers sending GETs through the link in a loop, recording each call's latency."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.ok = 0
        self.failed: list[RedisUnavailable] = []
        self.latencies: list[float] = []
        self._progress = anyio.Event()

    async def worker(self, index: int) -> None:
        while True:
            started = time.perf_counter()
            try:
                with self.link.map_errors("traffic get"):
                    await self.link.client.get(f"traffic:{index}")
            except RedisUnavailable as exc:
                self.failed.append(exc)
            else:
                self.ok += 1
            self.latencies.append(time.perf_counter() - started)
            self._progress.set()
            self._progress = anyio.Event()

    async def wait(self, *, ok: int = 0, failed: int = 0) -> None:
        """Wait until at least ``ok`` successes and ``failed`` failures in all."""
        with anyio.fail_after(WAIT_SECONDS):
            while self.ok < ok or len(self.failed) < failed:
                await self._progress.wait()


async def test_a_burst_of_600_commands_waits_for_connections_and_is_no_outage(
    redis_server: RedisServer,
) -> None:
    link = RedisLink(redis_server.url, clock=SystemClock())  # a pool of 100 connections
    fanout = RedisFanout(link, prefix="t:fanout")
    seen: list[bool] = []
    link.on_transition(seen.append)
    async with running(link, fanout=fanout), fanout.subscribe("ch") as subscription:

        async def get(index: int) -> None:
            with link.map_errors("burst get"):
                await link.client.get(f"burst:{index}")

        report = await burst(600, get, errors=(RedisUnavailable,))
        assert (report.completed, report.failed) == (600, 0), report
        status = link.status()
        assert status.up
        assert seen == [True]  # no down transition
        assert (status.failures, status.pool_timeouts, status.command_timeouts) == (0, 0, 0)
        # The pub/sub connection was not rebuilt: the next item is the message, no Gap.
        await fanout.publish("ch", b"after the burst")
        with anyio.fail_after(WAIT_SECONDS):
            item = await subscription.receive()
        assert item == b"after the burst", item
        assert not isinstance(item, Gap)


async def test_a_wait_for_a_connection_past_the_deadline_is_counted_not_an_outage(
    redis_server: RedisServer,
) -> None:
    async with FaultProxy("127.0.0.1", redis_server.port) as proxy:
        link = RedisLink(
            proxy.url_for("redis"),
            clock=SystemClock(),
            max_connections=2,
            command_timeout_seconds=1.0,
            health_interval_seconds=4.0,  # the health ping's deadline: 1.0 s
        )
        seen: list[bool] = []
        link.on_transition(seen.append)
        async with running(link):
            errors: list[RedisUnavailable] = []
            warm = await burst(2, lambda index: link.client.get("warm"))  # connect both first
            assert warm.completed == 2
            proxy.latency(0.1)  # a 0.2 s round trip: 2 connections serve ~10 GETs a second

            async def get(index: int) -> None:
                try:
                    with link.map_errors("queued get"):
                        await link.client.get(f"queued:{index}")
                except RedisUnavailable as exc:
                    errors.append(exc)
                    raise

            report = await burst(40, get, errors=(RedisUnavailable,))
            status = link.status()
            assert report.completed >= 2, report
            assert status.pool_timeouts >= 1, status
            pool_errors = [e for e in errors if isinstance(e.__cause__, RedisPoolTimeout)]
            assert len(pool_errors) == status.pool_timeouts
            assert "pooled connections stayed busy" in str(pool_errors[0])
            assert report.duration_seconds <= 1.0 + MARGIN_SECONDS, report
            assert status.up
            assert seen == [True]
            assert status.failures == 0


async def test_a_stalled_redis_costs_one_deadline_and_readiness_follows_within_an_interval(
    redis_server: RedisServer,
) -> None:
    link = RedisLink(redis_server.url, clock=SystemClock())
    traffic = Traffic(link)
    async with running(link), anyio.create_task_group() as tg:
        for index in range(10):
            tg.start_soon(traffic.worker, index)
        await traffic.wait(ok=100)
        stalled = time.perf_counter()
        redis_server.pause()  # SIGSTOP
        try:
            with anyio.fail_after(WAIT_SECONDS):
                await link.wait_until(False)
            down_after = time.perf_counter() - stalled
            await traffic.wait(failed=30)  # three deadlines' worth on every worker
        finally:
            redis_server.resume()
        resumed = time.perf_counter()
        with anyio.fail_after(WAIT_SECONDS):
            await link.wait_until(True)
        healed_after = time.perf_counter() - resumed
        ok_before = traffic.ok
        await traffic.wait(ok=ok_before + 100)
        tg.cancel_scope.cancel()
    assert down_after <= HEALTH_INTERVAL + MARGIN_SECONDS, down_after
    assert healed_after <= 2.0, healed_after
    assert max(traffic.latencies) <= COMMAND_DEADLINE + MARGIN_SECONDS, max(traffic.latencies)
    assert any(isinstance(e.__cause__, CommandDeadlineExceeded) for e in traffic.failed)
    assert link.status().command_timeouts >= 1
    assert link.status().pool_timeouts == 0


async def test_a_blackholed_link_is_seen_within_one_interval_without_traffic(
    redis_server: RedisServer,
) -> None:
    async with FaultProxy("127.0.0.1", redis_server.port) as proxy:
        link = RedisLink(proxy.url_for("redis"), clock=SystemClock())
        async with running(link):
            await link.client.set("k", b"v")
            proxy.blackhole()
            started = time.perf_counter()
            with anyio.fail_after(WAIT_SECONDS):
                await link.wait_until(False)
            down_after = time.perf_counter() - started
            latencies: list[float] = []

            async def get(index: int) -> None:
                begun = time.perf_counter()
                try:
                    with link.map_errors("blackholed get"):
                        await link.client.get("k")
                finally:
                    latencies.append(time.perf_counter() - begun)

            report = await burst(20, get, errors=(RedisUnavailable,))
            assert report.failed == 20
            proxy.heal()
            healed = time.perf_counter()
            with anyio.fail_after(WAIT_SECONDS):
                await link.wait_until(True)
            healed_after = time.perf_counter() - healed
            assert await link.client.get("k") == b"v"
    assert down_after <= HEALTH_INTERVAL + MARGIN_SECONDS, down_after
    assert max(latencies) <= COMMAND_DEADLINE + MARGIN_SECONDS, max(latencies)
    assert healed_after <= 2.0, healed_after


async def test_after_a_kill_and_restart_it_heals_within_2_s_and_no_command_meets_a_stale_connection(
    redis_server: RedisServer,
) -> None:
    # The node's own link, from default settings.
    link = _redis_link(Settings(redis_url=Secret(redis_server.url)), SystemClock())
    assert link is not None

    async def get(index: int) -> None:
        with link.map_errors("get after heal"):
            await link.client.get(f"heal:{index}")

    heal_times: list[float] = []
    async with running(link):
        warm = await burst(20, get, errors=(RedisUnavailable,))  # 20 pooled connections
        assert warm.failed == 0
        for _ in range(3):
            redis_server.kill()
            with anyio.fail_after(WAIT_SECONDS):
                await link.wait_until(False)
                # Down long enough for the backoff to reach its cap (several seconds on main).
                await link.wait_for(probed(link.status().failures + 8))
            redis_server.restart()
            restarted = time.perf_counter()
            with anyio.fail_after(WAIT_SECONDS):
                await link.wait_until(True)
            heal_times.append(time.perf_counter() - restarted)
            after = await burst(20, get, errors=(RedisUnavailable,))
            assert (after.completed, after.failed) == (20, 0), after
    assert max(heal_times) <= 2.0, heal_times


def probed(count: int) -> Callable[[RedisStatus], bool]:
    """A predicate: the link has failed at least ``count`` health checks in all."""
    return lambda status: status.failures >= count


def test_the_nodes_default_link_probes_at_least_every_half_second_while_down() -> None:
    link = _redis_link(Settings(redis_url=Secret("redis://127.0.0.1:6390/0")), SystemClock())
    assert link is not None
    assert max(link.backoff_seconds(attempt) for attempt in range(100)) <= 0.5
