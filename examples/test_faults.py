# examples/test_faults.py
"""Testing under faults: a pytest file to copy into your project.

A client writes an increasing counter through a :class:`FaultProxy` in front of
a private ``redis-server`` (the ``redis_server`` fixture); the proxy cuts the
connection mid-run, and the history checker finds no acknowledged write lost.
The proxy is entered in the test itself (not in an async fixture), and the
load is bounded in time and count.
"""

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from runtime.testing import FaultProxy, History, RedisServer, check_history, steady


@pytest.mark.redis
@pytest.mark.asyncio
async def test_counters_survive_a_cut(redis_server: RedisServer) -> None:
    history = History()
    async with FaultProxy("127.0.0.1", redis_server.port) as proxy:
        client = redis.asyncio.Redis.from_url(
            proxy.url_for("redis"), socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )

        async def write(n: int) -> None:
            started = history.now()
            try:
                await client.set("counter", n)
            except (redis.ConnectionError, redis.TimeoutError):
                history.write("w", "counter", n, started=started, acked=history.now(), ok=False)
            else:
                history.write("w", "counter", n, started=started, acked=history.now(), ok=True)
            if n == 20:
                proxy.cut()

        load = await steady(50, duration_seconds=1.0, operation=write, max_in_flight=1)
        value = await client.get("counter")
        final = {"redis": {"counter": None if value is None else int(value)}}
        await client.aclose()
        assert proxy.statistics().cut == 1  # the fault happened
    assert load.started == load.completed > 20
    report = check_history(history, final=final)
    assert report.ok, report.summary()
