"""The cache actor against cashews, aiocache and raw redis-py, in one run.

    python bench/bench_cache.py [--ops 100000] [--keys 1000] [--runs 3] [--quick]
        [--loop asyncio|uvloop] [--value dict|bytes] [--writers 50]

Starts a private ``redis-server`` (``runtime.testing.RedisServer``) and measures,
on one event loop for every contender (``--loop``: the default asyncio loop, as
in the peers' harness, or uvloop), with one value for every get/set row
(``--value``: a small dict, as in the peers' harness, or 100 bytes), medians of
``--runs`` runs (contenders of a table are measured back to back in each run, in
a rotating order; a ratio is the median of the per-run ratios to the table's
baseline):

1. **L1 hit ``get``**: ``await cache.get(key)`` in one coroutine over ``--keys``
   pre-set keys, against cashews ``mem://``, cashews on Redis with its
   client-side layer (``client_side=True``) and aiocache ``SimpleMemoryCache``.
2. **L2 ``get``**: ``Cache.get`` when L1 misses and Redis has the entry,
   against raw redis-py ``GET`` on the same client (same settings, hiredis)
   and cashews on Redis without the client-side layer. The main row reads
   every key exactly once through a freshly started cache (default config,
   empty L1): each get is a genuine L1 miss, a Redis ``GET``, a decode and an
   L1 fill. The same for ``get_or_set`` (its miss goes through the actor),
   and ``CacheSettings(l1_max_entries=1)`` over ``--keys`` keys (nearly every
   get misses L1).
3. **``set``**: L1 only (``l2=None``) against cashews ``mem://``; write-through
   to Redis (each call is one round trip: the ``SET`` and the invalidation
   ``PUBLISH`` in one script) against raw ``SET PX`` (which encodes a dict value
   per call, as an application must), ``SET`` + ``PUBLISH`` done by hand, and
   cashews on Redis with and without its client-side layer; and ``--writers``
   tasks setting at once against raw ``SET PX`` from as many tasks on the same
   client (same pool).
4. **Hit rate** on seeded traces (``_hit_rates.py``): Zipf s = 0.9 and 1.0,
   Zipf polluted by one-off scans, and a loop 10% larger than the cache.
   ``L1Store`` driven directly as a read-through cache against theine (the
   W-TinyLFU peer), an ``OrderedDict`` LRU of the same size (the floor) and
   Belady's OPT (the ideal); then the Zipf traces through the whole ``Cache``
   with Redis via ``get_or_set`` (L1 and combined L1+L2 hit rates; only first
   touches should reach the loader).

Rows whose every operation is a Redis round trip use ``--redis-ops``
operations (default ``--ops / 10``). ``--quick`` shrinks everything about 10x
(Redis rows and the Zipf section 20x), for a smoke run of under a minute.
Prints markdown tables, ready for the README.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from _common import (
    Body,
    Contender,
    HitRates,
    Prepare,
    Row,
    Zipf,
    environment_lines,
    get_loop,
    hit_rate_table,
    markdown_table,
    measure_table,
    progress,
    ready,
    replay,
    set_loop,
    shuffled_cycle,
    throughput_table,
    verdict,
)
from _hit_rates import (
    PolicyRates,
    policy_rates,
    policy_table,
    policy_targets,
    theine_version,
    traces,
)

from actors.cache import Cache, CacheSettings, RedisL2, cache_child
from runtime import ChildSpec, RedisFanout, RedisLink, SystemClock
from runtime.testing import RedisServer, open_system

cashews: Any
aiocache: Any
try:
    import cashews  # type: ignore[no-redef,unused-ignore]
except ImportError:  # the "bench" extra is not installed
    cashews = None
try:
    import aiocache  # type: ignore[no-redef,unused-ignore]
except ImportError:
    aiocache = None

VALUE = b"v" * 100  # the bytes value (``--value bytes``; the hit-rate section's entries)
#: The dict value (``--value dict``, the default), as in the peers' harness.
DICT_VALUE: dict[str, object] = {
    "id": 12345,
    "name": "user-12345",
    "email": "user-12345@example.com",
    "tags": ["alpha", "beta", "gamma"],
}
TTL_SECONDS = 3600.0
SEED = 42
SKEWS = (0.9, 1.0)


@dataclass(frozen=True)
class Plan:
    ops: int
    keys: int
    runs: int
    redis_ops: int
    zipf_requests: int
    zipf_keys: int
    zipf_capacity: int
    workers: int
    writers: int
    sections: frozenset[str]
    quick: bool
    loop: str
    value: str


class Bench:
    """The measurements; holds the shared Redis link, fanout and key sequences."""

    def __init__(self, plan: Plan, url: str, link: RedisLink, fanout: RedisFanout) -> None:
        self.plan = plan
        self.url = url
        self.link = link
        self.fanout = fanout
        self.client = link.client
        self.keys = [f"k{i}" for i in range(plan.keys)]
        self.sequence = shuffled_cycle(self.keys, plan.ops, SEED)
        self.redis_sequence = self.sequence[: plan.redis_ops]
        self.l1_entries = max(10_000, plan.keys)
        self.value: object = DICT_VALUE if plan.value == "dict" else VALUE
        self.notes: list[str] = []
        self._systems = 0

    # -- plumbing -------------------------------------------------------------------------

    async def commands(self) -> int:
        """Commands Redis has processed so far (``INFO stats``)."""
        info = await self.client.info("stats")
        return int(info["total_commands_processed"])

    async def cashews(self, stack: AsyncExitStack, url: str, **options: object) -> Any:
        """A cashews cache set up on ``url``, closed when ``stack`` closes."""
        cache = cashews.Cache()
        cache.setup(url, **options)  # type: ignore[arg-type,unused-ignore]
        await cache.init()
        stack.push_async_callback(cache.close)
        return cache

    def switchyard(
        self, prefix: str, *, redis: bool, l1_max_entries: int | None = None
    ) -> tuple[ChildSpec, Cache]:
        """A cache to run under ``open_system``: L1 only, or with Redis as L2 and fanout."""
        self._systems += 1
        actor_id = f"cache-{self._systems}"
        settings = CacheSettings(l1_max_entries=l1_max_entries or self.l1_entries)
        if not redis:
            return cache_child(settings=settings, prefix=prefix, actor_id=actor_id)
        return cache_child(
            settings=settings,
            prefix=prefix,
            l2=RedisL2(self.link),
            fanout=self.fanout,
            actor_id=actor_id,
        )

    # -- 1. L1 hit get --------------------------------------------------------------------

    async def l1_get(self, l1_only: Cache, with_redis: Cache) -> tuple[list[Row], str]:
        plan, keys, sequence, value = self.plan, self.keys, self.sequence, self.value
        for cache in (l1_only, with_redis):
            for key in keys:
                await cache.set(key, value, ttl_seconds=TTL_SECONDS)
        contenders = [
            Contender(
                Row("Switchyard `Cache.get`, L1 hit (`l2=None`)", ops=plan.ops),
                ready(get_loop(l1_only.get, sequence, value)),
            ),
            Contender(
                Row("Switchyard `Cache.get`, L1 hit (L2 = Redis)", ops=plan.ops),
                ready(get_loop(with_redis.get, sequence, value)),
            ),
        ]
        baseline = contenders[0]
        stack = AsyncExitStack()
        if cashews is not None:
            memory = await self.cashews(stack, "mem://", size=max(1000, plan.keys))
            client_side = await self.cashews(stack, self.url, client_side=True)
            for key in keys:
                await memory.set(key, value, expire=TTL_SECONDS)
                await client_side.set(f"cs:{key}", value, expire=TTL_SECONDS)
            baseline = Contender(
                Row("cashews `mem://` get", ops=plan.ops),
                ready(get_loop(memory.get, sequence, value)),
            )
            contenders += [
                baseline,
                Contender(
                    Row(
                        "cashews Redis `client_side=True` get",
                        note="local hits (Redis CLIENT TRACKING BCAST)",
                        ops=plan.ops,
                    ),
                    ready(get_loop(client_side.get, [f"cs:{key}" for key in sequence], value)),
                ),
            ]
        if aiocache is not None:
            default = aiocache.SimpleMemoryCache()
            no_timeout = aiocache.SimpleMemoryCache(timeout=None)
            for key in keys:
                await default.set(key, value, ttl=TTL_SECONDS)
                await no_timeout.set(key, value, ttl=TTL_SECONDS)
            contenders += [
                Contender(
                    Row(
                        "aiocache `SimpleMemoryCache()` get",
                        note="default `timeout=5`: an `asyncio.wait_for` per call",
                        ops=plan.ops,
                    ),
                    ready(get_loop(default.get, sequence, value)),
                ),
                Contender(
                    Row("aiocache `SimpleMemoryCache(timeout=None)` get", ops=plan.ops),
                    ready(get_loop(no_timeout.get, sequence, value)),
                ),
            ]
        async with stack:
            return await measure_table(contenders, self.plan.runs, self.commands, baseline)

    # -- 2. L2 get ------------------------------------------------------------------------

    async def _clone_cold_keys(self, writer: Cache, count: int) -> list[str]:
        """Store ``count`` entries in Redis (not in any L1) that a cache reads as its own.

        One entry is written through the API; its Redis blob is then copied
        under ``count`` more names of the same namespace with a pipeline, so
        the set-up takes a second instead of ``count`` write-throughs.
        """
        keyspace = writer.keyspace
        await writer.set("probe", self.value, ttl_seconds=TTL_SECONDS)
        blob = await self.client.get(keyspace.full_key("probe"))
        assert blob is not None
        cold = [f"cold:{i}" for i in range(count)]
        for start in range(0, count, 1000):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in cold[start : start + 1000]:
                    pipe.set(keyspace.full_key(key), blob, px=int(TTL_SECONDS * 1000))
                await pipe.execute()
        random.Random(SEED).shuffle(cold)
        return cold

    async def l2_get(self, writer: Cache, writer_prefix: str) -> tuple[list[Row], str]:
        plan, value = self.plan, self.value
        cold = await self._clone_cold_keys(writer, plan.redis_ops)
        names = [writer.keyspace.full_key(key) for key in cold]
        cold_stats: dict[str, list[tuple[int, int, int]]] = {"get": [], "get_or_set": []}

        async def must_not_load() -> bytes:
            raise AssertionError("the loader ran: the entry was not found in Redis")

        def fresh_reader(kind: str) -> Prepare:
            """A cache started for this run only, so its L1 is empty: every read misses L1."""

            @asynccontextmanager
            async def prepare() -> AsyncIterator[Body]:
                spec, cache = self.switchyard(writer_prefix, redis=True)
                async with open_system([spec]):
                    if kind == "get":
                        yield get_loop(cache.get, cold, value)
                    else:
                        yield get_loop(
                            functools.partial(cache.get_or_set, loader=must_not_load), cold, value
                        )
                    stats = await cache.statistics()
                    cold_stats[kind].append((stats.l1_hits, stats.l2_hits, stats.loader_calls))

            return prepare

        tiny_spec, tiny = self.switchyard(writer_prefix, redis=True, l1_max_entries=1)
        tiny_sequence = shuffled_cycle(cold[: plan.keys], plan.redis_ops, SEED)
        raw = Contender(
            Row("raw redis-py `GET` (same client, hiredis)", ops=plan.redis_ops),
            ready(get_loop(self.client.get, names, expected=await self.client.get(names[-1]))),
        )
        contenders = [
            Contender(
                Row(
                    "Switchyard `Cache.get`, L1 miss -> Redis",
                    note=f"fresh cache each run, {plan.redis_ops:,} distinct keys read once",
                    ops=plan.redis_ops,
                ),
                fresh_reader("get"),
            ),
            Contender(
                Row(
                    "Switchyard `Cache.get_or_set`, L1 miss -> Redis",
                    note="as above; Redis is read in the caller's task, then L1 is filled",
                    ops=plan.redis_ops,
                ),
                fresh_reader("get_or_set"),
            ),
            Contender(
                Row(
                    "Switchyard `Cache.get`, `CacheSettings(l1_max_entries=1)`",
                    note=f"{plan.keys:,} keys cycled",
                    ops=plan.redis_ops,
                ),
                ready(get_loop(tiny.get, tiny_sequence, value)),
            ),
            raw,
        ]
        stack = AsyncExitStack()
        if cashews is not None:
            remote = await self.cashews(stack, self.url)
            for key in self.keys:
                await remote.set(f"cr:{key}", value, expire=TTL_SECONDS)
            contenders.append(
                Contender(
                    Row("cashews Redis get (no client side)", ops=plan.redis_ops),
                    ready(
                        get_loop(remote.get, [f"cr:{key}" for key in self.redis_sequence], value)
                    ),
                )
            )
        async with stack, open_system([tiny_spec]):
            result = await measure_table(contenders, self.plan.runs, self.commands, raw)
            tiny_stats = await tiny.statistics()
        for kind, samples in cold_stats.items():
            l1_hits, l2_hits, loads = (sum(column) for column in zip(*samples, strict=True))
            self.notes.append(
                f"L2 `{kind}`, fresh cache: {l1_hits} L1 hits, {l2_hits:,} L2 hits and "
                f"{loads} loader calls over {len(samples)} runs of {plan.redis_ops:,} reads."
            )
        self.notes.append(
            f"L2 get, `l1_max_entries=1`: {tiny_stats.l1_hits:,} L1 hits of "
            f"{tiny_stats.lookups:,} lookups: every get reads Redis, and each fill "
            "evicts the previous key from the one-entry L1."
        )
        return result

    # -- 3. set ---------------------------------------------------------------------------

    async def set_l1(self, l1_only: Cache) -> tuple[list[Row], str]:
        plan, value = self.plan, self.value
        ours = Contender(
            Row("Switchyard `Cache.set`, L1 only (`l2=None`)", ops=plan.ops),
            ready(set_loop(l1_only.set, self.sequence, value, ttl_seconds=TTL_SECONDS)),
        )
        contenders = [ours]
        baseline = ours
        stack = AsyncExitStack()
        if cashews is not None:
            memory = await self.cashews(stack, "mem://", size=max(1000, plan.keys))
            baseline = Contender(
                Row("cashews `mem://` set", ops=plan.ops),
                ready(set_loop(memory.set, self.sequence, value, expire=TTL_SECONDS)),
            )
            contenders.append(baseline)
        async with stack:
            return await measure_table(contenders, self.plan.runs, self.commands, baseline)

    def _raw_set(self) -> Callable[..., Awaitable[object]]:
        """redis-py ``SET`` of the bench value, encoded per call as an application must."""
        client, value = self.client, self.value
        if isinstance(value, bytes):
            return client.set
        encode = msgspec.msgpack.Encoder().encode

        async def set_(key: str, value: object, **options: Any) -> object:
            return await client.set(key, encode(value), **options)

        return set_

    async def set_redis(self, with_redis: Cache) -> tuple[list[Row], str]:
        plan, client, value = self.plan, self.client, self.value
        sequence = self.redis_sequence
        ttl_ms = int(TTL_SECONDS * 1000)
        raw_names = [f"raw:{key}" for key in sequence]
        invalidation = b"\x93\xa4node\x91\xaabench:k123\xc0"  # about the size of the real one
        raw_set = self._raw_set()

        async def set_and_publish() -> None:
            for key in raw_names:
                await raw_set(key, value, px=ttl_ms)
                await client.publish("bench:nobody-listens", invalidation)

        raw = Contender(
            Row("raw redis-py `SET PX` (same client)", ops=plan.redis_ops),
            ready(set_loop(raw_set, raw_names, value, px=ttl_ms)),
        )
        contenders = [
            Contender(
                Row(
                    "Switchyard `Cache.set`, write-through to Redis",
                    note="`SET` and the invalidation `PUBLISH` in one script (one round trip)",
                    ops=plan.redis_ops,
                ),
                ready(set_loop(with_redis.set, sequence, value, ttl_seconds=TTL_SECONDS)),
            ),
            raw,
            Contender(
                Row(
                    "raw redis-py `SET PX` then `PUBLISH`",
                    note="two round trips, done by hand",
                    ops=plan.redis_ops,
                ),
                ready(set_and_publish),
            ),
        ]
        stack = AsyncExitStack()
        if cashews is not None:
            remote = await self.cashews(stack, self.url)
            client_side = await self.cashews(stack, self.url, client_side=True)
            contenders += [
                Contender(
                    Row("cashews Redis set (no client side)", ops=plan.redis_ops),
                    ready(
                        set_loop(
                            remote.set, [f"cw:{key}" for key in sequence], value, expire=TTL_SECONDS
                        )
                    ),
                ),
                Contender(
                    Row(
                        "cashews Redis `client_side=True` set",
                        note="local copy + Redis `SET` (CLIENT TRACKING invalidates the others)",
                        ops=plan.redis_ops,
                    ),
                    ready(
                        set_loop(
                            client_side.set,
                            [f"cc:{key}" for key in sequence],
                            value,
                            expire=TTL_SECONDS,
                        )
                    ),
                ),
            ]
        async with stack:
            return await measure_table(contenders, self.plan.runs, self.commands, raw)

    async def set_concurrent(self, with_redis: Cache) -> tuple[list[Row], str]:
        """``--writers`` tasks setting at once, against raw ``SET`` from as many tasks."""
        plan, value = self.plan, self.value
        sequence = self.redis_sequence
        ttl_ms = int(TTL_SECONDS * 1000)
        raw_set = self._raw_set()
        shares = [sequence[i :: plan.writers] for i in range(plan.writers)]

        def writers(set_: Callable[..., Awaitable[object]], prefix: str, **options: Any) -> Body:
            async def body() -> None:
                async with anyio.create_task_group() as tg:
                    for share in shares:
                        names = [f"{prefix}{key}" for key in share]
                        tg.start_soon(_run, set_loop(set_, names, value, **options))

            return body

        raw = Contender(
            Row(
                f"raw redis-py `SET PX` from {plan.writers} tasks (same client)", ops=len(sequence)
            ),
            ready(writers(raw_set, "raw:", px=ttl_ms)),
        )
        contenders = [
            Contender(
                Row(
                    f"Switchyard `Cache.set` from {plan.writers} tasks, write-through",
                    note="queued writes pipelined in order on one connection, one `PUBLISH`",
                    ops=len(sequence),
                ),
                ready(writers(with_redis.set, "", ttl_seconds=TTL_SECONDS)),
            ),
            raw,
        ]
        return await measure_table(contenders, self.plan.runs, self.commands, raw)

    # -- 4. hit rate ----------------------------------------------------------------------

    async def zipf(self, *, replay_cache: bool) -> tuple[list[PolicyRates], list[HitRates]]:
        """4a: every trace on each policy; 4b (``replay_cache``): the Zipf traces through the
        whole ``Cache``."""
        plan = self.plan
        capacity = plan.zipf_capacity
        all_traces = traces(plan.zipf_requests, plan.zipf_keys, capacity, SEED)
        policies = [policy_rates(trace, capacity, SEED, progress) for trace in all_traces]
        results: list[HitRates] = []
        for index, (s, policy) in enumerate(zip(SKEWS, policies, strict=False)):
            if not replay_cache:
                break
            trace = policy.trace.requests
            distinct = len(set(trace))
            progress(f"4. s={s}: replaying through Cache")
            loads = 0

            async def loader() -> bytes:
                nonlocal loads
                loads += 1
                return VALUE

            spec, cache = self.switchyard(f"zipf{index}", redis=True, l1_max_entries=capacity)
            async with open_system([spec]):
                get_or_set = functools.partial(
                    cache.get_or_set, loader=loader, ttl_seconds=TTL_SECONDS
                )
                elapsed = await replay(get_or_set, trace, plan.workers)
                stats = await cache.statistics()
            results.append(
                HitRates(
                    s=s,
                    requests=len(trace),
                    keys=plan.zipf_keys,
                    capacity=capacity,
                    ideal=Zipf(plan.zipf_keys, s, seed=SEED + index).ideal_hit_rate(capacity),
                    lru=policy.lru,
                    l1store=policy.l1store,
                    cache_l1=stats.l1_hits / len(trace),
                    combined=1 - loads / len(trace),
                    first_touch=1 - distinct / len(trace),
                    loader_calls=loads,
                    joins=stats.single_flight_joins,
                    cache_rate=len(trace) / elapsed,
                )
            )
        return policies, results


def _environment(plan: Plan, extra: list[str]) -> list[str]:
    """The shared machine note, naming the loop this run used (the note assumes uvloop)."""
    lines = environment_lines(extra)
    if plan.loop != "uvloop":
        lines = [
            line.split(", event loop: uvloop")[0] + ", event loop: asyncio (the default loop)"
            if ", event loop: uvloop" in line
            else line
            for line in lines
        ]
    return lines


async def _run(body: Body) -> None:
    await body()


async def run(plan: Plan, url: str) -> str:
    async with anyio.create_task_group() as tg:
        link = RedisLink(url, clock=SystemClock())
        await tg.start(link.run)
        fanout = RedisFanout(link)
        await tg.start(fanout.run)
        with anyio.fail_after(10):
            await link.wait_until(True)
            await fanout.wait_connected()
        try:
            report = await measure(plan, url, link, fanout)
        finally:
            tg.cancel_scope.cancel()
    await link.aclose()
    return report


async def measure(plan: Plan, url: str, link: RedisLink, fanout: RedisFanout) -> str:
    bench = Bench(plan, url, link, fanout)
    server = await link.client.info("server")
    l1_spec, l1_only = bench.switchyard("bench-l1", redis=False)
    redis_spec, with_redis = bench.switchyard("bench", redis=True)
    out: list[str] = []
    targets: list[list[str]] = []
    started = time.perf_counter()
    async with open_system([l1_spec, redis_spec]):
        if "get" in plan.sections:
            progress("1. L1 hit get")
            rows, baseline = await bench.l1_get(l1_only, with_redis)
            title = f"1. L1 hit `get` ({plan.ops:,} gets over {plan.keys:,} pre-set keys)"
            out += [f"### {title}", "", throughput_table(rows, baseline), ""]
            ratio = rows[0].ratio
            targets.append(
                ["L1 hit >= 1.0x cashews `mem://`", f"{ratio:.2f}x", verdict(ratio >= 1)]
            )
        if "l2" in plan.sections:
            progress("2. L2 get")
            rows, baseline = await bench.l2_get(with_redis, "bench")
            title = f"2. L2 `get` (L1 misses, Redis hits; {plan.redis_ops:,} gets)"
            out += [f"### {title}", "", throughput_table(rows, baseline), ""]
            ratio = rows[0].ratio
            targets.append(["L2 get >= 0.8x raw redis-py", f"{ratio:.2f}x", verdict(ratio >= 0.8)])
        if "set" in plan.sections:
            progress("3a. set, L1 only")
            rows, baseline = await bench.set_l1(l1_only)
            title = f"3a. `set`, in-process ({plan.ops:,} sets over {plan.keys:,} keys)"
            out += [f"### {title}", "", throughput_table(rows, baseline), ""]
            ratio = rows[0].ratio
            targets.append(
                ["L1-only set >= 0.8x cashews `mem://`", f"{ratio:.2f}x", verdict(ratio >= 0.8)]
            )
            progress("3b. set, write-through")
            rows, baseline = await bench.set_redis(with_redis)
            title = f"3b. `set` with Redis ({plan.redis_ops:,} sets over {plan.keys:,} keys)"
            out += [f"### {title}", "", throughput_table(rows, baseline), ""]
            ratio = rows[0].ratio
            targets.append(
                ["write-through set >= 0.8x raw `SET`", f"{ratio:.2f}x", verdict(ratio >= 0.8)]
            )
            progress(f"3c. set, write-through from {plan.writers} tasks")
            rows, baseline = await bench.set_concurrent(with_redis)
            title = f"3c. `set` with Redis from {plan.writers} tasks ({plan.redis_ops:,} sets)"
            out += [f"### {title}", "", throughput_table(rows, baseline), ""]
            ratio = rows[0].ratio
            targets.append(
                [
                    f"write-through set, {plan.writers} tasks >= 0.8x raw `SET`",
                    f"{ratio:.2f}x",
                    verdict(ratio >= 0.8),
                ]
            )
    if "zipf" in plan.sections or "hitrate" in plan.sections:
        progress("4. Hit rate")
        policies, results = await bench.zipf(replay_cache="zipf" in plan.sections)
        out += hit_rate_section(plan, policies, results)
        targets += policy_targets(policies)
        for r in results:
            combined = f"{r.combined:.2%}"
            targets.append([f"L1+L2 >= 90% (s={r.s})", combined, verdict(r.combined >= 0.9)])
    header = [
        f"## Cache benchmark (`python bench/bench_cache.py{' --quick' if plan.quick else ''}"
        f" --loop {plan.loop} --value {plan.value}`)",
        "",
        *_environment(
            plan,
            [
                f"- Redis {server['redis_version']} (private `redis-server` on loopback, "
                "no persistence), redis-py asyncio client with hiredis",
                f"- Event loop: {plan.loop} for every contender. Every get/set row runs in "
                "one coroutine (`await` in a loop) unless it says tasks; "
                f"medians of {plan.runs} runs; ratios are medians of per-run ratios "
                "(contenders measured back to back, order rotated each run); values are "
                + (
                    f"{len(VALUE)}-byte `bytes`"
                    if plan.value == "bytes"
                    else f"the dict `{DICT_VALUE!r}` (raw redis-py rows msgpack-encode it per call)"
                )
                + f", TTL {TTL_SECONDS:.0f} s everywhere",
            ],
        ),
        "",
    ]
    footer = [
        "### Targets",
        "",
        markdown_table(["Target", "Measured", "Verdict"], targets, "lrl"),
        "",
        *[f"- {note}" for note in bench.notes],
        f"- Total time {time.perf_counter() - started:.0f} s.",
    ]
    progress("done")
    return "\n".join([*header, *out, *footer])


def hit_rate_section(plan: Plan, policies: list[PolicyRates], results: list[HitRates]) -> list[str]:
    """Section 4's markdown: 4a, the policies, and 4b, the whole ``Cache`` (if replayed)."""
    sizes = f"{plan.zipf_requests:,} requests, caches of {plan.zipf_capacity:,} entries"
    out = [
        f"### 4a. Hit rate by policy ({sizes})",
        "",
        policy_table(policies),
        "",
        "- Each policy is a read-through cache of the same size: a miss stores the key. "
        "*L1Store*: `actors.cache.L1Store` (W-TinyLFU); *theine*: "
        f"`theine.Cache(size)` ({theine_version()}), its default W-TinyLFU (Rust core); "
        "*LRU*: an `OrderedDict`; *OPT*: Belady's clairvoyant policy, the ideal no "
        "policy can beat on the trace.",
        *[f"- *{p.trace.name}*: {p.trace.description}." for p in policies],
        "",
    ]
    if not results:
        return out
    return [
        *out,
        f"### 4b. Zipf through the whole `Cache` ({plan.zipf_keys:,} keys, {sizes})",
        "",
        hit_rate_table(results),
        "",
        "- *ideal (top-N)*: expected hit rate of always holding the N most popular keys.",
        "- *Cache L1* / *Cache L1+L2*: the whole `Cache` with Redis as L2, "
        f"`get_or_set(key, loader)` from {plan.workers} concurrent tasks consuming the trace "
        "in order; L1+L2 = 1 - loader calls / requests; *first-touch bound* = "
        "1 - distinct keys / requests.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ops", type=int, help="operations per in-process row (100000)")
    parser.add_argument("--keys", type=int, help="distinct keys of the get/set rows (1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per row; medians (3)")
    parser.add_argument("--redis-ops", type=int, help="operations per Redis row (ops / 10)")
    parser.add_argument("--workers", type=int, default=16, help="tasks of the Zipf Cache run")
    parser.add_argument(
        "--writers", type=int, default=50, help="tasks of the concurrent set rows (50)"
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of every contender (asyncio, the peers' harness default)",
    )
    parser.add_argument(
        "--value",
        choices=("dict", "bytes"),
        default="dict",
        help="value of the get/set rows: a small dict (the peers' harness) or 100 bytes",
    )
    parser.add_argument("--quick", action="store_true", help="shrink everything ~10x")
    parser.add_argument(
        "--only",
        default="get,l2,set,zipf",
        help=(
            "comma-separated sections to run: get, l2, set, zipf (default: all); "
            "hitrate runs only the policy half of zipf (no Redis replay)"
        ),
    )
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    ops = args.ops or 100_000 // scale
    plan = Plan(
        ops=ops,
        keys=args.keys or 1000 // scale,
        runs=args.runs,
        redis_ops=args.redis_ops or max(100, ops // (20 if args.quick else 10)),
        # The Zipf replay through the whole Cache dominates a quick run: shrink it 20x there.
        zipf_requests=1_000_000 // (2 * scale if args.quick else 1),
        zipf_keys=100_000 // (2 * scale if args.quick else 1),
        zipf_capacity=10_000 // (2 * scale if args.quick else 1),
        workers=args.workers,
        writers=args.writers,
        sections=frozenset(part.strip() for part in args.only.split(",")),
        quick=args.quick,
        loop=args.loop,
        value=args.value,
    )
    with RedisServer() as server:
        report = anyio.run(
            run, plan, server.url, backend_options={"use_uvloop": plan.loop == "uvloop"}
        )
    print(report)


if __name__ == "__main__":
    main()
