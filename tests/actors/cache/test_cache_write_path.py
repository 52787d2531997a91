"""The write path of ``Cache.set``: no actor round trip, one ordered writer, one round trip.

``set`` changes L1 in the caller's task and hands the Redis side to the ordered
writer in the same step; the writer carries it directly or batched, always in
call order; the node skips its own invalidations before decoding them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from actors.cache import MemoryL2
from actors.cache._codec import StoredEntry, decode_value, pack_entry, pack_fields, unpack_entry
from actors.cache._coherence import Coherence, own_prefix
from actors.cache._messages import Invalidation
from actors.cache._operations import Delete, Put
from runtime import MemoryFanout
from runtime.testing import ManualClock

from .conftest import CacheEnv

WRITERS = 50


class RecordingL2(MemoryL2):
    """A :class:`MemoryL2` that records the values it stores, in order, and can be held."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.stored: list[tuple[str, Any]] = []
        self._open = anyio.Event()
        self._open.set()
        self.waiting = 0

    def hold(self) -> None:
        self._open = anyio.Event()

    def release(self) -> None:
        self._open.set()

    async def write(
        self, operations: Sequence[Put | Delete], *, publish: tuple[str, bytes] | None = None
    ) -> list[int]:
        self.waiting += 1
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1
        for operation in operations:
            if isinstance(operation, Put):
                entry = unpack_entry(operation.blob)
                self.stored.append((operation.key, decode_value(entry.payload, entry.encoding)))
        return await super().write(operations, publish=publish)


async def test_sets_from_many_tasks_reach_l2_in_call_order() -> None:
    # The first set goes straight to L2 (held there); the others queue behind it and are
    # written in one batch, in the order the tasks called set().
    clock = ManualClock()
    env = CacheEnv(kind="memory", clock=clock)
    l2 = RecordingL2(clock)
    async with env.running_nodes(2, memory_l2=l2) as nodes:
        a, b = nodes.caches
        l2.hold()
        async with anyio.create_task_group() as tg:
            for i in range(WRITERS):
                tg.start_soon(a.set, f"k{i % 3}", i)
            await anyio.wait_all_tasks_blocked()
            assert l2.waiting == 1  # one write under way; the rest wait in the queue
            l2.release()
        assert l2.stored == [(env.full_key(f"k{i % 3}"), i) for i in range(WRITERS)]
        last = {f"k{i % 3}": i for i in range(WRITERS)}
        for key, value in last.items():
            assert await a.get(key) == value
            assert await b.get(key) == value  # from L2: B's L1 never held it


async def test_concurrent_sets_of_one_key_end_equal_in_l1_and_l2(l2_env: CacheEnv) -> None:
    async with l2_env.running_nodes(2) as nodes:
        a, b = nodes.caches
        async with anyio.create_task_group() as tg:
            for i in range(WRITERS):
                tg.start_soon(a.set, "k", i)
        assert await a.get("k") == WRITERS - 1
        assert await b.get("k") == WRITERS - 1  # B reads L2
        stats = await a.statistics()
        assert (stats.writes, stats.degraded_writes, stats.write_queue_depth) == (WRITERS, 0, 0)


async def test_a_cancelled_set_still_reaches_l2_in_order() -> None:
    clock = ManualClock()
    env = CacheEnv(kind="memory", clock=clock)
    l2 = RecordingL2(clock)
    async with env.running_nodes(2, memory_l2=l2) as nodes:
        a, b = nodes.caches
        l2.hold()
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                tg.start_soon(a.set, "k", "after")  # queued behind the cancelled one

                async def cancel_soon() -> None:
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()

                tg.start_soon(cancel_soon)
                await a.set("k", "first")  # the direct write, held in L2, then cancelled
            assert scope.cancelled_caught
            await anyio.wait_all_tasks_blocked()
            l2.release()
        # The later set returned: the cancelled one, put back first, was written before it.
        assert l2.stored == [("sw:cache:k", "first"), ("sw:cache:k", "after")]
        assert await a.get("k") == "after"
        assert await b.get("k") == "after"


async def test_an_l1_only_set_needs_no_actor_round_trip() -> None:
    env = CacheEnv(kind="l1")
    async with env.running_cache() as cache:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await cache.set("k", {"a": 1})  # any await (an ask to the actor) would be cancelled
        assert not scope.cancelled_caught
        assert await cache.get("k") == {"a": 1}


@pytest.mark.redis
async def test_own_invalidations_are_skipped_undecoded_and_others_applied(
    redis_url: str,
) -> None:
    env = CacheEnv(kind="redis", redis_url=redis_url)
    async with env.running_nodes(2) as nodes:
        a, b = nodes.caches
        await b.set("k", "old")
        await nodes.settle(1)
        assert await a.get("k") == "old"
        await a.statistics()  # A's actor took the L1 fill
        await a.set("mine", 1)
        await b.set("k", "new")  # A drops its copy
        await nodes.settle(3)
        await a.statistics()
        assert await a.get("k") == "new"
        stats_a, stats_b = await a.statistics(), await b.statistics()
        assert (stats_a.invalidations_sent, stats_a.invalidations_received) == (1, 2)
        assert (stats_b.invalidations_sent, stats_b.invalidations_received) == (2, 1)
        # Each fanout delivered all 3 to its sentinel, and to its cache only the other node's.
        assert nodes.fanouts[0].statistics().delivered == 3 + 2
        assert nodes.fanouts[1].statistics().delivered == 3 + 1


def test_the_skip_prefix_matches_only_the_nodes_own_invalidations() -> None:
    encoder = msgspec.msgpack.Encoder()
    prefix = own_prefix("node-1")
    assert prefix
    for invalidation in (
        Invalidation(node="node-1", keys=("a",)),
        Invalidation(node="node-1", pattern="sw:cache:*"),
        Invalidation(node="node-1", everything=True),
    ):
        assert encoder.encode(invalidation).startswith(prefix)
    for other in ("node-10", "node-", "node-2", ""):
        assert not encoder.encode(Invalidation(node=other, keys=("a",))).startswith(prefix)


@pytest.mark.parametrize("keys", [("a",), ("a", "b:c"), tuple(f"k{i}" for i in range(40))])
def test_encoded_keys_are_the_channels_own_encoding(keys: tuple[str, ...]) -> None:
    coherence = Coherence(MemoryFanout(), "node-1")
    expected = msgspec.msgpack.encode(Invalidation(node="node-1", keys=keys))
    assert coherence.encode_keys(keys) == expected


def test_packed_fields_are_the_stored_entry() -> None:
    entry = StoredEntry(payload=b"x", encoding=1, fresh_until=1.5, stale_until=2.5, tags=("t",))
    assert pack_fields(b"x", 1, 1.5, 2.5, ("t",)) == pack_entry(entry)
