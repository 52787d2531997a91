"""Helpers shared by the benchmarks in ``bench/``: timing, Zipf traces, tables, the machine note.

Only the standard library (and ``anyio`` for the event-loop note): benchmarks
import the project through its public names, never through this module.
"""

from __future__ import annotations

import bisect
import gc
import importlib.metadata
import os
import platform
import random
import statistics
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

__all__ = [
    "Row",
    "Zipf",
    "environment_lines",
    "lru_hit_rate",
    "markdown_table",
    "median",
    "rotated",
    "timed",
]


# -- timing -----------------------------------------------------------------------------------


async def timed(ops: int, body: Callable[[], Awaitable[object]]) -> float:
    """Run ``body`` once (it performs ``ops`` operations) and return ops per second.

    A full collection first, so garbage left by the previous contender is not
    charged to this one; the collector stays on during the run, as in production.
    """
    gc.collect()
    start = time.perf_counter()
    await body()
    return ops / (time.perf_counter() - start)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rotated(items: Sequence[object], shift: int) -> list[object]:
    """``items`` rotated left by ``shift``: each run measures contenders in another order."""
    if not items:
        return []
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


@dataclass
class Row:
    """One contender of one table: its per-run samples and its paired ratios.

    ``ratios`` are per-run ratios to the table's baseline measured in the same
    run (back to back), so slow drifts of a shared machine cancel out; the
    table prints their median, not the ratio of the medians.
    """

    name: str
    note: str = ""
    ops: int = 0
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    commands_per_op: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return median(self.rates)

    @property
    def ratio(self) -> float:
        return median(self.ratios)


# -- Zipf traces --------------------------------------------------------------------------------


class Zipf:
    """A seeded Zipf(s) sampler over ``keys`` names: precomputed CDF plus ``bisect``.

    Rank ``r`` (1-based) has weight ``r ** -s``. Ranks are shuffled over the key
    names, so popularity is unrelated to a key's name or hash.
    """

    def __init__(self, keys: int, s: float, *, seed: int, prefix: str = "z:") -> None:
        self.keys = keys
        self.s = s
        self._weights = [rank**-s for rank in range(1, keys + 1)]
        self._cdf = list(accumulate(self._weights))
        self._rng = random.Random(seed)
        self._names = [f"{prefix}{i}" for i in range(keys)]
        self._rng.shuffle(self._names)

    def trace(self, requests: int) -> list[str]:
        cdf, names, draw = self._cdf, self._names, self._rng.random
        total = cdf[-1]
        last = len(cdf) - 1
        return [names[min(bisect.bisect_left(cdf, draw() * total), last)] for _ in range(requests)]

    def ideal_hit_rate(self, capacity: int) -> float:
        """The expected hit rate of a cache that always holds the ``capacity`` most popular keys.

        On an independent-request trace no policy beats it in expectation (it
        also counts first touches of popular keys as hits, so real caches sit a
        little below it).
        """
        return sum(self._weights[:capacity]) / self._cdf[-1]


def lru_hit_rate(trace: Sequence[str], capacity: int, value: object) -> float:
    """Read-through ``OrderedDict`` LRU of ``capacity`` entries: the baseline policy."""
    cache: OrderedDict[str, object] = OrderedDict()
    hits = 0
    for key in trace:
        if key in cache:
            cache.move_to_end(key)
            hits += 1
        else:
            cache[key] = value
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / len(trace)


# -- output -------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A markdown table; ``align`` has one ``l`` or ``r`` per column."""
    marks = {"l": ":---", "r": "---:"}
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_lines(extra: Sequence[str] = ()) -> list[str]:
    """The machine note: cores, load, Python, event loop and library versions."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    packages = ("anyio", "uvloop", "msgspec", "redis", "hiredis", "cashews", "aiocache")
    versions = ", ".join(f"{name} {_version(name)}" for name in packages)
    return [
        f"- Machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()} "
        f"{platform.release()}; load average at start {load} (shared machine: other jobs ran)",
        f"- {platform.python_implementation()} {platform.python_version()} "
        f"({sys.platform}), event loop: uvloop via "
        "`anyio.run(..., backend_options={'use_uvloop': True})` for every contender",
        f"- Libraries: {versions}",
        *extra,
    ]
