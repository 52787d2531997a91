"""Hit rate and read speed of the cache actor's L1 store.

Hit rate: a seeded Zipf trace (1,000,000 requests over 100,000 keys, s in
{0.9, 1.0}) replayed against an L1Store (W-TinyLFU) of 10,000 entries and a
plain LRU of the same size, as a read-through cache: every miss stores the key.

The "ideal" column is the expected hit rate of a cache that always holds the
10,000 most popular keys: the ceiling for any policy on such a trace.

Read speed: ``L1Store.get`` on hits against cashews' in-memory backend
(``Cache().setup("mem://")``, awaited ``get``), 100,000 reads over 1,000 keys
each, median of 3 runs, in the same process.

Run ``python bench/bench_hit_rate.py``; ``--quick`` replays 100,000 requests
instead, for a CI smoke run. Only the standard library generates the traces.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import statistics
import time
from collections import OrderedDict
from itertools import accumulate

from actors.cache._l1 import L1Store

KEYS = 100_000
CAPACITY = 10_000
SKEWS = (0.9, 1.0)
SPEED_KEYS = 1_000
SPEED_OPS = 100_000
RUNS = 3
VALUE = b"v" * 100


def zipf_trace(keys: int, requests: int, s: float, seed: int) -> list[str]:
    """Seeded Zipf(s) requests: rank r has weight r**-s; ranks are shuffled over key names."""
    cdf = list(accumulate(rank**-s for rank in range(1, keys + 1)))
    total = cdf[-1]
    rng = random.Random(seed)
    names = [f"key:{i}" for i in range(keys)]
    rng.shuffle(names)
    draw = rng.random
    return [names[bisect.bisect_left(cdf, draw() * total)] for _ in range(requests)]


def ideal_hit_rate(keys: int, capacity: int, s: float) -> float:
    """The expected hit rate of a cache that always holds the ``capacity`` most popular keys.

    No policy can beat it on an independent-request trace like this one, in expectation.
    """
    weights = [rank**-s for rank in range(1, keys + 1)]
    return sum(weights[:capacity]) / sum(weights)


def lru_hit_rate(trace: list[str], capacity: int) -> float:
    """The baseline: an OrderedDict LRU of ``capacity`` entries."""
    cache: OrderedDict[str, bytes] = OrderedDict()
    hits = 0
    for key in trace:
        if key in cache:
            cache.move_to_end(key)
            hits += 1
        else:
            cache[key] = VALUE
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / len(trace)


def l1_hit_rate(trace: list[str], capacity: int) -> float:
    store = L1Store(max_entries=capacity, max_bytes=capacity * len(VALUE))
    get = store.get
    put = store.set
    for key in trace:
        if get(key) is None:
            put(key, VALUE, ttl_seconds=None)
    return store.statistics().hit_rate


def l1_get_ops_per_second(keys: list[str], ops: int) -> float:
    store = L1Store(max_entries=CAPACITY, max_bytes=CAPACITY * len(VALUE))
    for key in keys:
        store.set(key, VALUE, ttl_seconds=3600)
    sequence = [keys[i % len(keys)] for i in range(ops)]
    get = store.get
    for key in sequence:  # warm up: promote every key, as a steady state would have
        get(key)
    start = time.perf_counter()
    for key in sequence:
        get(key)
    elapsed = time.perf_counter() - start
    assert store.statistics().misses == 0
    return ops / elapsed


async def cashews_get_ops_per_second(keys: list[str], ops: int) -> float:
    from cashews import Cache

    cache = Cache()
    cache.setup("mem://", size=len(keys))
    try:
        for key in keys:
            await cache.set(key, VALUE, expire=3600)
        sequence = [keys[i % len(keys)] for i in range(ops)]
        get = cache.get
        start = time.perf_counter()
        for key in sequence:
            await get(key)
        elapsed = time.perf_counter() - start
        assert await cache.get(keys[0]) == VALUE
        return ops / elapsed
    finally:
        await cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="replay 100,000 requests instead of 1,000,000"
    )
    parser.add_argument("--seed", type=int, default=42, help="trace seed (default: 42)")
    args = parser.parse_args()
    requests = 100_000 if args.quick else 1_000_000

    print(
        f"Hit rate: {requests:,} requests over {KEYS:,} keys (Zipf), "
        f"{CAPACITY:,}-entry caches, seed {args.seed}"
    )
    print(
        f"{'zipf s':>6}  {'W-TinyLFU':>9}  {'LRU':>7}  {'ratio':>6}  {'ideal':>6}  "
        f"{'W-TinyLFU time':>14}"
    )
    for s in SKEWS:
        trace = zipf_trace(KEYS, requests, s, args.seed)
        start = time.perf_counter()
        tinylfu = l1_hit_rate(trace, CAPACITY)
        elapsed = time.perf_counter() - start
        lru = lru_hit_rate(trace, CAPACITY)
        ideal = ideal_hit_rate(KEYS, CAPACITY, s)
        print(
            f"{s:>6.2f}  {tinylfu:>9.4f}  {lru:>7.4f}  {tinylfu / lru:>6.3f}  {ideal:>6.4f}  "
            f"{elapsed:>13.1f}s"
        )

    keys = [f"key:{i}" for i in range(SPEED_KEYS)]
    l1_runs = [l1_get_ops_per_second(keys, SPEED_OPS) for _ in range(RUNS)]
    cashews_runs = [asyncio.run(cashews_get_ops_per_second(keys, SPEED_OPS)) for _ in range(RUNS)]
    l1 = statistics.median(l1_runs)
    cashews = statistics.median(cashews_runs)
    print()
    print(f"get on hits: {SPEED_OPS:,} reads over {SPEED_KEYS:,} keys, median of {RUNS} runs")
    print(f"{'L1Store.get (sync)':<32} {l1:>12,.0f} ops/s  {1e9 / l1:>6.0f} ns/op")
    print(f"{'cashews mem:// await get':<32} {cashews:>12,.0f} ops/s  {1e9 / cashews:>6.0f} ns/op")
    print(f"{'ratio':<32} {l1 / cashews:>12.1f}x")


if __name__ == "__main__":
    main()
