"""The cache over HTTP while Redis stalls, and under a burst of misses: the node's default link.

Two in-process nodes on one real Redis, with the node's DEFAULT Redis link
settings (command deadline 0.5 s, health interval 1 s), driven through their
Quart test clients:

* **stalls**: ~50 PUT/s and ~50 GET/s on node A's hot keys while Redis is
  SIGSTOPped for 5 s (and 12 s, behind the ``outage`` marker) and then
  SIGCONTed. No request waits much longer than one command deadline; writes
  during the stall are acknowledged degraded; GETs are served from L1 and say
  so; ``/readyz`` follows within one health interval and heals within 2 s; the
  history checker finds no lost update, no divergence and no stale read.
* **burst**: 600 simultaneous L1 misses of keys that exist in Redis, through
  the facade's ``get`` and over HTTP: every one answered with Redis's value,
  and the burst is no outage (no down transition, readiness 200, no Gap, no
  L1 drop).

The stall is timed by ticks on the load's own schedule, not by sleeps; latencies
are measured on the real clock (``time.perf_counter``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import pytest
import redis.asyncio
from quart.typing import TestClientProtocol as HttpClient

from actors.cache import Cache
from actors.cache._coherence import INVALIDATIONS
from actors.cache._messages import Invalidation
from actors.cache._routes import DEGRADED_HEADER
from runtime import Gap, RedisLink, Secret, Settings, SystemClock, TokenVerifier
from runtime.testing import History, HistoryReport, RedisServer, burst, check_history, steady

from .conftest import Nodes, open_cache_nodes
from .fault_support import redis_value, settled
from .test_cache_faults import SECRET

pytestmark = pytest.mark.redis
logger = logging.getLogger("tests.actors.cache")

#: The node's defaults, asserted below: every command ends within this, and readiness
#: follows a stall within one health interval.
COMMAND_DEADLINE = 0.5
HEALTH_INTERVAL = 1.0
#: Scheduling slack on top of a deadline on a busy 2-core machine (as the link's tests).
MARGIN_SECONDS = 0.25
HEAL_BOUND_SECONDS = 2.0

RATE = 50.0  # PUTs per second, and as many GETs
KEYS = 8
PAUSE_AT = 50  # the PUT that SIGSTOPs Redis: ~1 s into the load
AFTER_SECONDS = 2.5  # load after SIGCONT
READINESS_RATE = 20.0  # /readyz samples per second per node

# Default link settings: only what the test needs besides (a prefix, the admin secret).
DEFAULT_LINK = Settings(redis_prefix="sw", jwt_secret=Secret(SECRET))


def admin_headers() -> dict[str, str]:
    token = TokenVerifier(SECRET, clock=SystemClock()).issue("root", roles=("admin",))
    return {"Authorization": f"Bearer {token}"}


def assert_default_link(link: RedisLink) -> None:
    """The node's link has the defaults this module's bounds are about."""
    assert getattr(link.client, "deadline_seconds", None) == COMMAND_DEADLINE
    assert link._health_interval_seconds == HEALTH_INTERVAL


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


async def cached_int(cache: Cache, key: str) -> int | None:
    value = await cache.get(key)
    return None if value is None else int(value)


@dataclass
class Sample:
    """One ``/readyz`` answer: when it was asked (seconds since the stall began), on which node."""

    at: float
    node: str
    status: int


@dataclass
class StallRun:
    """What one stall measured (times in seconds, relative to SIGSTOP unless said)."""

    report: HistoryReport
    put_latencies: list[float] = field(default_factory=list)
    get_latencies: list[float] = field(default_factory=list)
    stall_puts: int = 0  # PUTs started while Redis was stopped
    degraded_writes: int = 0
    degraded_hits: int = 0  # GETs answered 200 with X-Cache-Degraded: 1
    down_after: dict[str, float] = field(default_factory=dict)  # link down, per node
    first_503: dict[str, float] = field(default_factory=dict)  # first /readyz 503, per node
    healed_after: dict[str, float] = field(default_factory=dict)  # first 200 after SIGCONT
    samples: list[Sample] = field(default_factory=list)
    stall_seconds: float = 0.0

    def summary(self) -> str:
        latencies = self.put_latencies + self.get_latencies
        return (
            f"stall {self.stall_seconds:.1f}s: {len(self.put_latencies)} PUTs "
            f"({self.stall_puts} during the stall), {len(self.get_latencies)} GETs; "
            f"max {max(latencies):.3f}s p99 {percentile(latencies, 0.99):.3f}s "
            f"(PUT max {max(self.put_latencies):.3f}s, GET max {max(self.get_latencies):.3f}s); "
            f"degraded writes {self.degraded_writes}, degraded hits {self.degraded_hits}; "
            f"link down after {self.down_after}, /readyz 503 after {self.first_503}, "
            f"200 again {self.healed_after} after SIGCONT; {self.report.summary()}"
        )


def record_transition(into: list[tuple[float, bool]], up: bool) -> None:
    into.append((time.perf_counter(), up))


async def finals(nodes: Nodes, url: str) -> dict[str, dict[str, int | None]]:
    a, b = nodes.caches
    keys = [f"hot:{k}" for k in range(KEYS)]
    async with contextlib.aclosing(redis.asyncio.Redis.from_url(url)) as client:
        return {
            "node-a": {key: await cached_int(a, key) for key in keys},
            "node-b": {key: await cached_int(b, key) for key in keys},
            "redis": {key: await redis_value(client, key) for key in keys},
        }


async def run_stall(server: RedisServer, stall_seconds: float) -> StallRun:
    """PUT and GET on A at ``RATE`` each; Redis stopped from PUT ``PAUSE_AT`` for the stall."""
    resume_at = PAUSE_AT + round(stall_seconds * RATE)
    duration = resume_at / RATE + AFTER_SECONDS
    headers = admin_headers()
    history = History()
    async with open_cache_nodes(2, server.url, settings=DEFAULT_LINK) as (nodes, pair):
        for link in nodes.links:
            assert_default_link(link)
        clients = {"a": pair[0].app.test_client(), "b": pair[1].app.test_client()}
        http_a = clients["a"]
        a = nodes.caches[0]
        marks: dict[str, float] = {}
        run = StallRun(report=check_history(History()), stall_seconds=stall_seconds)
        transitions: dict[str, list[tuple[float, bool]]] = {"a": [], "b": []}
        for name, link in zip(("a", "b"), nodes.links, strict=True):
            link.on_transition(functools.partial(record_transition, transitions[name]))

        for k in range(KEYS):  # every hot key exists (and is in A's L1) before the load
            response = await http_a.put(
                f"/api/cache/hot:{k}", data=str(k).encode(), headers=headers
            )
            assert response.status_code == 201
            history.write("a", f"hot:{k}", k, started=history.now(), acked=history.now(), ok=True)

        def stopped() -> bool:
            return "paused" in marks and "resumed" not in marks

        async def fault(i: int) -> None:
            # Ticks on the load's schedule (never late: they do nothing else) time the stall.
            if i == PAUSE_AT:
                server.pause()
                marks["paused"] = time.perf_counter()
            elif i == resume_at:
                server.resume()
                marks["resumed"] = time.perf_counter()

        async def put(i: int) -> None:
            value = KEYS + i
            key = f"hot:{value % KEYS}"
            during = stopped()
            started, begun = history.now(), time.perf_counter()
            response = await http_a.put(
                f"/api/cache/{key}", data=str(value).encode(), headers=headers
            )
            run.put_latencies.append(time.perf_counter() - begun)
            assert response.status_code == 201, await response.get_data()
            history.write("a", key, value, started=started, acked=history.now(), ok=True)
            run.stall_puts += during

        async def get(i: int) -> None:
            key = f"hot:{i % KEYS}"
            started, begun = history.now(), time.perf_counter()
            response = await http_a.get(f"/api/cache/{key}", headers=headers)
            run.get_latencies.append(time.perf_counter() - begun)
            finished = history.now()
            assert response.status_code == 200, await response.get_data()
            run.degraded_hits += response.headers.get(DEGRADED_HEADER) == "1"
            history.read(
                "a", key, int(await response.get_data()), started=started, finished=finished
            )

        async def ready(node: str, client: HttpClient) -> None:
            async def sample(i: int) -> None:
                asked = time.perf_counter()
                response = await client.get("/readyz")
                if "paused" in marks:
                    run.samples.append(Sample(asked - marks["paused"], node, response.status_code))

            await steady(READINESS_RATE, duration_seconds=duration, operation=sample)

        async with anyio.create_task_group() as tg:
            for node, client in clients.items():
                tg.start_soon(ready, node, client)
            tg.start_soon(lambda: steady(RATE, duration_seconds=duration, operation=get))
            tg.start_soon(lambda: steady(RATE, duration_seconds=duration, operation=fault))
            load = await steady(RATE, duration_seconds=duration, operation=put)
        assert "resumed" in marks, "the load ended before SIGCONT"
        assert load.completed >= RATE * duration * 0.9, load
        await settled(nodes)
        run.degraded_writes = (await a.statistics()).degraded_writes
        final = await finals(nodes, server.url)
    run.report = check_history(history, final=final)
    paused, resumed = marks["paused"], marks["resumed"]
    for node, changes in transitions.items():
        downs = [at - paused for at, up in changes if not up and at >= paused]
        if downs:
            run.down_after[node] = downs[0]
        first = next((s.at for s in run.samples if s.node == node and s.status == 503), None)
        if first is not None:
            run.first_503[node] = first
        back = [
            s.at - (resumed - paused)
            for s in run.samples
            if s.node == node and s.status == 200 and s.at >= resumed - paused
        ]
        if back:
            run.healed_after[node] = back[0]
    logger.info("stall scenario: %s", run.summary())
    return run


def assert_stall_contract(run: StallRun) -> None:
    latencies = run.put_latencies + run.get_latencies
    # No request waits longer than one command deadline, plus scheduling slack.
    assert max(latencies) <= COMMAND_DEADLINE + MARGIN_SECONDS, run.summary()
    # Writes during the stall were acknowledged (201, above) and counted as degraded.
    assert run.stall_puts >= RATE * run.stall_seconds * 0.9, run.summary()
    assert run.degraded_writes >= run.stall_puts - RATE * (HEALTH_INTERVAL + MARGIN_SECONDS)
    # GETs of keys in L1 were served (200, above), saying they were degraded while down.
    assert run.degraded_hits >= RATE * (run.stall_seconds - HEALTH_INTERVAL - 1.0), run.summary()
    stall = run.stall_seconds
    for node in ("a", "b"):
        # Readiness: 503 within one interval of SIGSTOP, and until SIGCONT ...
        assert run.down_after.get(node, math.inf) <= HEALTH_INTERVAL + MARGIN_SECONDS, run.summary()
        assert run.first_503.get(node, math.inf) <= HEALTH_INTERVAL + MARGIN_SECONDS, run.summary()
        during = [
            s
            for s in run.samples
            if s.node == node and HEALTH_INTERVAL + MARGIN_SECONDS <= s.at < stall
        ]
        assert during, run.summary()
        assert all(s.status == 503 for s in during), during
        # ... 200 within 2 s of SIGCONT, and from then on.
        assert run.healed_after.get(node, math.inf) <= HEAL_BOUND_SECONDS, run.summary()
        after = [s for s in run.samples if s.node == node and s.at >= stall + HEAL_BOUND_SECONDS]
        assert after, run.summary()
        assert all(s.status == 200 for s in after), after
    report = run.report
    # Converged: no lost update, and A, B and Redis agree on every key.
    assert report.acknowledged == report.writes
    assert (report.lost_updates, report.divergent_keys) == (0, 0), report.summary()
    # A's own reads right after the heal: the pub/sub Gap drops A's L1 except the keys whose
    # writes have not reached Redis yet, so no GET reads Redis's pre-stall value of them.
    assert report.out_of_order == 0, report.summary()


async def test_a_5_s_redis_stall_costs_no_request_more_than_one_deadline(
    redis_server: RedisServer,
) -> None:
    assert_stall_contract(await run_stall(redis_server, 5.0))


@pytest.mark.outage
async def test_a_12_s_redis_stall_costs_no_request_more_than_one_deadline(
    redis_server: RedisServer,
) -> None:
    assert_stall_contract(await run_stall(redis_server, 12.0))


# -- a burst of misses ---------------------------------------------------------------------

BURST = 600


@contextlib.asynccontextmanager
async def burst_nodes(url: str) -> AsyncIterator[tuple[Nodes, HttpClient]]:
    async with open_cache_nodes(2, url, settings=DEFAULT_LINK) as (nodes, pair):
        for link in nodes.links:
            assert_default_link(link)
        yield nodes, pair[1].app.test_client()


async def test_a_burst_of_600_misses_reads_redis_and_is_no_outage(redis_url: str) -> None:
    headers = admin_headers()
    async with burst_nodes(redis_url) as (nodes, http_b):
        a, b = nodes.caches
        link_b = nodes.links[1]
        # A writes the keys: they are in Redis, not in B's L1 (B has never read them).
        for name in ("py", "http"):

            async def put(i: int, name: str = name) -> None:
                await a.set(f"{name}:{i}", i)

            report = await burst(BURST, put)
            assert report.completed == BURST, report
        await a.set("held", -1)
        await settled(nodes)
        assert await b.get("held") == -1  # now in B's L1
        before = await b.statistics()
        seen: list[bool] = []
        link_b.on_transition(seen.append)
        readiness: list[int] = []

        async def get(i: int) -> None:
            assert await b.get(f"py:{i}") == i
            if i % 50 == 0:
                readiness.append((await http_b.get("/readyz")).status_code)

        python = await burst(BURST, get)
        assert python.completed == BURST, python

        async def http_get(i: int) -> None:
            response = await http_b.get(f"/api/cache/http:{i}", headers=headers)
            assert response.status_code == 200, (i, response.status_code)
            assert DEGRADED_HEADER not in response.headers
            assert await response.get_json() == i
            if i % 50 == 0:
                readiness.append((await http_b.get("/readyz")).status_code)

        over_http = await burst(BURST, http_get)
        assert over_http.completed == BURST, over_http
        after = await b.statistics()
        status = link_b.status()
        # No false outage: the link never went down, readiness stayed 200 ...
        assert seen == [], seen
        assert status.up and (status.failures, status.reconnects) == (0, 0), status
        assert readiness == [200] * (2 * BURST // 50), readiness
        assert (await http_b.get("/readyz")).status_code == 200
        # ... every miss asked Redis and found its key (none answered 404/503 unasked) ...
        assert after.l2_hits - before.l2_hits == 2 * BURST, after
        assert (after.degraded_reads, after.l2_errors) == (before.degraded_reads, before.l2_errors)
        # ... and L1 was not dropped: no reset, and the held key is still an L1 hit.
        assert after.coherence_resets == before.coherence_resets, after
        assert await b.get("held") == -1
        assert (await b.statistics()).l2_hits == after.l2_hits
        # No Gap: the pub/sub connection was not rebuilt; the next event is this ping.
        await INVALIDATIONS.bind(nodes.fanouts[0]).publish(Invalidation(node="after-burst"))
        with anyio.fail_after(5):
            event = await nodes.sentinels[1].receive()
        assert not isinstance(event, Gap), event
        assert b"after-burst" in event
        logger.info(
            "burst of %d misses: facade %.3fs, HTTP %.3fs; pool timeouts %d, command timeouts %d",
            BURST,
            python.duration_seconds,
            over_http.duration_seconds,
            status.pool_timeouts,
            status.command_timeouts,
        )
