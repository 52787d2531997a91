"""RedisLink: health, reconnects with backoff, error mapping, redaction; and the test server."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis.exceptions

from runtime._clock import ManualClock, SystemClock
from runtime._errors import RedisUnavailable
from runtime._redis import RedisLink, RedisStatus, backoff_seconds, redact_url, redis_key
from runtime._redis_server import RedisServer, free_port

FAST: dict[str, Any] = {
    "health_interval_seconds": 0.05,
    "reconnect_base_seconds": 0.01,
    "reconnect_max_seconds": 0.1,
}
WAIT_SECONDS = 10


class FakePing:
    """Stands in for ``client.ping``: fails ``failures`` times, then answers; records when."""

    def __init__(self, clock: ManualClock, failures: int) -> None:
        self.clock = clock
        self.failures = failures
        self.times: list[float] = []
        self._called: anyio.Event | None = None

    async def __call__(self) -> bool:
        self.times.append(self.clock.monotonic())
        if self._called is not None:
            self._called.set()
        if len(self.times) <= self.failures:
            raise redis.exceptions.ConnectionError("Connection refused")
        return True

    async def wait_calls(self, count: int) -> None:
        with anyio.fail_after(WAIT_SECONDS):
            while len(self.times) < count:
                self._called = anyio.Event()
                await self._called.wait()


def test_redis_key_joins_parts() -> None:
    assert redis_key("cache", "user:1") == "cache:user:1"
    with pytest.raises(ValueError, match="at least one part"):
        redis_key()


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    def schedule(jitter: float) -> list[float]:
        return [
            backoff_seconds(n, base_seconds=0.5, max_seconds=4.0, jitter=lambda: jitter)
            for n in range(7)
        ]

    assert schedule(1.0) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert schedule(0.5) == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert schedule(0.0) == [0.0] * 7
    huge = backoff_seconds(10_000, base_seconds=0.5, max_seconds=4.0, jitter=lambda: 1.0)
    assert huge == 4.0
    with pytest.raises(ValueError, match="backoff attempt must be >= 0, got -1"):
        backoff_seconds(-1, base_seconds=0.5, max_seconds=4.0, jitter=lambda: 1.0)


async def test_reconnect_waits_follow_the_backoff_on_the_clock() -> None:
    clock = ManualClock(start=1000.0)
    async with RedisLink(
        f"redis://127.0.0.1:{free_port()}/0",
        clock=clock,
        health_interval_seconds=10.0,
        reconnect_base_seconds=1.0,
        reconnect_max_seconds=4.0,
        jitter=lambda: 1.0,
    ) as link:
        ping = FakePing(clock, failures=4)
        link._health.ping = ping  # type: ignore[method-assign,assignment]
        async with anyio.create_task_group() as tg:
            await tg.start(link.run)
            await ping.wait_calls(1)
            assert link.status().failures == 1
            clock.advance(0.999)
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            assert ping.times == [1000.0]  # no timer fired, so no attempt

            for step, calls in ((0.001, 2), (2.0, 3), (4.0, 4), (4.0, 5), (9.5, 6)):
                clock.advance(step)
                await ping.wait_calls(calls)
            assert ping.times == [1000.0, 1001.0, 1003.0, 1007.0, 1011.0, 1020.5]
            assert link.status() == RedisStatus(
                configured=True,
                up=True,
                since_seconds=9.5,  # up since 1011, asked at 1020.5 (interval minus ping deadline)
                reconnects=0,
                failures=4,
                last_error="ConnectionError: Connection refused",
                url=link.status().url,
            )
            tg.cancel_scope.cancel()


async def test_report_failure_rechecks_at_once_and_callbacks_see_transitions() -> None:
    clock = ManualClock()
    async with RedisLink(f"redis://127.0.0.1:{free_port()}/0", clock=clock) as link:
        answers = iter([True, False])

        async def ping() -> bool:
            if next(answers):
                return True
            raise redis.exceptions.TimeoutError("Timeout reading from socket")

        link._health.ping = ping  # type: ignore[method-assign,assignment]
        seen: list[bool] = []
        remove = link.on_transition(seen.append)
        async with anyio.create_task_group() as tg:
            await tg.start(link.run)
            with anyio.fail_after(WAIT_SECONDS):
                await link.wait_until(True)
            # No time passes: the report alone makes the loop ping again.
            link.report_failure(redis.exceptions.ConnectionError("reset by peer"))
            with anyio.fail_after(WAIT_SECONDS):
                await link.wait_until(False)
            assert seen == [True, False]
            assert link.status().last_error == "TimeoutError: Timeout reading from socket"
            remove()
            remove()  # removing twice is harmless
            tg.cancel_scope.cancel()


async def test_map_errors_raises_redis_unavailable_with_exact_text() -> None:
    async with RedisLink(f"redis://127.0.0.1:{free_port()}/0", clock=ManualClock()) as link:
        cause = redis.exceptions.ConnectionError("Connection refused")
        with pytest.raises(RedisUnavailable) as caught, link.map_errors("cache.get"):
            raise cause
        assert (
            str(caught.value)
            == "redis unavailable during cache.get: ConnectionError: Connection refused"
        )
        assert caught.value.operation == "cache.get"
        assert caught.value.__cause__ is cause

        with pytest.raises(RedisUnavailable) as caught, link.map_errors("cache.put"):
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        assert str(caught.value) == (
            "redis unavailable during cache.put: TimeoutError: Timeout reading from socket"
        )

        # Not a connection problem: it passes through untouched.
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"), link.map_errors("x"):
            raise redis.exceptions.ResponseError("WRONGTYPE Operation against a key")

        # A real refused connection (nothing listens on the port).
        with pytest.raises(RedisUnavailable) as caught, link.map_errors("ping"):
            await link.client.ping()
        assert str(caught.value).startswith("redis unavailable during ping: ConnectionError: ")
        assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6390/0", "redis://:***@127.0.0.1:6390/0"),
        ("redis://alice:s3cret@redis.internal:6390/2", "redis://alice:***@redis.internal:6390/2"),
        ("redis://127.0.0.1:6390/0?password=s3cret", "redis://127.0.0.1:6390/0?password=***"),
        ("redis://127.0.0.1:6390/0", "redis://127.0.0.1:6390/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


async def test_status_hides_the_password() -> None:
    clock = ManualClock(start=5.0)
    async with RedisLink("redis://:s3cret@127.0.0.1:6390/0", clock=clock) as link:
        assert link.status() == RedisStatus(
            configured=True,
            up=False,
            since_seconds=0.0,
            reconnects=0,
            failures=0,
            last_error=None,
            url="redis://:***@127.0.0.1:6390/0",
        )
        assert "s3cret" not in repr(link)
    assert RedisStatus(configured=False).up is False


async def test_since_seconds_is_how_long_the_state_has_held() -> None:
    # A duration, not the clock's reading: a node up 3 s reports 3, not its monotonic time.
    clock = ManualClock(start=480.0)
    async with RedisLink(f"redis://127.0.0.1:{free_port()}/0", clock=clock) as link:
        assert link.status().since_seconds == 0.0
        clock.advance(3.0)
        assert link.status().since_seconds == 3.0


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="health_interval_seconds must be > 0, got 0"):
        RedisLink("redis://127.0.0.1:6390/0", clock=ManualClock(), health_interval_seconds=0)
    with pytest.raises(ValueError, match="reconnect_base_seconds <= reconnect_max_seconds"):
        RedisLink(
            "redis://127.0.0.1:6390/0",
            clock=ManualClock(),
            reconnect_base_seconds=2.0,
            reconnect_max_seconds=1.0,
        )


@pytest.mark.redis
async def test_down_at_boot_then_up_then_outage_and_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="runtime.redis")
    port = free_port()
    async with RedisLink(
        f"redis://:s3cret@127.0.0.1:{port}/0", clock=SystemClock(), **FAST
    ) as link:
        seen: list[bool] = []
        link.on_transition(seen.append)
        async with anyio.create_task_group() as tg:
            await tg.start(link.run)  # returns at once although nothing listens
            with anyio.fail_after(WAIT_SECONDS):
                status = await link.wait_for(lambda status: status.failures >= 3)
            assert not status.up
            assert status.last_error is not None
            assert status.last_error.startswith("ConnectionError: ")

            # The server wants no password; give it one so the link's AUTH succeeds.
            with RedisServer(port=port) as server:
                _set_password(server, "s3cret")
                with anyio.fail_after(WAIT_SECONDS):
                    await link.wait_until(True)
                assert link.status().reconnects == 0

                server.stop()
                with anyio.fail_after(WAIT_SECONDS):
                    await link.wait_until(False)
                server.start()
                _set_password(server, "s3cret")
                with anyio.fail_after(WAIT_SECONDS):
                    await link.wait_until(True)
                assert link.status().reconnects == 1
            tg.cancel_scope.cancel()
    assert seen == [True, False, True]
    assert "s3cret" not in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once at boot, once for the outage: not once per attempt
    assert warnings[0].startswith(f"redis redis://:***@127.0.0.1:{port}/0 is unavailable: ")
    assert warnings[1].startswith(f"redis redis://:***@127.0.0.1:{port}/0 is down: ")


def _set_password(server: RedisServer, password: str) -> None:
    client = redis.Redis.from_url(server.url)
    try:
        client.config_set("requirepass", password)
    finally:
        client.close()


@pytest.mark.redis
def test_redis_server_restarts_on_the_same_port() -> None:
    server = RedisServer()
    with server:
        port, url = server.port, server.url
        assert url == f"redis://127.0.0.1:{port}/0"
        assert port != 6379
        server.restart()
        assert server.running
        assert server.port == port
        client = redis.Redis.from_url(url)
        try:
            assert client.ping()
        finally:
            client.close()
    assert not server.running
    server.stop()  # idempotent
