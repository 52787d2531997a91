"""Helpers shared by the benchmarks in ``bench/``: timing, Zipf traces, tables, the machine note.

The standard library and ``anyio`` only: nothing here imports the project, so
each benchmark keeps to the project's public names.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import TypeVar

import anyio

__all__ = [
    "Body",
    "Contender",
    "HitRates",
    "Prepare",
    "Row",
    "Zipf",
    "environment_lines",
    "get_loop",
    "hit_rate_table",
    "lru_hit_rate",
    "markdown_table",
    "measure_table",
    "median",
    "progress",
    "read_through_hit_rate",
    "ready",
    "replay",
    "rotated",
    "set_loop",
    "shuffled_cycle",
    "throughput_table",
    "timed",
    "verdict",
]


T = TypeVar("T")


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


def rotated(items: Sequence[T], shift: int) -> list[T]:
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


# -- contenders ---------------------------------------------------------------------------------

Body = Callable[[], Awaitable[object]]
Prepare = Callable[[], AbstractAsyncContextManager[Body]]


@dataclass
class Contender:
    row: Row
    prepare: Prepare


def ready(body: Body) -> Prepare:
    """A contender that needs no per-run setup."""

    @asynccontextmanager
    async def prepare() -> AsyncIterator[Body]:
        yield body

    return prepare


def get_loop(
    get: Callable[[str], Awaitable[object]], sequence: Sequence[str], expected: object
) -> Body:
    """``await get(key)`` for each key, in one coroutine; the last value is checked."""

    async def body() -> None:
        value = None
        for key in sequence:
            value = await get(key)
        if value != expected:
            raise AssertionError(f"the last get returned {value!r}")

    return body


def set_loop(
    set_: Callable[..., Awaitable[object]], sequence: Sequence[str], value: object, **kwargs: object
) -> Body:
    """``await set_(key, value, **kwargs)`` for each key, in one coroutine."""

    async def body() -> None:
        for key in sequence:
            await set_(key, value, **kwargs)

    return body


def shuffled_cycle(keys: Sequence[str], ops: int, seed: int) -> list[str]:
    """``ops`` keys: ``keys`` repeated, each pass in its own seeded random order."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < ops:
        chunk = list(keys)
        rng.shuffle(chunk)
        out += chunk
    return out[:ops]


async def measure_table(
    contenders: Sequence[Contender],
    runs: int,
    commands: Callable[[], Awaitable[int]],
    baseline: Contender,
) -> tuple[list[Row], str]:
    """Measure every contender ``runs`` times; record rates, paired ratios and Redis load.

    ``commands()`` returns the server's processed-command count (``INFO stats``).
    Returns the rows and the baseline's name.
    """
    for run in range(runs):
        rates: dict[str, float] = {}
        for contender in rotated(contenders, run):
            row = contender.row
            async with contender.prepare() as body:
                before = await commands()
                rate = await timed(row.ops, body)
                after = await commands()
            row.rates.append(rate)
            # The INFO that read ``before`` is counted in ``after``.
            row.commands_per_op.append(max(0, after - before - 1) / row.ops)
            rates[row.name] = rate
        for contender in contenders:
            contender.row.ratios.append(rates[contender.row.name] / rates[baseline.row.name])
    return [contender.row for contender in contenders], baseline.row.name


# -- Zipf traces --------------------------------------------------------------------------------


class Zipf:
    """A seeded Zipf(s) sampler over ``keys`` names: precomputed CDF plus ``bisect``.

    Rank ``r`` (1-based) has weight ``r ** -s``. Ranks are shuffled over the key
    names, so popularity is unrelated to a key's name or hash.
    """

    def __init__(self, keys: int, s: float, *, seed: int, prefix: str = "z:") -> None:
        self.keys = keys
        self.s = s
        self._weights: list[float] = [float(rank) ** -s for rank in range(1, keys + 1)]
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
        return float(sum(self._weights[:capacity]) / self._cdf[-1])


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


def read_through_hit_rate(
    trace: Sequence[str],
    get: Callable[[str], object | None],
    put: Callable[[str, object], object],
    value: object,
) -> float:
    """Replay ``trace`` on a synchronous cache, read-through: every miss stores the key."""
    hits = 0
    for key in trace:
        if get(key) is None:
            put(key, value)
        else:
            hits += 1
    return hits / len(trace)


async def replay(
    get_or_set: Callable[[str], Awaitable[object]], trace: Sequence[str], workers: int
) -> float:
    """``await get_or_set(key)`` for each key of ``trace``, from ``workers`` tasks that take
    the keys in order; returns the seconds it took."""
    requests = iter(trace)

    async def worker() -> None:
        for key in requests:
            await get_or_set(key)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return time.perf_counter() - start


@dataclass
class HitRates:
    """One Zipf trace replayed on each policy, and through the whole cache with Redis."""

    s: float
    requests: int
    keys: int
    capacity: int
    ideal: float
    lru: float
    l1store: float
    cache_l1: float
    combined: float
    first_touch: float
    loader_calls: int
    joins: int
    cache_rate: float


def hit_rate_table(results: Sequence[HitRates]) -> str:
    header = [
        "Zipf s",
        "ideal (top-N)",
        "LRU",
        "L1Store",
        "L1Store / LRU",
        "Cache L1",
        "Cache L1+L2",
        "first-touch bound",
        "loader calls",
        "Cache req/s",
    ]
    body = [
        [
            f"{r.s:.1f}",
            f"{r.ideal:.2%}",
            f"{r.lru:.2%}",
            f"{r.l1store:.2%}",
            f"{r.l1store / r.lru:.3f}x",
            f"{r.cache_l1:.2%}",
            f"{r.combined:.2%}",
            f"{r.first_touch:.2%}",
            f"{r.loader_calls:,}",
            f"{r.cache_rate:,.0f}",
        ]
        for r in results
    ]
    return markdown_table(header, body, "rrrrrrrrrr")


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


def throughput_table(rows: Sequence[Row], baseline: str) -> str:
    header = ["Contender", "ops", "ops/s (median)", "ratio", "Redis cmds/op", "Notes"]
    body = [
        [
            row.name,
            f"{row.ops:,}",
            f"{row.rate:,.0f}",
            f"{row.ratio:.2f}x",
            f"{median(row.commands_per_op):.2f}",
            row.note,
        ]
        for row in rows
    ]
    table = markdown_table(header, body, "lrrrrl")
    return f"{table}\n\nRatio: ops/s against *{baseline}*, measured in the same run."


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


_STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(
        f"[{Path(sys.argv[0]).stem} {time.perf_counter() - _STARTED:5.1f}s] {message}",
        file=sys.stderr,
        flush=True,
    )
