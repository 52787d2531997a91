"""Hit rates of eviction policies on seeded traces: ``L1Store`` against theine, LRU and OPT.

Used by section 4 of ``bench_cache.py``. Every policy is driven the same way,
as a read-through cache of ``capacity`` entries: a lookup that misses stores
the key. The contenders:

* **L1Store**: ``actors.cache.L1Store`` (W-TinyLFU), bounded by entries;
* **theine**: ``theine.Cache(capacity)`` with its default policy (W-TinyLFU
  with an adaptive window, in Rust: ``theine-core``), ``get`` then ``set`` on
  a miss; missing when the ``bench`` extra is not installed;
* **LRU**: an ``OrderedDict`` of the same size, the floor;
* **OPT**: Belady's clairvoyant policy (evict the key used furthest in the
  future, or do not store a key never used again): no policy can beat it on
  the trace, so it is the ideal.

The traces are built from seeded generators, so every run replays the same
requests. Python salts :func:`hash` per process, and both W-TinyLFU sketches
hash with it, so their hit rates move by a few hundredths of a point from one
run to the next; LRU and OPT do not.
"""

from __future__ import annotations

import heapq
import importlib
import importlib.metadata
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from _common import Zipf, lru_hit_rate, markdown_table, verdict

from actors.cache import L1Store

__all__ = [
    "PolicyRates",
    "Trace",
    "belady_hit_rate",
    "l1store_hit_rate",
    "policy_rates",
    "policy_table",
    "policy_targets",
    "theine_hit_rate",
    "theine_version",
    "traces",
]

theine: Any
try:
    theine = importlib.import_module("theine")
except ImportError:  # the "bench" extra is not installed
    theine = None

VALUE = b"v" * 100


@dataclass(frozen=True)
class Trace:
    """A named request sequence and how it was made."""

    name: str
    description: str
    requests: list[str]


def traces(requests: int, keys: int, capacity: int, seed: int) -> list[Trace]:
    """The four traces: Zipf 0.9 and 1.0, Zipf polluted by scans, and a loop.

    Args:
        requests: Length of each trace.
        keys: Distinct keys of the Zipf traces.
        capacity: The caches' size; the scans and the loop are sized from it.
        seed: Seeds every generator.
    """
    out = [
        Trace(
            f"Zipf s={s}",
            f"{keys:,} keys, popularity shuffled over names",
            Zipf(keys, s, seed=seed + index).trace(requests),
        )
        for index, s in enumerate((0.9, 1.0))
    ]
    # Ten rounds of Zipf 0.9 requests, each followed by a scan of 2x capacity one-off keys
    # (20% of the requests): a scan flushes an LRU; a frequency filter should shrug it off.
    rounds = 10
    scan = 2 * capacity
    zipf_part = max(1, requests // rounds - scan)
    popular = Zipf(keys, 0.9, seed=seed + 2).trace(zipf_part * rounds)
    polluted: list[str] = []
    for round_ in range(rounds):
        polluted += popular[round_ * zipf_part : (round_ + 1) * zipf_part]
        polluted += [f"scan:{round_}:{i}" for i in range(scan)]
    out.append(
        Trace(
            "Zipf 0.9 + scans",
            f"{rounds} rounds of {zipf_part:,} Zipf requests, each then a scan of "
            f"{scan:,} one-off keys",
            polluted[:requests],
        )
    )
    loop = capacity + capacity // 10
    out.append(
        Trace(
            "loop",
            f"{loop:,} keys requested in a fixed cycle (1.1x capacity): LRU always "
            "misses, OPT keeps all but a few",
            [f"loop:{i % loop}" for i in range(requests)],
        )
    )
    return out


def l1store_hit_rate(trace: Sequence[str], capacity: int) -> float:
    """``L1Store(max_entries=capacity)`` (bytes not binding), read-through."""
    store = L1Store(max_entries=capacity, max_bytes=capacity * len(VALUE))
    get, put = store.get, store.set
    hits = 0
    for key in trace:
        if get(key) is None:
            put(key, VALUE, ttl_seconds=None)
        else:
            hits += 1
    return hits / len(trace)


def theine_hit_rate(trace: Sequence[str], capacity: int, seed: int) -> float | None:
    """``theine.Cache(capacity)``, default policy, read-through; ``None`` without theine.

    theine samples reads into lossy buffers with :mod:`random`; the module is
    seeded first, so only the hash salt varies between runs.
    """
    if theine is None:
        return None
    random.seed(seed)
    cache = theine.Cache(capacity)
    get: Callable[[str], tuple[object, bool]] = cache.get
    put: Callable[[str, object], None] = cache.set
    hits = 0
    for key in trace:
        if get(key)[1]:
            hits += 1
        else:
            put(key, VALUE)
    cache.close()
    return hits / len(trace)


def theine_version() -> str:
    """theine's and theine-core's versions, or that they are not installed."""
    try:
        versions = [importlib.metadata.version(name) for name in ("theine", "theine-core")]
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    return f"theine {versions[0]}, theine-core {versions[1]}"


def belady_hit_rate(trace: Sequence[str], capacity: int) -> float:
    """Belady's OPT, read-through with bypass: the upper bound of every policy on ``trace``."""
    n = len(trace)
    next_use = [n] * n
    seen: dict[str, int] = {}
    for i in range(n - 1, -1, -1):
        key = trace[i]
        next_use[i] = seen.get(key, n)
        seen[key] = i
    cached: dict[str, int] = {}  # key -> the index of its next use
    heap: list[tuple[int, str]] = []  # (-next use, key), with stale items skipped
    push, pop = heapq.heappush, heapq.heappop
    hits = 0
    for i, key in enumerate(trace):
        if key in cached:
            hits += 1
        upcoming = next_use[i]
        cached[key] = upcoming
        push(heap, (-upcoming, key))
        if len(cached) > capacity:
            while True:
                negated, victim = pop(heap)
                if cached.get(victim) == -negated:
                    del cached[victim]
                    break
    return hits / n


@dataclass(frozen=True)
class PolicyRates:
    """One trace replayed on each policy."""

    trace: Trace
    capacity: int
    l1store: float
    theine: float | None
    lru: float
    opt: float


def policy_rates(
    trace: Trace, capacity: int, seed: int, progress: Callable[[str], None]
) -> PolicyRates:
    """Replay ``trace`` on every policy."""
    requests = trace.requests
    l1store = l1store_hit_rate(requests, capacity)
    peer = theine_hit_rate(requests, capacity, seed)
    lru = lru_hit_rate(requests, capacity, VALUE)
    opt = belady_hit_rate(requests, capacity)
    shown = "not installed" if peer is None else f"{peer:.2%}"
    progress(
        f"4. {trace.name}: L1Store {l1store:.2%}, theine {shown}, LRU {lru:.2%}, OPT {opt:.2%}"
    )
    return PolicyRates(trace, capacity, l1store, peer, lru, opt)


def _percent(rate: float | None) -> str:
    return "theine not installed" if rate is None else f"{rate:.2%}"


def policy_table(results: Sequence[PolicyRates]) -> str:
    """The hit-rate table: one row per trace."""
    header = ["Trace", "requests", "L1Store", "theine", "LRU", "OPT (ideal)", "L1Store - theine"]
    body = [
        [
            r.trace.name,
            f"{len(r.trace.requests):,}",
            f"{r.l1store:.2%}",
            _percent(r.theine),
            f"{r.lru:.2%}",
            f"{r.opt:.2%}",
            "-" if r.theine is None else f"{100 * (r.l1store - r.theine):+.2f} pt",
        ]
        for r in results
    ]
    return markdown_table(header, body, "lrrrrrr")


def policy_targets(results: Sequence[PolicyRates]) -> list[list[str]]:
    """Rows of the targets table: L1Store >= theine on each trace (and > LRU)."""
    rows: list[list[str]] = []
    for r in results:
        if r.theine is None:
            rows.append([f"L1Store >= theine ({r.trace.name})", "theine not installed", "-"])
        else:
            rows.append(
                [
                    f"L1Store >= theine ({r.trace.name})",
                    f"{r.l1store:.2%} vs {r.theine:.2%}",
                    verdict(r.l1store >= r.theine),
                ]
            )
    for r in results:
        rows.append(
            [
                f"L1Store beats LRU ({r.trace.name})",
                f"{r.l1store:.2%} vs {r.lru:.2%}",
                verdict(r.l1store > r.lru),
            ]
        )
    return rows
