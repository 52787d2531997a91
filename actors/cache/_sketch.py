"""The L1 store's frequency sketch: how often each key was used recently, in a few bits.

:class:`FrequencySketch` is the count-min sketch of TinyLFU (Einziger et al.,
"TinyLFU: A Highly Efficient Cache Admission Policy"): four counters per key in
one table of ``32 * 2**ceil(log2(entries))`` counters. An access adds one to
each of the key's four counters; the key's estimated frequency is the smallest
of the four, so hash collisions can only overestimate it. After
``sample_size`` (``32 * entries``) accesses that raised a counter, the owner
calls :meth:`FrequencySketch.age`, which halves every counter, so old
popularity fades and the estimate follows a drifting workload.

Tuned against Caffeine's ``FrequencySketch`` and theine (both 16 counters per
entry, a sample of 10 entries' worth): twice the counters and a sample three
times as long sharpen the estimates of the keys near the admission boundary,
which is where a Zipf workload's hit rate is won or lost, and on a loop they
let every counter saturate, so ties keep the resident set stable instead of
churning it. Like Caffeine, only accesses that raised a counter count towards
the sample: hits on a saturated key say nothing new and do not hasten aging.

The sketch is sized for the entries held, not the bound: it starts small and
:meth:`FrequencySketch.grow` doubles it as the store fills, up to the store's
``max_entries``, so a store configured for millions of entries that holds a
few thousand costs a few hundred kilobytes. Growing tiles the table, and a
key's probes are its hash masked to the table's width, so every estimate
survives the growth unchanged (the owner recomputes its entries' probes).

CPython notes. Counters are stored one per byte and saturate at 15 (what a
4-bit counter holds), as byte indexing is cheaper than nibble unpacking. A key's
four counter indexes (its *probes*, by double hashing) are computed once, by
:meth:`FrequencySketch.probes`, and kept by the caller, because arithmetic on a
64-bit hash costs more than the counter updates. :attr:`FrequencySketch.epoch`
changes at each aging: a caller that finds a key's four counters all at 15 may
remember the epoch and skip the sketch for that key until the next aging, as
counters only grow between agings. There is no doorkeeper (Caffeine ships
without one too): its extra probes would slow every lookup. Keys are hashed
with :func:`hash` (SipHash for ``str``, salted per process), so estimates vary
very slightly from one run to the next.

The table is halved in place, so its identity changes only when it grows: a
hot path may hold :attr:`FrequencySketch.table` and update it directly, as
``L1Store.get`` does, and must fetch it again after :meth:`FrequencySketch.grow`.
"""

from __future__ import annotations

from typing import Final, TypeAlias

__all__ = ["COUNTERS_PER_ENTRY", "MAX_COUNT", "SAMPLE_PER_ENTRY", "FrequencySketch", "Probes"]

MAX_COUNT: Final = 15
"""A counter's ceiling: what a 4-bit counter holds."""

COUNTERS_PER_ENTRY: Final = 32
"""Counters (bytes) of table per entry the sketch is sized for, rounded up to a power of two."""

SAMPLE_PER_ENTRY: Final = 32
"""Counter-raising accesses per entry the sketch is sized for, between two agings."""

Probes: TypeAlias = tuple[int, int, int, int]
"""A key's four counter indexes in :attr:`FrequencySketch.table`."""

_MIN_WIDTH: Final = 64
_HALVE: Final = bytes(b >> 1 for b in range(256))
_ODD: Final = bytes(b & 1 for b in range(256))


class FrequencySketch:
    """A 4-bit count-min sketch of recent accesses, sized for ``entries`` keys.

    Args:
        entries: How many keys the owner holds (>= 1); sets the table's width
            and :attr:`sample_size`. :meth:`grow` raises it later.

    Attributes:
        table: The counters, one per byte (0-15). Halved in place by :meth:`age`,
            so a reference to it stays valid until :meth:`grow` replaces it.
        entries: How many keys the sketch is sized for.
        sample_size: How many counter-raising accesses to record between agings
            (``32 * entries``). The owner counts them and calls :meth:`age`.
        epoch: A fresh object after each aging; see the module notes on saturation.
    """

    __slots__ = ("_mask", "entries", "epoch", "sample_size", "table")

    def __init__(self, entries: int) -> None:
        if entries < 1:
            raise ValueError(f"FrequencySketch entries must be >= 1, got {entries!r}")
        self.table = bytearray(_width(entries))
        self._mask = len(self.table) - 1
        self.entries = entries
        self.sample_size = SAMPLE_PER_ENTRY * entries
        self.epoch = object()

    def probes(self, key: str) -> Probes:
        """The indexes of ``key``'s four counters (double hashing); compute once per key.

        Valid until :meth:`grow`, which widens the mask.
        """
        h = hash(key)
        mask = self._mask
        step = (h >> 32) | 1
        return (h & mask, (h + step) & mask, (h + 2 * step) & mask, (h + 3 * step) & mask)

    def increment(self, probes: Probes) -> bool:
        """Count one access: +1 on each of the four counters not yet at :data:`MAX_COUNT`.

        Returns whether all four were already at :data:`MAX_COUNT`, i.e. the key
        is saturated until the next :meth:`age` (and the access raised nothing).
        """
        table = self.table
        low = min(table[i] for i in probes)
        if low >= MAX_COUNT:
            return True
        for i in probes:
            if table[i] == low:
                table[i] = low + 1
        return False

    def frequency(self, probes: Probes) -> int:
        """The estimate of recent accesses of the key with these probes (0-15)."""
        table = self.table
        i, j, k, m = probes
        return min(table[i], table[j], table[k], table[m])

    def age(self, additions: int) -> int:
        """Halve every counter, so old popularity fades (TinyLFU's reset); renew the epoch.

        ``additions`` counts the accesses that raised a counter since the
        last aging; returns what is left of them after halving (Caffeine's
        ``(size - odd / 4) / 2``: each odd counter loses half an access).
        No counter is saturated afterwards, so the epoch changes.
        """
        table = self.table
        odd = table.translate(_ODD).count(1)
        table[:] = table.translate(_HALVE)
        self.epoch = object()
        return max(0, (additions - (odd >> 2)) >> 1)

    def grow(self, entries: int) -> bool:
        """Size the sketch for ``entries`` keys; return whether :attr:`table` was replaced.

        The new table repeats the old one, so every key keeps its estimate
        once its probes are recomputed with :meth:`probes`; saturation (and
        so the epoch) is unchanged. A smaller or equal ``entries`` changes nothing.
        """
        if entries <= self.entries:
            return False
        self.entries = entries
        self.sample_size = SAMPLE_PER_ENTRY * entries
        width = _width(entries)
        if width == len(self.table):
            return False
        self.table = self.table * (width // len(self.table))
        self._mask = width - 1
        return True


def _width(entries: int) -> int:
    """Counters for ``entries`` keys: a power of two, so probes are a mask of the hash."""
    return max(_MIN_WIDTH, COUNTERS_PER_ENTRY << (entries - 1).bit_length())
