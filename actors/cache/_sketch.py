"""The L1 store's frequency sketch: how often each key was used recently, in a few bits.

:class:`FrequencySketch` is the count-min sketch of TinyLFU (Einziger et al.,
"TinyLFU: A Highly Efficient Cache Admission Policy"), laid out as Caffeine's
``FrequencySketch``: four counters per key in one table of
``16 * 2**ceil(log2(max_entries))`` counters. An access adds one to each of the
key's four counters; the key's estimated frequency is the smallest of the four,
so hash collisions can only overestimate it. Every ``sample_size``
(``10 * max_entries``) accesses the owner calls :meth:`FrequencySketch.age`,
which halves every counter, so old popularity fades and the estimate follows a
drifting workload.

CPython notes. Counters are stored one per byte and saturate at 15 (what a
4-bit counter holds), as byte indexing is cheaper than nibble unpacking. A key's
four counter indexes (its *probes*, by double hashing) are computed once, by
:meth:`FrequencySketch.probes`, and kept by the caller, because arithmetic on a
64-bit hash costs more than the counter updates. :attr:`FrequencySketch.epoch`
changes at each aging: a caller that finds a key's four counters all at 15 may
remember the epoch and skip the sketch for that key until the next aging, as
counters only grow between agings. There is no doorkeeper (Caffeine ships
without one too): it only shrinks the sketch, and its extra probes would slow
every lookup. Keys are hashed with :func:`hash`, which is salted per process,
so estimates vary very slightly from one run to the next.

The table is halved in place, so its identity never changes: a hot path may
hold :attr:`FrequencySketch.table` and update it directly, as ``L1Store.get``
does.
"""

from __future__ import annotations

from typing import Final, TypeAlias

__all__ = ["MAX_COUNT", "FrequencySketch", "Probes"]

MAX_COUNT: Final = 15
"""A counter's ceiling: what a 4-bit counter holds."""

Probes: TypeAlias = tuple[int, int, int, int]
"""A key's four counter indexes in :attr:`FrequencySketch.table`."""

_HALVE: Final = bytes(b >> 1 for b in range(256))


class FrequencySketch:
    """A 4-bit count-min sketch of recent accesses, sized for ``max_entries`` keys.

    Args:
        max_entries: How many keys the owner holds at most (>= 1); sets the
            table's width and :attr:`sample_size`.

    Attributes:
        table: The counters, one per byte (0-15). Halved in place by :meth:`age`,
            so a reference to it stays valid.
        sample_size: How many accesses to record between agings (``10 * max_entries``).
            The owner counts them and calls :meth:`age`; after the first aging,
            half as many, as counts then start half full (Caffeine halves its
            addition count too).
        epoch: A fresh object after each aging; see the module notes on saturation.
    """

    __slots__ = ("_mask", "epoch", "sample_size", "table")

    def __init__(self, max_entries: int) -> None:
        width = 1 << max(6, (max_entries - 1).bit_length() + 4)
        self.table = bytearray(width)
        self._mask = width - 1
        self.sample_size = 10 * max_entries
        self.epoch = object()

    def probes(self, key: str) -> Probes:
        """The indexes of ``key``'s four counters (double hashing); compute once per key."""
        h = hash(key)
        mask = self._mask
        step = (h >> 32) | 1
        return (h & mask, (h + step) & mask, (h + 2 * step) & mask, (h + 3 * step) & mask)

    def increment(self, probes: Probes) -> bool:
        """Count one access: +1 on each of the four counters not yet at :data:`MAX_COUNT`.

        Returns whether all four were already at :data:`MAX_COUNT`, i.e. the key
        is saturated until the next :meth:`age`.
        """
        table = self.table
        saturated = True
        for i in probes:
            if table[i] < MAX_COUNT:
                table[i] += 1
                saturated = False
        return saturated

    def frequency(self, probes: Probes) -> int:
        """The estimate of recent accesses of the key with these probes (0-15)."""
        table = self.table
        i, j, k, m = probes
        return min(table[i], table[j], table[k], table[m])

    def age(self) -> object:
        """Halve every counter, so old popularity fades (TinyLFU's reset); return the new epoch.

        No counter is saturated afterwards, so the epoch changes.
        """
        table = self.table
        table[:] = table.translate(_HALVE)
        epoch = self.epoch = object()
        return epoch
