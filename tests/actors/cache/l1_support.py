"""Helpers shared by the L1 store's tests: a store factory and its invariant check."""

from __future__ import annotations

from actors.cache._l1 import L1Store
from runtime.testing import ManualClock

__all__ = ["V", "check_invariants", "make"]

V = b"x" * 10  # a 10-byte value


def make(clock: ManualClock, *, max_entries: int = 100, max_bytes: int = 1 << 20) -> L1Store:
    return L1Store(max_entries=max_entries, max_bytes=max_bytes, clock=clock)


def check_invariants(store: L1Store) -> None:
    """Every internal structure agrees with every other, and the bounds hold."""
    data = store._data
    queues = (store._window, store._probation, store._protected)
    assert sum(len(q) for q in queues) == len(data)
    for queue in queues:
        for key, entry in queue.items():
            assert data[key] is entry
            assert entry.queue is queue
    assert store.total_bytes == sum(e.size for e in data.values())
    assert store._window_bytes == sum(e.size for e in store._window.values())
    assert store._protected_bytes == sum(e.size for e in store._protected.values())
    index: dict[str, set[str]] = {}
    for key, entry in data.items():
        for tag in entry.tags:
            index.setdefault(tag, set()).add(key)
    assert store._tag_index == index
    assert not set(store._ghosts) & set(data)
    assert len(data) <= store._max_entries
    assert store.total_bytes <= store._max_bytes
