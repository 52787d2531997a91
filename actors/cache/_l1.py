"""The cache actor's in-process L1 store: bounded, expiring, tagged, W-TinyLFU evicted.

:class:`L1Store` is a plain synchronous data structure. The cache actor owns it
and is its only writer; code in the same process may call :meth:`L1Store.get`
directly, without a message round trip, the way Erlang readers use an ETS
table that one process owns. ``get`` never awaits, so it is atomic with
respect to other tasks on the event loop. It is not thread-safe: every caller
must run on the owner's event-loop thread.

Eviction follows Caffeine's W-TinyLFU (ben-manes/caffeine ``BoundedLocalCache``;
Einziger et al., "TinyLFU: A Highly Efficient Cache Admission Policy"):

* New entries enter a small LRU *admission window* (1% of capacity at first),
  which absorbs bursts of recency.
* Entries that overflow the window become *candidates* for the main space, a
  segmented LRU of *probation* (20%) and *protected* (80%). A hit in probation
  promotes the entry to protected; protected's overflow is demoted back.
* When the store is over its bounds, each candidate competes with the
  probation LRU entry (the *victim*). A 4-bit count-min sketch
  (:mod:`._sketch`, conservative update, 32 counters per entry) estimates how
  often each key was used recently, and the candidate is admitted only if it
  is more popular than the victim; otherwise it is evicted and counted as a
  rejected admission. A warm candidate that loses still gets in 1 time in
  128, so nobody can pin hot victims by colliding hashes (Caffeine's
  hash-flooding defence).
* After ``32 * entries`` accesses that raised a sketch counter, the sketch
  halves its counters, so popularity ages and the policy follows a drifting
  workload. The sketch is sized for the entries held and grows with them.
* A hill climber (:mod:`._climber`) resizes the window: after each sample of
  lookups it moves capacity between the window and protected in the
  direction that raised the hit rate, so a recency-heavy workload gets an
  LRU-like store and a skewed one a frequency-guarded one.

Both ``max_entries`` and ``max_bytes`` bound the store, and the window and
protected shares apply to both. Value sizes are what the caller says (``len``
of a bytes value by default); per-entry overhead is not counted.

Against theine 2.0 (W-TinyLFU in Rust) on ``bench/bench_cache.py``'s traces,
the store scores as well or better on each: Zipf 0.9 and 1.0, Zipf polluted
by scans, and a loop larger than the store. What it takes, beyond Caffeine's
design: the sketch details above (see :mod:`._sketch`) and a climber that
does not move on noise or on compulsory misses (see :mod:`._climber`).

CPython notes. An entry keeps its four sketch counter indexes, computed once
(again when the sketch grows), and remembers the sketch epoch in which all
four were saturated, so a hit on a popular key skips the sketch until the
next aging. :meth:`L1Store.get` updates the sketch's table inline, as a method
call costs as much as two probes. The sketch hashes keys with :func:`hash`,
which is salted per process, so hit rates vary very slightly from one run to
the next.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import math
import random
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

from ._climber import HillClimber
from ._l1_types import EntryTooLarge, L1Hit, L1State, L1Statistics, MonotonicClock
from ._sketch import MAX_COUNT, FrequencySketch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._sketch import Probes

__all__ = [
    "EntryTooLarge",
    "L1Hit",
    "L1State",
    "L1Statistics",
    "L1Store",
    "MonotonicClock",
]


# Why a key is missing; indexes into L1Store._misses.
_ABSENT: Final = 0
_EXPIRED: Final = 1
_EVICTED: Final = 2
_INVALIDATED: Final = 3

_ABSENT_HIT: Final = L1Hit(value=None, state=L1State.ABSENT)
_HASH_FLOOD_THRESHOLD: Final = 6  # Caffeine's ADMIT_HASHDOS_THRESHOLD
_MAX_TRANSFERS: Final = 1000  # QUEUE_TRANSFER_THRESHOLD: bounds the work of one rebalancing
_NEVER: Final = 1 << 62  # an entry count no store reaches
_INITIAL_SKETCH_ENTRIES: Final = 512  # the sketch's first size: 16 KiB, doubled as entries come


class _Entry:
    """One resident entry. ``queue`` is the LRU it sits in, or ``None`` once removed."""

    __slots__ = (
        "expires_at",
        "hit",
        "key",
        "probes",
        "queue",
        "saturated_in",
        "size",
        "stale_until",
        "tags",
        "value",
    )

    def __init__(
        self,
        key: str,
        value: object,
        size: int,
        expires_at: float | None,
        stale_until: float | None,
        tags: frozenset[str],
        hit: L1Hit,
        probes: Probes,
    ) -> None:
        self.key = key
        self.value = value
        self.size = size
        self.expires_at = expires_at  # None: never expires
        self.stale_until = stale_until  # removal deadline; equals expires_at without a stale window
        self.tags = tags
        self.hit = hit
        self.queue: OrderedDict[str, _Entry] | None = None
        self.saturated_in: object = None  # the sketch epoch in which all four counters were full
        self.probes = probes  # the key's four sketch counters, computed once


class L1Store:
    """A bounded in-process cache with TTLs, stale windows, tags and W-TinyLFU eviction.

    Args:
        max_entries: Most entries held at once (>= 1); negative entries count.
        max_bytes: Most value bytes held at once (>= 1), as sized by the caller.
        clock: Source of monotonic time for TTLs; defaults to :func:`time.monotonic`.
        ghost_entries: How many recently removed keys are remembered to explain
            later misses ("evicted", "expired", "invalidated"); defaults to
            ``max_entries``. 0 classifies every miss of a missing key as "absent".
        seed: Seeds the rare random admission of warm candidates, for reproducibility.

    Raises:
        ValueError: a bound is below 1 or ``ghost_entries`` is negative.
    """

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: MonotonicClock | None = None,
        ghost_entries: int | None = None,
        seed: int = 0,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"L1Store max_entries must be >= 1, got {max_entries!r}")
        if max_bytes < 1:
            raise ValueError(f"L1Store max_bytes must be >= 1, got {max_bytes!r}")
        if ghost_entries is not None and ghost_entries < 0:
            raise ValueError(f"L1Store ghost_entries must be >= 0, got {ghost_entries!r}")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._monotonic: Callable[[], float] = (
            clock.monotonic if clock is not None else time.monotonic
        )
        self._ghost_capacity = max_entries if ghost_entries is None else ghost_entries
        self._random = random.Random(seed)

        self._data: dict[str, _Entry] = {}
        self._window: OrderedDict[str, _Entry] = OrderedDict()
        self._probation: OrderedDict[str, _Entry] = OrderedDict()
        self._protected: OrderedDict[str, _Entry] = OrderedDict()
        self._total_bytes = 0
        self._window_bytes = 0
        self._protected_bytes = 0

        # The sketch starts small and grows with the entries held (_grow_sketch()).
        sketch = self._sketch = FrequencySketch(min(max_entries, _INITIAL_SKETCH_ENTRIES))
        # get() updates the sketch inline through these: the table is halved in place, so it
        # stays the sketch's until it grows, and _age() renews the epoch. An entry whose four
        # counters were all full in the current epoch holds it in saturated_in.
        self._table = sketch.table
        self._epoch = sketch.epoch
        self._additions = 0  # accesses that raised a counter since the last aging
        self._sample_size = sketch.sample_size
        self._sketch_entries = sketch.entries if sketch.entries < max_entries else _NEVER

        # The climber sets the window's and protected's shares; _resize_window() applies them.
        self._climber = HillClimber(max_entries=sketch.entries)
        self._window_max_entries = self._window_max_bytes = 1
        self._protected_max_entries = self._protected_max_bytes = 0
        self._resize_window()

        self._tag_index: dict[str, set[str]] = {}
        self._expiry_heap: list[tuple[float, int, _Entry]] = []
        self._expiry_seq = itertools.count()
        self._ghosts: OrderedDict[str, int] = OrderedDict()

        self._hits = 0
        self._stale_hits = 0
        self._absent_hits = 0
        self._misses = [0, 0, 0, 0]
        self._evictions = 0
        self._rejections = 0
        self._expirations = 0
        self._invalidations = 0

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str) -> L1Hit | None:
        """Look ``key`` up, record the access and return the hit, or ``None`` on a miss.

        An entry past its TTL but inside its stale window is returned as
        :attr:`L1State.STALE`; past the window it is removed and reported as a
        miss. A negative entry (:meth:`set_absent`) is an :attr:`L1State.ABSENT` hit.
        """
        entry = self._data.get(key)
        if entry is None:
            self._misses[self._ghosts.get(key, _ABSENT)] += 1
            return None
        expires_at = entry.expires_at
        if expires_at is not None and expires_at <= (now := self._monotonic()):
            return self._get_expired(key, entry, now)
        # The hot path, with _bump() and FrequencySketch.increment() inlined on the sketch's
        # table: a method call costs as much as two probes.
        # A popular key's counters are all at 15 most of the time, and stay there until the
        # next aging, so one identity check replaces four probes.
        if entry.saturated_in is not self._epoch:
            table = self._table
            i, j, k, m = entry.probes
            a = table[i]
            b = table[j]
            c = table[k]
            d = table[m]
            low = a if a < b else b
            if c < low:
                low = c
            if d < low:
                low = d
            if low < MAX_COUNT:
                # Conservative update: raise only the counters at the minimum.
                low += 1
                if a < low:
                    table[i] = low
                if b < low:
                    table[j] = low
                if c < low:
                    table[k] = low
                if d < low:
                    table[m] = low
                additions = self._additions = self._additions + 1
                if additions >= self._sample_size:
                    self._age()
            else:
                entry.saturated_in = self._epoch
        self._hits += 1
        queue = entry.queue
        if queue is self._probation:
            self._promote(key, entry)
        else:
            queue.move_to_end(key)  # type: ignore[union-attr]  # resident entries have a queue
        hit = entry.hit
        if hit is _ABSENT_HIT:
            self._absent_hits += 1
        return hit

    def peek(self, key: str) -> L1Hit | None:
        """Like :meth:`get`, but touch neither recency, frequency nor statistics."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.expires_at is None or entry.expires_at > (now := self._monotonic()):
            return entry.hit
        if now < entry.stale_until:  # type: ignore[operator]  # set together with expires_at
            return L1Hit(value=entry.value, state=L1State.STALE)
        return None

    def __contains__(self, key: object) -> bool:
        """Whether :meth:`peek` would return a hit (fresh, stale or absent)."""
        return isinstance(key, str) and self.peek(key) is not None

    def __len__(self) -> int:
        """Resident entries, including expired ones not yet swept (see :meth:`sweep`)."""
        return len(self._data)

    def keys(self) -> list[str]:
        """A snapshot of the keys :meth:`peek` would find, oldest insertion first."""
        now = self._monotonic()
        return [k for k, e in self._data.items() if e.stale_until is None or e.stale_until > now]

    def keys_tagged(self, tag: str) -> frozenset[str]:
        """The resident keys tagged ``tag`` (expired ones included until removed)."""
        return frozenset(self._tag_index.get(tag, ()))

    @property
    def total_bytes(self) -> int:
        """Bytes held by resident values, as sized by the callers of :meth:`set`."""
        return self._total_bytes

    # -- writes -----------------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: object,
        *,
        size_bytes: int | None = None,
        ttl_seconds: float | None,
        stale_seconds: float = 0.0,
        tags: frozenset[str] = frozenset(),
    ) -> tuple[str, ...]:
        """Store ``value`` under ``key`` and return the keys evicted to make room.

        Storing a key that is not resident counts as one access for the
        frequency sketch (a ``get`` miss followed by ``set`` is one use).
        The returned keys may include ``key`` itself: a new entry that is not
        yet popular enough to displace what is cached is rejected by the
        admission filter. An empty tuple means nothing was evicted.

        Args:
            key: The cache key.
            value: Any object; the store never copies or inspects it.
            size_bytes: The value's size; defaults to ``len(value)`` for bytes,
                bytearray and memoryview values and is required for others.
            ttl_seconds: Seconds until the entry expires, or ``None`` for never.
                0 with no stale window stores nothing and drops any current entry.
            stale_seconds: After expiry, how long :meth:`get` still returns the
                entry as :attr:`L1State.STALE`. Needs a ``ttl_seconds``.
            tags: Labels for :meth:`invalidate_tag`.

        Raises:
            ValueError: ``ttl_seconds``, ``stale_seconds`` or ``size_bytes`` is invalid.
            TypeError: ``size_bytes`` is missing for a value that is not bytes.
            EntryTooLarge: ``size_bytes`` exceeds ``max_bytes``. The value is not
                stored and any current entry for ``key`` is removed, so a stale
                value is never served in place of the new one.
        """
        size = _size_of(key, value, size_bytes)
        expires_at, stale_until = self._deadlines(ttl_seconds, stale_seconds)
        if size > self._max_bytes:
            self.delete(key)
            raise EntryTooLarge(key, size, self._max_bytes)
        return self._store(key, value, size, expires_at, stale_until, tags, None)

    def set_absent(
        self, key: str, *, ttl_seconds: float | None, tags: frozenset[str] = frozenset()
    ) -> tuple[str, ...]:
        """Remember that ``key`` does not exist, so :meth:`get` returns an ABSENT hit.

        A negative entry holds an entry slot and no bytes. Returns the keys
        evicted, as :meth:`set` does.
        """
        expires_at, stale_until = self._deadlines(ttl_seconds, 0.0)
        return self._store(key, None, 0, expires_at, stale_until, tags, _ABSENT_HIT)

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was resident. Later misses count as "invalidated"."""
        entry = self._data.get(key)
        if entry is None:
            return False
        self._remove(entry, _INVALIDATED)
        self._invalidations += 1
        return True

    def invalidate_tag(self, tag: str) -> int:
        """Remove every entry tagged ``tag``; return how many were removed."""
        keys = self._tag_index.pop(tag, None)
        if not keys:
            return 0
        data = self._data
        for key in keys:
            self._remove(data[key], _INVALIDATED)
        self._invalidations += len(keys)
        return len(keys)

    def invalidate_matching(self, pattern: str | re.Pattern[str] | Callable[[str], bool]) -> int:
        """Remove every entry whose key matches; return how many were removed.

        Args:
            pattern: A glob (``"user:42:*"``, matched like :func:`fnmatch.fnmatchcase`),
                a compiled regular expression (which must match the whole key,
                e.g. ``re.compile(fnmatch.translate(glob))``), or a predicate
                on the key. A predicate must not modify the store.

        Raises:
            TypeError: ``pattern`` is none of these.
        """
        match: Callable[[str], object]
        if isinstance(pattern, str):
            match = re.compile(fnmatch.translate(pattern)).fullmatch
        elif isinstance(pattern, re.Pattern):
            match = pattern.fullmatch
        elif callable(pattern):
            match = pattern
        else:
            raise TypeError(
                "invalidate_matching() takes a glob string, a compiled re.Pattern or a "
                f"predicate, got {type(pattern).__name__}: {pattern!r}"
            )
        doomed = [entry for key, entry in self._data.items() if match(key)]
        for entry in doomed:
            self._remove(entry, _INVALIDATED)
        self._invalidations += len(doomed)
        return len(doomed)

    def clear(self) -> None:
        """Remove every entry. Later misses on them count as "invalidated".

        The frequency sketch and the cumulative counters are kept: popularity
        outlives the entries.
        """
        self._invalidations += len(self._data)
        ghosts = self._ghosts
        recent = list(itertools.islice(reversed(self._data), self._ghost_capacity))
        for key in reversed(recent):  # resident keys are never ghosts, so each goes to the end
            ghosts[key] = _INVALIDATED
        while len(ghosts) > self._ghost_capacity:
            ghosts.popitem(last=False)
        for entry in self._data.values():
            entry.queue = None
        self._data.clear()
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._tag_index.clear()
        self._expiry_heap.clear()
        self._total_bytes = self._window_bytes = self._protected_bytes = 0

    def sweep(self, max_items: int = 100) -> int:
        """Remove entries past their stale window, examining at most ``max_items``.

        Expired entries are also removed when :meth:`get` finds them and
        before size-based eviction, so calling this is only needed to return
        their memory early. Returns how many entries were removed.
        """
        if max_items < 0:
            raise ValueError(f"sweep() max_items must be >= 0, got {max_items!r}")
        return self._expire(self._monotonic(), max_items)

    def statistics(self) -> L1Statistics:
        """A snapshot of the counters and the occupancy."""
        misses = self._misses
        return L1Statistics(
            hits=self._hits,
            stale_hits=self._stale_hits,
            absent_hits=self._absent_hits,
            misses=sum(misses),
            misses_absent=misses[_ABSENT],
            misses_expired=misses[_EXPIRED],
            misses_evicted=misses[_EVICTED],
            misses_invalidated=misses[_INVALIDATED],
            evictions=self._evictions,
            admissions_rejected=self._rejections,
            expirations=self._expirations,
            invalidations=self._invalidations,
            entries=len(self._data),
            bytes=self._total_bytes,
            max_entries=self._max_entries,
            max_bytes=self._max_bytes,
            window_entries=len(self._window),
            probation_entries=len(self._probation),
            protected_entries=len(self._protected),
            tags=len(self._tag_index),
        )

    def __repr__(self) -> str:
        return (
            f"L1Store(entries={len(self._data)}/{self._max_entries}, "
            f"bytes={self._total_bytes}/{self._max_bytes})"
        )

    # -- internals --------------------------------------------------------------------------

    def _deadlines(
        self, ttl_seconds: float | None, stale_seconds: float
    ) -> tuple[float | None, float | None]:
        """Turn a TTL and a stale window into (expires_at, stale_until) deadlines."""
        if not 0.0 <= stale_seconds < math.inf:
            raise ValueError(f"stale_seconds must be a finite number >= 0, got {stale_seconds!r}")
        if ttl_seconds is None or ttl_seconds == math.inf:
            if stale_seconds:
                raise ValueError(
                    f"stale_seconds={stale_seconds!r} needs a finite ttl_seconds: "
                    "an entry that never expires is never stale"
                )
            return None, None
        if not ttl_seconds >= 0.0:  # also rejects NaN
            raise ValueError(
                f"ttl_seconds must be >= 0 (or None for no expiry), got {ttl_seconds!r}"
            )
        expires_at = self._monotonic() + ttl_seconds
        return expires_at, expires_at + stale_seconds

    def _store(
        self,
        key: str,
        value: object,
        size: int,
        expires_at: float | None,
        stale_until: float | None,
        tags: frozenset[str],
        hit: L1Hit | None,
    ) -> tuple[str, ...]:
        entry = self._data.get(key)
        if stale_until is not None and stale_until <= self._monotonic():
            # Zero lifetime: nothing to store, and the old value must not outlive the write.
            if entry is not None:
                self._remove(entry, _EXPIRED)
                self._expirations += 1
            return ()
        if tags.__class__ is not frozenset:
            tags = _as_tags(tags)
        if hit is None:
            hit = L1Hit(value=value, state=L1State.FRESH)
        if entry is None:
            self._ghosts.pop(key, None)
            probes = self._sketch.probes(key)
            entry = _Entry(key, value, size, expires_at, stale_until, tags, hit, probes)
            data = self._data
            data[key] = entry
            self._window[key] = entry
            entry.queue = self._window
            self._window_bytes += size
            self._total_bytes += size
            self._index_tags(key, tags)
            if len(data) > self._sketch_entries:
                self._grow_sketch()
            # A new key counts as one access (_bump() inlined).
            if self._sketch.increment(entry.probes):
                entry.saturated_in = self._epoch
            else:
                self._additions += 1
                if self._additions >= self._sample_size:
                    self._age()
        else:
            delta = size - entry.size
            self._total_bytes += delta
            if entry.queue is self._window:
                self._window_bytes += delta
            elif entry.queue is self._protected:
                self._protected_bytes += delta
            if entry.tags != tags:
                self._unindex_tags(key, entry.tags)
                self._index_tags(key, tags)
            entry.value = value
            entry.size = size
            entry.expires_at = expires_at
            entry.stale_until = stale_until
            entry.tags = tags
            entry.hit = hit
            self._touch(key, entry)
        if stale_until is not None:
            heap = self._expiry_heap
            heapq.heappush(heap, (stale_until, next(self._expiry_seq), entry))
            if len(heap) > 2 * len(self._data) + 1024:
                self._compact_expiry_heap()
        if (
            len(self._data) > self._max_entries
            or self._total_bytes > self._max_bytes
            or len(self._window) > self._window_max_entries
            or self._window_bytes > self._window_max_bytes
        ):
            return self._evict()
        return ()

    def _get_expired(self, key: str, entry: _Entry, now: float) -> L1Hit | None:
        if now < entry.stale_until:  # type: ignore[operator]  # set together with expires_at
            self._bump(entry)
            self._touch(key, entry)
            self._hits += 1
            self._stale_hits += 1
            return L1Hit(value=entry.value, state=L1State.STALE)
        self._remove(entry, _EXPIRED)
        self._expirations += 1
        self._misses[_EXPIRED] += 1
        return None

    def _bump(self, entry: _Entry) -> None:
        """Count one access in the sketch, unless it is saturated (inlined in :meth:`get`)."""
        if entry.saturated_in is self._epoch:
            return
        if self._sketch.increment(entry.probes):
            entry.saturated_in = self._epoch
            return
        self._additions += 1
        if self._additions >= self._sample_size:
            self._age()

    def _frequency(self, entry: _Entry) -> int:
        """The sketch's estimate of recent accesses of an entry's key (0-15)."""
        return self._sketch.frequency(entry.probes)

    def _age(self) -> None:
        """Age the sketch (halve its counters) and schedule the next aging.

        The next one comes after half a sample, as counts start half full
        (Caffeine halves its addition count too).
        """
        sketch = self._sketch
        self._additions = sketch.age(self._additions)
        self._epoch = sketch.epoch

    def _grow_sketch(self) -> None:
        """The store holds more entries than the sketch is sized for: double it (to the bound).

        Estimates survive (see :meth:`FrequencySketch.grow`); every resident
        entry's probes are recomputed, which the doublings amortise to a few
        per insert. The climber's sample follows the size.
        """
        sketch = self._sketch
        entries = min(self._max_entries, 2 * sketch.entries)
        if sketch.grow(entries):
            self._table = sketch.table
            probes = sketch.probes
            for key, entry in self._data.items():
                entry.probes = probes(key)
        # At the bound the sketch is full-sized: stop checking (the store may hold one more
        # entry than the bound for a moment, before it evicts).
        self._sketch_entries = entries if entries < self._max_entries else _NEVER
        self._sample_size = sketch.sample_size
        self._climber.resize(entries)

    def _touch(self, key: str, entry: _Entry) -> None:
        """Move an accessed entry to the MRU end of its queue (inlined in :meth:`get`)."""
        if entry.queue is self._probation:
            self._promote(key, entry)
        else:
            entry.queue.move_to_end(key)  # type: ignore[union-attr]

    def _promote(self, key: str, entry: _Entry) -> None:
        """A probation hit: move to protected, demoting protected's LRU entries if it is full."""
        probation = self._probation
        protected = self._protected
        del probation[key]
        protected[key] = entry
        entry.queue = protected
        self._protected_bytes += entry.size
        # Demote protected's LRU entries while it is over its share. After the hill climber
        # shrinks protected this may take several promotions, a few entries each.
        for _ in range(8):
            if len(protected) <= self._protected_max_entries and (
                self._protected_bytes <= self._protected_max_bytes
            ):
                break
            demoted_key, demoted = protected.popitem(last=False)
            self._protected_bytes -= demoted.size
            probation[demoted_key] = demoted
            demoted.queue = probation

    def _evict(self) -> tuple[str, ...]:
        """Drain the window's overflow into probation, then evict until within bounds."""
        window = self._window
        probation = self._probation
        candidates: list[_Entry] = []
        for _ in range(_MAX_TRANSFERS):
            if not window or (
                len(window) <= self._window_max_entries
                and self._window_bytes <= self._window_max_bytes
            ):
                break
            key, entry = window.popitem(last=False)
            self._window_bytes -= entry.size
            probation[key] = entry
            entry.queue = probation
            candidates.append(entry)
        data = self._data
        if len(data) <= self._max_entries and self._total_bytes <= self._max_bytes:
            return ()
        # Misses of keys never stored (or long forgotten) are compulsory: no window size could
        # have hit them, and a burst of them (a scan) would fool the climber.
        misses = self._misses
        if self._climber.climb(self._hits, self._hits + sum(misses), misses[_ABSENT]):
            self._resize_window()
        # Expired entries go first: they are dead weight, whatever their popularity.
        self._expire(self._monotonic(), 16)
        evicted: list[str] = []
        while len(data) > self._max_entries or self._total_bytes > self._max_bytes:
            victim = self._victim()
            candidate = None
            while candidates:  # newest first, as Caffeine's evictFromMain walks them
                entry = candidates.pop()
                if entry.queue is probation:
                    candidate = entry
                    break
            if candidate is None or candidate is victim or self._admit(candidate, victim):
                loser = victim
            else:
                loser = candidate
                self._rejections += 1
            evicted.append(loser.key)
            self._remove(loser, _EVICTED)
            self._evictions += 1
        return tuple(evicted)

    def _resize_window(self) -> None:
        """Apply the hill climber's shares of capacity to the window and protected limits.

        Queues over their new limits drain lazily: the window on the next
        eviction, protected on the next promotions.
        """
        climber = self._climber
        window_share = climber.window_share
        protected_share = climber.protected_share
        self._window_max_entries = max(1, int(self._max_entries * window_share))
        self._window_max_bytes = max(1, int(self._max_bytes * window_share))
        self._protected_max_entries = int(self._max_entries * protected_share)
        self._protected_max_bytes = int(self._max_bytes * protected_share)

    def _victim(self) -> _Entry:
        """The LRU entry of probation, else of protected, else of the window."""
        queue = self._probation or self._protected or self._window
        return queue[next(iter(queue))]

    def _admit(self, candidate: _Entry, victim: _Entry) -> bool:
        """TinyLFU: admit the candidate only if the sketch says it is more popular."""
        candidate_frequency = self._frequency(candidate)
        if candidate_frequency > self._frequency(victim):
            return True
        if candidate_frequency >= _HASH_FLOOD_THRESHOLD:
            return self._random.getrandbits(7) == 0
        return False

    def _expire(self, now: float, max_items: int) -> int:
        heap = self._expiry_heap
        removed = 0
        for _ in range(max_items):
            if not heap or heap[0][0] > now:
                break
            deadline, _, entry = heapq.heappop(heap)
            # Skip stale heap items: the entry was removed, or rewritten with a new deadline.
            if entry.queue is not None and entry.stale_until == deadline:
                self._remove(entry, _EXPIRED)
                removed += 1
        self._expirations += removed
        return removed

    def _compact_expiry_heap(self) -> None:
        """Rebuild the heap from live entries once rewrites have left it mostly garbage."""
        seq = self._expiry_seq
        heap: list[tuple[float, int, _Entry]] = []
        for entry in self._data.values():
            if entry.stale_until is not None:
                heap.append((entry.stale_until, next(seq), entry))
        heapq.heapify(heap)
        self._expiry_heap = heap

    def _remove(self, entry: _Entry, reason: int) -> None:
        """Unlink a resident entry from every structure and remember why it went."""
        key = entry.key
        queue = entry.queue
        del self._data[key]
        del queue[key]  # type: ignore[union-attr]  # resident entries have a queue
        if queue is self._window:
            self._window_bytes -= entry.size
        elif queue is self._protected:
            self._protected_bytes -= entry.size
        entry.queue = None
        self._total_bytes -= entry.size
        if entry.tags:
            self._unindex_tags(key, entry.tags)
        if self._ghost_capacity:
            ghosts = self._ghosts
            ghosts[key] = reason
            if len(ghosts) > self._ghost_capacity:
                ghosts.popitem(last=False)

    def _index_tags(self, key: str, tags: frozenset[str]) -> None:
        index = self._tag_index
        for tag in tags:
            keys = index.get(tag)
            if keys is None:
                index[tag] = {key}
            else:
                keys.add(key)

    def _unindex_tags(self, key: str, tags: frozenset[str]) -> None:
        index = self._tag_index
        for tag in tags:
            keys = index.get(tag)
            if keys is not None:  # None while invalidate_tag() removes this tag's own keys
                keys.discard(key)
                if not keys:
                    del index[tag]


def _as_tags(tags: Iterable[str]) -> frozenset[str]:
    if isinstance(tags, str):
        raise TypeError(f"tags must be a collection of strings, not the string {tags!r}")
    return frozenset(tags)


def _size_of(key: str, value: object, size_bytes: int | None) -> int:
    if size_bytes is None:
        if isinstance(value, bytes | bytearray):
            return len(value)
        if isinstance(value, memoryview):
            return value.nbytes
        raise TypeError(
            f"set({key!r}) got a {type(value).__name__} value and no size_bytes; "
            "pass size_bytes= for values that are not bytes, bytearray or memoryview"
        )
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int):
        raise TypeError(f"size_bytes must be an int, got {type(size_bytes).__name__}")
    if size_bytes < 0:
        raise ValueError(f"size_bytes must be >= 0, got {size_bytes!r}")
    return size_bytes
