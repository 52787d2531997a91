"""Running cache nodes for the behavioural tests, on every layer stack.

A test takes the ``env`` fixture (parametrized over the layer kinds: ``"l1"``
alone, a ``"memory"`` L2, and a real ``"redis"``) or ``l2_env`` (the two kinds
with an L2), and runs the cache inside its own body::

    async with env.running_cache() as cache:
        await cache.set("user:1", {"name": "Ada"})

The helpers are async context managers, not yielding fixtures: pytest-asyncio
runs a fixture's setup and teardown in different tasks, and a task group must
be entered and left by one task.

Several nodes (``env.running_nodes(2)``) share one L2: on ``"memory"`` one
:class:`MemoryL2` and one :class:`MemoryFanout`; on ``"redis"`` one Redis
server, each node with its own :class:`RedisLink` and :class:`RedisFanout`,
as separate processes would have. These are unit-level: cache actors on a
given layer stack, with layers the test may replace.

Scenarios between whole nodes on a real Redis use :func:`open_cache_nodes`
instead: real nodes from :func:`runtime.testing.open_nodes`, each with the
cache installed as ``python -m runtime`` installs it (its own supervised
Redis link and fanout reader, its settings, its HTTP app).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import pytest
import redis.asyncio

import actors.cache
from actors.cache import (
    CACHE,
    CACHE_SETTINGS,
    Cache,
    CacheSettings,
    Invalidation,
    L2Store,
    MemoryL2,
    RedisL2,
    cache_child,
)
from actors.cache._coherence import INVALIDATIONS
from runtime import (
    Clock,
    Fanout,
    Gap,
    MemoryFanout,
    RedisFanout,
    RedisLink,
    RedisUnavailable,
    Refs,
    Settings,
    Subscription,
    SystemClock,
)
from runtime.testing import ManualClock, Node, open_nodes, open_system

PREFIX = "sw"
SETTINGS = CacheSettings()

KINDS = ["l1", "memory", pytest.param("redis", marks=pytest.mark.redis)]
L2_KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@dataclass
class Nodes:
    """Running cache nodes: their APIs, the supervisor's refs, and their layers.

    ``sentinels`` listen on the invalidation channel next to the caches (one
    per Redis node, one for the memory nodes' shared fanout): what a sentinel
    has received, the caches beside it have received too.
    """

    caches: list[Cache]
    refs: Refs | None
    l2s: list[L2Store | None]
    links: list[RedisLink] = field(default_factory=list)
    fanouts: list[Fanout] = field(default_factory=list)
    sentinels: list[Subscription] = field(default_factory=list)
    _seen: dict[int, int] = field(default_factory=dict)

    async def settle(self, published: int) -> None:
        """Wait until the first ``published`` invalidations reached every node, and were applied."""
        with anyio.fail_after(5):
            for index, sentinel in enumerate(self.sentinels):
                while self._seen.get(index, 0) < published:
                    if not isinstance(await sentinel.receive(), Gap):
                        self._seen[index] = self._seen.get(index, 0) + 1
        await anyio.wait_all_tasks_blocked()

    async def gap(self, node: int = 0, *, timeout_seconds: float = 5.0) -> Gap:
        """Wait until node ``node``'s fanout reports a gap, and the cache has handled it."""
        with anyio.fail_after(timeout_seconds):
            while not isinstance(item := await self.sentinels[node].receive(), Gap):
                self._seen[node] = self._seen.get(node, 0) + 1
        await anyio.wait_all_tasks_blocked()
        return item


@dataclass
class CacheEnv:
    """One layer stack (``kind``) and the clock every node of a test shares.

    ``system_clock=True`` runs the nodes (and their Redis links) on the real
    clock instead of ``clock``, for what needs real time: Redis locks expiring,
    links reconnecting. ``link_options`` go to each :class:`RedisLink`.
    """

    kind: str
    clock: ManualClock = field(default_factory=ManualClock)
    redis_url: str | None = None
    system_clock: bool = False
    link_options: dict[str, Any] = field(default_factory=dict)

    @property
    def has_l2(self) -> bool:
        return self.kind != "l1"

    @property
    def node_clock(self) -> Clock:
        return SystemClock() if self.system_clock else self.clock

    def full_key(self, key: str, prefix: str = PREFIX) -> str:
        return f"{prefix}:cache:{key}"

    @contextlib.asynccontextmanager
    async def raw_redis(self) -> AsyncIterator[redis.asyncio.Redis]:
        """A plain client on the test's Redis, to look at (or tamper with) raw keys."""
        assert self.redis_url is not None, "raw_redis() needs the redis kind"
        client = redis.asyncio.Redis.from_url(self.redis_url)
        try:
            yield client
        finally:
            await client.aclose()

    @contextlib.asynccontextmanager
    async def running_cache(
        self,
        *,
        settings: CacheSettings = SETTINGS,
        prefix: str = PREFIX,
        setup: Callable[[Cache], None] | None = None,
        memory_l2: L2Store | None = None,
    ) -> AsyncIterator[Cache]:
        """One running cache node; ``setup`` runs before it starts (e.g. ``cache.warm``)."""
        async with self.running_nodes(
            1, settings=settings, prefix=prefix, setup=setup, memory_l2=memory_l2
        ) as nodes:
            yield nodes.caches[0]

    @contextlib.asynccontextmanager
    async def running_nodes(
        self,
        count: int,
        *,
        settings: CacheSettings = SETTINGS,
        prefix: str = PREFIX,
        setup: Callable[[Cache], None] | None = None,
        fanout: Fanout | None = None,
        memory_l2: L2Store | None = None,
        redis_l2: Callable[[RedisLink], L2Store] = RedisL2,
    ) -> AsyncIterator[Nodes]:
        """``count`` cache nodes on one shared L2, all in one supervision tree.

        ``fanout`` and ``memory_l2`` replace the shared :class:`MemoryFanout` and
        :class:`MemoryL2` of the memory kind; ``redis_l2`` builds each Redis
        node's L2 from its link.
        """
        clock = self.node_clock
        try:
            async with contextlib.AsyncExitStack() as stack:
                links: list[RedisLink] = []
                if self.kind == "redis":
                    assert self.redis_url is not None
                    for _ in range(count):
                        link = RedisLink(self.redis_url, clock=clock, **self.link_options)
                        links.append(await stack.enter_async_context(link))
                tg = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(tg.cancel_scope.cancel)
                l2s, fanouts = await self._layers(count, links, tg, fanout, memory_l2, redis_l2)
                specs, caches = [], []
                for index, (l2, node_fanout) in enumerate(zip(l2s, fanouts, strict=True)):
                    spec, cache = cache_child(
                        settings=settings,
                        prefix=prefix,
                        clock=clock,
                        l2=l2,
                        fanout=node_fanout,
                        actor_id="cache" if count == 1 else f"cache-{index}",
                        node_id=f"node-{index}",
                    )
                    if setup is not None:
                        setup(cache)
                    specs.append(spec)
                    caches.append(cache)
                sentinels = []
                if self.has_l2:
                    for sentinel_fanout in dict.fromkeys(fanouts):  # memory nodes share one
                        subscription = sentinel_fanout.subscribe(
                            INVALIDATIONS.name, buffer_size=100_000
                        )
                        sentinels.append(await stack.enter_async_context(subscription))
                async with open_system(specs, clock=clock) as refs:
                    # Let every node subscribe to the invalidation channel before the test.
                    await anyio.wait_all_tasks_blocked()
                    yield Nodes(caches, refs, l2s, links, fanouts, sentinels)
        except BaseExceptionGroup as group:
            # The task group wraps the test body's own failure: show it unwrapped.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _layers(
        self,
        count: int,
        links: list[RedisLink],
        tg: anyio.abc.TaskGroup,
        fanout: Fanout | None,
        memory_l2: L2Store | None,
        redis_l2: Callable[[RedisLink], L2Store],
    ) -> tuple[list[L2Store | None], list[Fanout]]:
        if self.kind == "l1":
            return [None] * count, [fanout or MemoryFanout() for _ in range(count)]
        if self.kind == "memory":
            # Not ``memory_l2 or ...``: an empty MemoryL2 is falsy (it has a __len__).
            shared_l2 = MemoryL2(self.clock) if memory_l2 is None else memory_l2
            shared_fanout = MemoryFanout() if fanout is None else fanout
            return [shared_l2] * count, [shared_fanout] * count
        l2s: list[L2Store | None] = []
        fanouts: list[Fanout] = []
        for link in links:
            await tg.start(link.run)
            redis_fanout = RedisFanout(link)
            await tg.start(redis_fanout.run)
            with anyio.fail_after(5):
                # Connected before the cache subscribes: a subscription made while the
                # fanout is still connecting gets a Gap, which would drop L1 mid-test.
                await redis_fanout.wait_connected()
            l2s.append(redis_l2(link))
            fanouts.append(redis_fanout)
        return l2s, fanouts


@contextlib.asynccontextmanager
async def open_cache_nodes(
    count: int,
    redis_url: str,
    *,
    clock: Clock | None = None,
    settings: Settings | None = None,
    cache_settings: CacheSettings = SETTINGS,
) -> AsyncIterator[tuple[Nodes, list[Node]]]:
    """``count`` real nodes with the cache installed, sharing the Redis at ``redis_url``.

    Yields the caches (``node.context.get(CACHE)``) with one invalidation
    sentinel per node, and the nodes themselves. Keys are ``sw:cache:...``.
    """
    node_settings = settings or Settings(redis_prefix=PREFIX)
    async with (
        open_nodes(
            count,
            redis_url=redis_url,
            settings=node_settings,
            compose=actors.cache.install,
            clock=clock,
            sections={CACHE_SETTINGS: cache_settings},
        ) as nodes,
        contextlib.AsyncExitStack() as stack,
    ):
        sentinels = [
            await stack.enter_async_context(
                node.context.fanout.subscribe(INVALIDATIONS.name, buffer_size=100_000)
            )
            for node in nodes
        ]
        caches = [node.context.get(CACHE) for node in nodes]
        # The caches subscribed while their fanout was still connecting, so each will get a
        # Gap("redis connected") and drop its (empty) L1. Let that happen before the test: a
        # ping on the channel arrives after the gap, on every node.
        await _publish_setup_ping(nodes[0])
        with anyio.fail_after(5):
            for sentinel in sentinels:
                while isinstance(await sentinel.receive(), Gap):
                    pass
        await anyio.wait_all_tasks_blocked()
        for cache in caches:
            await cache.statistics()  # the actor has handled the gap and the ping
        links = [node.context.redis for node in nodes if node.context.redis is not None]
        fanouts = [node.context.fanout for node in nodes]
        yield Nodes(caches, None, [None] * count, links, fanouts, sentinels), nodes


async def _publish_setup_ping(node: Node) -> None:
    """Publish the harness's ping, again if the link flapped meanwhile (setup, not the test).

    Scenario settings give the health PING a deadline of a few tens of milliseconds; on
    a loaded machine one can miss it while the nodes start, and the link then refuses
    the publish until its next check. That is not what any test is about.
    """
    channel = INVALIDATIONS.bind(node.context.fanout)
    link = node.context.redis
    with anyio.fail_after(10):
        while True:
            if link is not None:
                await link.wait_until(True)
            try:
                await channel.publish(Invalidation(node="harness"))
                return
            except RedisUnavailable:
                if link is None or link.up:
                    raise  # not a flap the link knows of: a real failure of the harness


def _env(request: pytest.FixtureRequest) -> CacheEnv:
    kind: str = request.param
    url: str | None = request.getfixturevalue("redis_url") if kind == "redis" else None
    return CacheEnv(kind=kind, redis_url=url)


@pytest.fixture(name="env", params=KINDS)
def _env_all(request: pytest.FixtureRequest) -> CacheEnv:
    """A layer stack: L1 alone, L1 over a memory L2, or L1 over a real Redis."""
    return _env(request)


@pytest.fixture(name="l2_env", params=L2_KINDS)
def _env_with_l2(request: pytest.FixtureRequest) -> CacheEnv:
    """A layer stack with an L2: memory or a real Redis."""
    return _env(request)


class Loader:
    """A loader that counts its calls, can be held at a gate, and can fail.

    ``entered`` is set at each call, ``returned`` once a call has returned
    (or raised). Close the gate with :meth:`hold`, open it with :meth:`release`.
    With ``values``, call N returns ``values[N - 1]``.
    """

    def __init__(
        self,
        value: object = "loaded",
        *,
        values: list[object] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.value = value
        self.values = values
        self.error = error
        self.calls = 0
        self.entered = anyio.Event()
        self.returned = anyio.Event()
        self._gate = anyio.Event()
        self._gate.set()

    def hold(self) -> None:
        self._gate = anyio.Event()

    def release(self) -> None:
        self._gate.set()

    async def __call__(self) -> Any:
        self.calls += 1
        call = self.calls
        self.entered.set()
        try:
            await self._gate.wait()
            if self.error is not None:
                raise self.error
            if self.values is not None:
                return self.values[call - 1]
            return self.value
        finally:
            self.returned.set()


async def gather(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run ``calls`` concurrently; their results in order."""
    results: list[Any] = [None] * len(calls)

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await call()

    async with anyio.create_task_group() as tg:
        for index, call in enumerate(calls):
            tg.start_soon(run, index, call)
    return results
