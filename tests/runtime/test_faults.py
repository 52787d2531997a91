"""The fault harness of ``runtime.testing``: the proxy, Redis control, load, end to end.

(The history checker's own tests are in ``test_history.py``.)

Every proxy mode and every Redis fault is exercised with real redis-py traffic
against a real ``redis-server``; clients use short timeouts (0.2 s) so a hang
shows up fast. Waits are bounded events, never sleeps; the load generators are
paced by a :class:`ManualClock` except in the end-to-end scenario.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from runtime._clock import SystemClock
from runtime._fanout import Gap, RedisFanout
from runtime._redis import RedisLink
from runtime.testing import (
    FaultProxy,
    History,
    ManualClock,
    RedisServer,
    burst,
    check_history,
    open_nodes,
    steady,
)

WAIT_SECONDS = 5.0
SHORT_TIMEOUT = 0.2


def client(url: str, *, timeout: float = SHORT_TIMEOUT) -> redis.asyncio.Redis:
    """A redis-py client that fails fast: short timeouts and no retries of its own."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def proxy_to(server: RedisServer) -> FaultProxy:
    """A proxy in front of ``server``, entered in the test itself: pytest-asyncio runs an async
    fixture's setup and teardown in different tasks, and the proxy's task group needs one."""
    return FaultProxy("127.0.0.1", server.port)


@contextlib.asynccontextmanager
async def clients(*urls: str, socket_timeout: float = SHORT_TIMEOUT) -> AsyncIterator[list[Any]]:
    made = [client(url, timeout=socket_timeout) for url in urls]
    try:
        yield made
    finally:
        for each in made:
            await each.aclose()


# -- the proxy -----------------------------------------------------------------------------


@pytest.mark.redis
async def test_proxy_forwards_and_counts(redis_url: str, redis_server_session: RedisServer) -> None:
    async with proxy_to(redis_server_session) as proxy:
        assert proxy.url_for("redis") == f"redis://127.0.0.1:{proxy.port}/0"
        async with clients(proxy.url_for("redis")) as (c,):
            assert await c.set("k", "v")
            assert await c.get("k") == b"v"
            stats = proxy.statistics()
            assert (stats.accepted, stats.open, stats.refused, stats.cut) == (1, 1, 0, 0)
            assert stats.bytes_to_target > 0 and stats.bytes_to_client > 0
        with anyio.fail_after(WAIT_SECONDS):
            await proxy.wait_for(lambda s: s.open == 0)


@pytest.mark.redis
async def test_latency_delays_each_direction_and_keeps_order(
    redis_url: str, redis_server_session: RedisServer
) -> None:
    async with (
        proxy_to(redis_server_session) as proxy,
        clients(proxy.url_for("redis"), socket_timeout=2.0) as (c,),
    ):
        await c.ping()
        proxy.latency(0.05)
        started = anyio.current_time()
        await c.ping()
        assert anyio.current_time() - started >= 0.1  # 0.05 s each way; a lower bound only
        async with c.pipeline(transaction=False) as pipe:
            for _ in range(50):
                pipe.incr("counter")
            assert await pipe.execute() == list(range(1, 51))
        proxy.heal()
        assert await c.get("counter") == b"50"


@pytest.mark.redis
async def test_cut_fails_the_command_in_flight_and_the_next_connects_again(
    redis_url: str,
    redis_server_session: RedisServer,
) -> None:
    async with (
        proxy_to(redis_server_session) as proxy,
        clients(proxy.url_for("redis"), socket_timeout=5.0) as (c,),
    ):
        await c.ping()
        sent = proxy.statistics().bytes_to_target

        async def cut_once_sent() -> None:
            await proxy.wait_for(lambda s: s.bytes_to_target > sent)
            assert proxy.cut() == 1

        with anyio.fail_after(WAIT_SECONDS):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cut_once_sent)
                with pytest.raises(redis.exceptions.ConnectionError):
                    await c.blpop(["never-pushed"], timeout=4)
            assert await c.ping()
        stats = proxy.statistics()
        assert (stats.accepted, stats.cut, stats.open) == (2, 1, 1)


@pytest.mark.redis
async def test_blackhole_hangs_commands_until_their_timeout_and_keeps_sockets_open(
    redis_url: str,
    redis_server_session: RedisServer,
) -> None:
    async with proxy_to(redis_server_session) as proxy:
        url = proxy.url_for("redis")
        async with clients(url, url) as (connected, fresh):
            await connected.ping()
            proxy.blackhole()
            with pytest.raises(redis.exceptions.TimeoutError):
                await connected.ping()
            with pytest.raises(redis.exceptions.TimeoutError):
                await fresh.ping()  # accepted, then never answered
            stats = proxy.statistics()
            assert (stats.accepted, stats.open) == (2, 2)  # a dead peer does not close
            proxy.heal()
            assert await connected.ping()
            assert await fresh.ping()


@pytest.mark.redis
async def test_half_open_stops_one_direction_only(
    redis_url: str, redis_server_session: RedisServer
) -> None:
    async with (
        proxy_to(redis_server_session) as proxy,
        clients(proxy.url_for("redis"), redis_server_session.url) as (c, direct),
    ):
        await c.ping()
        proxy.half_open()  # Redis's answers are lost; commands still arrive
        with pytest.raises(redis.exceptions.TimeoutError):
            await c.set("arrived", "1")
        assert await direct.get("arrived") == b"1"
        proxy.half_open("to_target")  # now commands are lost
        with pytest.raises(redis.exceptions.TimeoutError):
            await c.set("lost", "1")
        assert await direct.get("lost") is None
        proxy.heal()
        assert await c.set("healed", "1")
        assert await direct.get("healed") == b"1"


@pytest.mark.redis
async def test_refuse_resets_new_connections_and_spares_current_ones(
    redis_url: str, redis_server_session: RedisServer
) -> None:
    async with proxy_to(redis_server_session) as proxy:
        url = proxy.url_for("redis")
        async with clients(url, url) as (connected, fresh):
            await connected.ping()
            proxy.refuse()
            with pytest.raises(redis.exceptions.ConnectionError):
                await fresh.ping()
            assert await connected.ping()
            assert proxy.statistics().refused == 1
            proxy.heal()
            assert await fresh.ping()
            assert proxy.statistics().open == 2


@pytest.mark.redis
async def test_cut_with_reset_and_the_connection_bound(
    redis_url: str, redis_server_session: RedisServer
) -> None:
    server = redis_server_session
    async with (
        FaultProxy("127.0.0.1", server.port, max_connections=1) as proxy,
        clients(proxy.url_for("redis"), proxy.url_for("redis")) as (first, second),
    ):
        await first.ping()
        with pytest.raises(redis.exceptions.ConnectionError):
            await second.ping()  # past max_connections: reset at once
        assert proxy.statistics().refused == 1
        assert proxy.cut(reset=True) == 1
        with anyio.fail_after(WAIT_SECONDS):
            await proxy.wait_for(lambda s: s.open == 0)
        assert await second.ping()  # the one slot is free again
        with pytest.raises(redis.exceptions.ConnectionError):
            await first.ping()  # the reset connection fails; the bound refuses its reconnect


# -- Redis control -------------------------------------------------------------------------


@pytest.mark.redis
async def test_kill_then_restart_empty_without_aof(redis_server: RedisServer) -> None:
    port = redis_server.port
    async with clients(redis_server.url) as (c,):
        await c.set("k", "v")
        redis_server.kill()
        assert not redis_server.running
        with pytest.raises(redis.exceptions.ConnectionError):
            await c.get("k")
        redis_server.restart(empty=False)  # no AOF: nothing to keep
        assert redis_server.port == port
        assert await c.get("k") is None


@pytest.mark.redis
async def test_aof_keeps_data_across_kill_and_restart_unless_emptied() -> None:
    with RedisServer(appendonly=True) as server:
        async with clients(server.url) as (c,):
            await c.set("k", "v")
        server.kill()
        server.restart(empty=False)
        async with clients(server.url) as (c,):  # a fresh pool: the old one's sockets are dead
            assert await c.get("k") == b"v"
        server.restart(empty=True)
        async with clients(server.url) as (c,):
            assert await c.get("k") is None


@pytest.mark.redis
async def test_pause_stalls_commands_and_resume_brings_them_back(
    redis_server: RedisServer,
) -> None:
    async with clients(redis_server.url) as (c,):
        await c.ping()
        redis_server.pause()
        assert redis_server.paused
        with pytest.raises(redis.exceptions.TimeoutError):
            await c.ping()
        redis_server.resume()
        assert not redis_server.paused
        assert await c.ping()
    redis_server.pause()
    redis_server.stop()  # a paused server stops too
    assert not redis_server.running


@pytest.mark.redis
async def test_client_kill_pubsub_gives_a_gap_on_a_fanout_subscription(
    redis_server: RedisServer,
) -> None:
    fast: dict[str, Any] = {
        "health_interval_seconds": 0.05,
        "reconnect_base_seconds": 0.01,
        "reconnect_max_seconds": 0.1,
    }
    async with (
        RedisLink(redis_server.url, clock=SystemClock(), **fast) as link,
        anyio.create_task_group() as tg,
    ):
        await tg.start(link.run)
        fanout = RedisFanout(link)
        await tg.start(fanout.run)
        with anyio.fail_after(WAIT_SECONDS):
            await fanout.wait_connected()
            async with fanout.subscribe("room") as subscription:
                assert redis_server.client_kill("pubsub") == 1
                gap = await subscription.receive()
                assert isinstance(gap, Gap) and "reconnected" in gap.reason
                await fanout.publish("room", b"after")
                assert await subscription.receive() == b"after"
        tg.cancel_scope.cancel()


@pytest.mark.redis
async def test_client_kill_normal_closes_normal_connections(redis_server: RedisServer) -> None:
    async with clients(redis_server.url) as (c,):
        before = await c.client_id()
        assert redis_server.client_kill("normal") == 1
        async with clients(redis_server.url) as (observer,):
            ids = {entry["id"] for entry in await observer.client_list()}
        assert str(before) not in ids


@pytest.mark.redis
async def test_flushall_empties_every_database(redis_server: RedisServer) -> None:
    async with clients(redis_server.url, redis_server.url.replace("/0", "/1")) as (db0, db1):
        await db0.set("a", "1")
        await db1.set("b", "1")
        redis_server.flushall()
        assert (await db0.dbsize(), await db1.dbsize()) == (0, 0)


@pytest.mark.redis
async def test_starve_refuses_new_connections_with_max_clients(redis_server: RedisServer) -> None:
    async with clients(redis_server.url, redis_server.url) as (held, late):
        await held.ping()
        with redis_server.starve() as limit:
            assert limit == redis_server.connected_clients()
            with pytest.raises(redis.exceptions.ConnectionError, match="max number of clients"):
                await late.ping()
            assert await held.ping()
        assert await late.ping()


# -- load generators -----------------------------------------------------------------------


async def run_paced(clock: ManualClock, step: float, load: Any) -> Any:
    """Run ``load()`` while moving ``clock`` forward by ``step`` whenever everything waits."""
    result: list[Any] = []

    async def run() -> None:
        result.append(await load())
        tg.cancel_scope.cancel()

    with anyio.fail_after(WAIT_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            while True:
                await anyio.wait_all_tasks_blocked()
                clock.advance(step)
    return result[0]


async def test_steady_starts_on_its_deadlines() -> None:
    clock = ManualClock(start=0.0)
    starts: list[float] = []

    async def operation(index: int) -> None:
        starts.append(clock.monotonic())

    report = await run_paced(
        clock,
        0.0625,  # binary fractions: the clock lands on every deadline exactly
        lambda: steady(8, duration_seconds=1.0, operation=operation, clock=clock),
    )
    assert starts == [n / 8 for n in range(8)]
    assert (report.started, report.completed, report.late_starts) == (8, 8, 0)
    assert report.achieved_rate_per_second == 8
    assert report.stopped_by == "duration"


async def test_slow_operations_do_not_lower_the_rate() -> None:
    clock = ManualClock(start=0.0)

    async def slow(index: int) -> None:
        await clock.sleep(0.5)

    report = await run_paced(
        clock, 0.0625, lambda: steady(8, duration_seconds=1.0, operation=slow, clock=clock)
    )
    assert (report.started, report.late_starts) == (8, 0)
    # The last one ends 0.5 s after its start at 0.875 (the driver may step once more).
    assert 1.375 <= report.duration_seconds <= 1.375 + 0.0625


async def test_a_full_in_flight_limit_makes_late_starts_and_lowers_the_rate() -> None:
    clock = ManualClock(start=0.0)

    async def slow(index: int) -> None:
        await clock.sleep(0.5)

    report = await run_paced(
        clock,
        0.0625,
        lambda: steady(
            8, duration_seconds=10.0, max_operations=4, max_in_flight=1, operation=slow,
            clock=clock,
        ),
    )  # fmt: skip
    # Starts at 0, 0.5, 1.0 and 1.5 (each waits for the one before) against 0, 1/8, 2/8, 3/8.
    assert (report.started, report.stopped_by) == (4, "max_operations")
    assert report.late_starts == 3 and report.max_lateness_seconds == 1.125
    assert report.achieved_rate_per_second == 4 / 1.625


async def test_steady_counts_expected_errors_and_raises_others() -> None:
    clock = ManualClock(start=0.0)

    async def flaky(index: int) -> None:
        if index % 2:
            raise ConnectionError("down")

    report = await run_paced(
        clock,
        0.125,
        lambda: steady(
            8, duration_seconds=1.0, operation=flaky, errors=(ConnectionError,), clock=clock
        ),
    )
    assert (report.completed, report.failed) == (4, 4)
    with pytest.RaisesGroup(ConnectionError, flatten_subgroups=True):
        await run_paced(
            clock, 0.125, lambda: steady(8, duration_seconds=1.0, operation=flaky, clock=clock)
        )


async def test_burst_runs_every_operation_at_once() -> None:
    running = 0
    everyone_in = anyio.Event()

    async def operation(index: int) -> None:
        nonlocal running
        running += 1
        if running == 50:
            everyone_in.set()
        await everyone_in.wait()  # returns only once all 50 overlap

    with anyio.fail_after(WAIT_SECONDS):
        report = await burst(50, operation)
    assert (report.count, report.completed, report.failed) == (50, 50, 0)


# -- end to end ----------------------------------------------------------------------------


@pytest.mark.redis
async def test_two_nodes_and_counters_through_a_cut_proxy(
    redis_url: str, redis_server_session: RedisServer
) -> None:
    """A steady writer of increasing counters and a reader, through a proxy that cuts."""
    async with proxy_to(redis_server_session) as proxy:
        history = History()
        keys = [f"counter:{n}" for n in range(4)]
        cut_done = anyio.Event()
        halfway = anyio.Event()
        url = proxy.url_for("redis")
        errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

        async with (
            open_nodes(2, redis_url=url) as nodes,
            clients(url, url, redis_server_session.url, socket_timeout=0.5) as (
                writer,
                reader,
                direct,
            ),
        ):
            accepted_before = proxy.statistics().accepted

            async def write(index: int) -> None:
                key, started = keys[index % 4], history.now()
                try:
                    await writer.set(key, index)
                except errors:
                    history.write(
                        "writer", key, index, started=started, acked=history.now(), ok=False
                    )
                else:
                    history.write(
                        "writer", key, index, started=started, acked=history.now(), ok=True
                    )
                if index == 30:
                    halfway.set()

            async def read(index: int) -> None:
                key, started = keys[index % 4], history.now()
                try:
                    value = await reader.get(key)
                except errors:
                    return  # a failed read observes nothing
                history.read(
                    "reader", key, None if value is None else int(value),
                    started=started, finished=history.now(),
                )  # fmt: skip

            async def cut_halfway() -> None:
                await halfway.wait()
                assert proxy.cut() >= 4  # writer, reader and each node's link and pub/sub
                cut_done.set()

            with anyio.fail_after(WAIT_SECONDS * 2):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(cut_halfway)
                    for operation in (write, read):
                        tg.start_soon(
                            functools.partial(
                                steady, 50, duration_seconds=1.2, max_operations=60,
                                max_in_flight=1, operation=operation,
                            )
                        )  # fmt: skip
                assert cut_done.is_set()
                for node in nodes:
                    assert node.context.redis is not None
                    await node.context.redis.wait_until(True)
                final: dict[str, dict[str, int | None]] = {"redis": {}, "node-a": {}, "node-b": {}}
                for key in keys:
                    final["redis"][key] = _int(await direct.get(key))
                    for name, node in zip(("node-a", "node-b"), nodes, strict=True):
                        assert node.context.redis is not None
                        final[name][key] = _int(await node.context.redis.client.get(key))

            report = check_history(history, final=final)
            assert report.ok, report.summary()
            assert report.acknowledged >= 50 and report.reads >= 50, report.summary()
            assert proxy.statistics().accepted > accepted_before  # everyone connected again


def _int(value: bytes | str | None) -> int | None:
    return None if value is None else int(value)
