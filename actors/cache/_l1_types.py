"""The value types of the L1 store: what a lookup returns and what it counts."""

from __future__ import annotations

import enum
from typing import Protocol

import msgspec

__all__ = ["EntryTooLarge", "L1Hit", "L1State", "L1Statistics", "MonotonicClock"]


class MonotonicClock(Protocol):
    """The one thing the store needs from a clock (``runtime``'s ``Clock`` satisfies it)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...


class L1State(enum.Enum):
    """How a hit may be used."""

    FRESH = "fresh"
    """Within its TTL: serve it."""
    STALE = "stale"
    """Past its TTL but inside its stale window: serve it, and refresh it in the background."""
    ABSENT = "absent"
    """A negative entry: the key is known not to exist, so skip the loader."""


class L1Hit(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`L1Store.get` found: the value and how fresh it is.

    Fresh and absent hits are built when the entry is stored, so a hit
    allocates nothing. ``value`` is ``None`` for :attr:`L1State.ABSENT`.
    """

    value: object
    state: L1State


class L1Statistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the store's counters (cumulative) and occupancy (current).

    ``hits`` counts every hit, including ``stale_hits`` and ``absent_hits``.
    ``misses`` is the sum of the four ``misses_*`` reasons: the key was never
    stored or fell out of the ghost record (``absent``), outlived its stale
    window (``expired``), was evicted for space (``evicted``), or was deleted
    or invalidated (``invalidated``). ``evictions`` includes the
    ``admissions_rejected`` candidates that lost to their victim.
    ``entries`` counts expired entries not yet removed. The ``*_entries``
    of the three queues show where the hill climber has set the window, and
    ``tags`` is the number of distinct tags indexed.
    """

    hits: int
    stale_hits: int
    absent_hits: int
    misses: int
    misses_absent: int
    misses_expired: int
    misses_evicted: int
    misses_invalidated: int
    evictions: int
    admissions_rejected: int
    expirations: int
    invalidations: int
    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    window_entries: int
    probation_entries: int
    protected_entries: int
    tags: int

    @property
    def hit_rate(self) -> float:
        """Hits over lookups, or 0.0 before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class EntryTooLarge(ValueError):
    """A value is larger than the whole store, so it can never be cached."""

    def __init__(self, key: str, size_bytes: int, max_bytes: int) -> None:
        self.key = key
        self.size_bytes = size_bytes
        self.max_bytes = max_bytes
        super().__init__(
            f"cannot cache {key!r}: its value is {size_bytes} bytes, more than the whole L1 "
            f"(max_bytes={max_bytes}); serve it uncached or raise max_bytes"
        )
