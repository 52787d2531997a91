"""Tests of the cache actor's L1 store: bounds, expiry, tags, miss reasons and W-TinyLFU."""

from __future__ import annotations

import bisect
import fnmatch
import random
import re
from collections import OrderedDict
from typing import Any

import pytest

from actors.cache._climber import HillClimber
from actors.cache._l1 import EntryTooLarge, L1Hit, L1State, L1Statistics, L1Store
from actors.cache._sketch import MAX_COUNT, FrequencySketch
from runtime.testing import ManualClock

V = b"x" * 10  # a 10-byte value


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock()


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


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_entries": 0, "max_bytes": 10}, "L1Store max_entries must be >= 1, got 0"),
        ({"max_entries": 10, "max_bytes": 0}, "L1Store max_bytes must be >= 1, got 0"),
        (
            {"max_entries": 10, "max_bytes": 10, "ghost_entries": -1},
            "L1Store ghost_entries must be >= 0, got -1",
        ),
    ],
)
def test_bounds_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        L1Store(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"ttl_seconds": -1},
            ValueError,
            "ttl_seconds must be >= 0 (or None for no expiry), got -1",
        ),
        (
            {"ttl_seconds": float("nan")},
            ValueError,
            "ttl_seconds must be >= 0 (or None for no expiry), got nan",
        ),
        (
            {"ttl_seconds": 5, "stale_seconds": -0.5},
            ValueError,
            "stale_seconds must be a finite number >= 0, got -0.5",
        ),
        (
            {"ttl_seconds": None, "stale_seconds": 3},
            ValueError,
            "stale_seconds=3 needs a finite ttl_seconds: "
            "an entry that never expires is never stale",
        ),
        (
            {"ttl_seconds": 5, "size_bytes": -1},
            ValueError,
            "size_bytes must be >= 0, got -1",
        ),
        (
            {"ttl_seconds": 5, "size_bytes": 1.5},
            TypeError,
            "size_bytes must be an int, got float",
        ),
        (
            {"ttl_seconds": 5, "tags": "user"},
            TypeError,
            "tags must be a collection of strings, not the string 'user'",
        ),
    ],
)
def test_set_arguments_are_validated(
    clock: ManualClock, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    store = make(clock)
    with pytest.raises(error) as info:
        store.set("k", V, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert len(store) == 0


def test_objects_need_a_size(clock: ManualClock) -> None:
    store = make(clock)
    with pytest.raises(TypeError) as info:
        store.set("k", {"a": 1}, ttl_seconds=None)
    assert str(info.value) == (
        "set('k') got a dict value and no size_bytes; "
        "pass size_bytes= for values that are not bytes, bytearray or memoryview"
    )
    store.set("k", {"a": 1}, size_bytes=40, ttl_seconds=None)
    store.set("m", memoryview(b"abcd"), ttl_seconds=None)
    assert store.total_bytes == 44


def test_value_larger_than_the_store_is_refused_and_drops_the_old_value(
    clock: ManualClock,
) -> None:
    store = make(clock, max_bytes=100)
    store.set("k", V, ttl_seconds=None)
    with pytest.raises(EntryTooLarge) as info:
        store.set("k", b"y" * 101, ttl_seconds=None)
    assert str(info.value) == (
        "cannot cache 'k': its value is 101 bytes, more than the whole L1 (max_bytes=100); "
        "serve it uncached or raise max_bytes"
    )
    assert (info.value.key, info.value.size_bytes, info.value.max_bytes) == ("k", 101, 100)
    assert isinstance(info.value, ValueError)
    assert store.get("k") is None  # the old value must not be served instead of the new one
    store.set("k", b"y" * 100, ttl_seconds=None)  # exactly max_bytes fits
    check_invariants(store)


# -- bounds --------------------------------------------------------------------------------


def test_entry_bound_holds_and_set_reports_evictions(clock: ManualClock) -> None:
    store = make(clock, max_entries=50)
    evicted: list[str] = []
    for i in range(500):
        evicted.extend(store.set(f"k{i}", V, ttl_seconds=None))
        assert len(store) <= 50
    check_invariants(store)
    assert len(store) == 50
    assert len(evicted) == len(set(evicted)) == 450
    assert not set(evicted) & set(store.keys())
    stats = store.statistics()
    assert stats.evictions == 450
    assert stats.entries == 50
    assert stats.window_entries + stats.probation_entries + stats.protected_entries == 50


def test_byte_bound_holds(clock: ManualClock) -> None:
    store = make(clock, max_entries=1000, max_bytes=1000)
    rng = random.Random(7)
    for _ in range(2000):
        key = f"k{rng.randrange(300)}"
        if store.get(key) is None:
            store.set(key, b"v" * rng.randrange(1, 120), ttl_seconds=None)
        assert store.total_bytes <= 1000
    check_invariants(store)
    assert store.total_bytes == store.statistics().bytes > 800


def test_growing_an_entry_in_place_evicts_others(clock: ManualClock) -> None:
    store = make(clock, max_entries=10, max_bytes=100)
    for i in range(5):
        store.set(f"k{i}", V, ttl_seconds=None)
    evicted = store.set("k0", b"z" * 80, ttl_seconds=None)
    check_invariants(store)
    assert evicted == ("k1", "k2")  # the probation LRU end; k0 itself was just touched
    assert store.total_bytes == 100


def test_a_single_slot_store_keeps_the_newest_entry(clock: ManualClock) -> None:
    store = make(clock, max_entries=1)
    store.set("a", V, ttl_seconds=None)
    assert store.set("b", V, ttl_seconds=None) == ("a",)
    assert store.keys() == ["b"]
    check_invariants(store)


# -- expiry and staleness ------------------------------------------------------------------


def test_entry_expires_at_its_deadline(clock: ManualClock) -> None:
    store = make(clock)
    store.set("k", V, ttl_seconds=10)
    clock.advance(9.999)
    assert store.get("k") == L1Hit(value=V, state=L1State.FRESH)
    clock.advance(0.001)
    assert store.get("k") is None
    assert len(store) == 0  # removed lazily by the get
    assert store.statistics().misses_expired == 1
    assert store.statistics().expirations == 1


def test_stale_window_serves_stale_then_expires(clock: ManualClock) -> None:
    store = make(clock)
    store.set("k", V, ttl_seconds=10, stale_seconds=5)
    clock.advance(12)
    assert store.peek("k") == L1Hit(value=V, state=L1State.STALE)
    assert store.get("k") == L1Hit(value=V, state=L1State.STALE)
    store.set("k", b"new", ttl_seconds=10, stale_seconds=5)  # the refresh
    assert store.get("k") == L1Hit(value=b"new", state=L1State.FRESH)
    clock.advance(15)
    assert store.get("k") is None
    stats = store.statistics()
    assert (stats.hits, stats.stale_hits, stats.misses_expired) == (2, 1, 1)


def test_zero_ttl_stores_nothing_and_drops_the_old_value(clock: ManualClock) -> None:
    store = make(clock)
    store.set("k", V, ttl_seconds=None)
    assert store.set("k", b"new", ttl_seconds=0) == ()
    assert "k" not in store
    assert store.get("k") is None
    assert store.statistics().misses_expired == 1


def test_zero_ttl_with_a_stale_window_is_stale_at_once(clock: ManualClock) -> None:
    store = make(clock)
    store.set("k", V, ttl_seconds=0, stale_seconds=5)
    assert store.get("k") == L1Hit(value=V, state=L1State.STALE)


def test_sweep_is_incremental_and_skips_rewritten_entries(clock: ManualClock) -> None:
    store = make(clock, max_entries=1000)
    for i in range(100):
        store.set(f"k{i}", V, ttl_seconds=10, tags=frozenset({"t"}))
    store.set(
        "k0", V, ttl_seconds=100, tags=frozenset({"t"})
    )  # rewritten: its first deadline no longer applies
    store.set("forever", V, ttl_seconds=None)
    clock.advance(10)
    assert store.sweep(max_items=10) == 9  # the first heap item is k0's stale deadline
    assert store.sweep(max_items=0) == 0
    assert store.sweep(max_items=1000) == 90
    assert store.sweep() == 0
    assert sorted(store.keys()) == ["forever", "k0"]
    assert store.keys_tagged("t") == {"k0"}
    check_invariants(store)
    assert store.statistics().expirations == 99
    with pytest.raises(ValueError, match=r"^sweep\(\) max_items must be >= 0, got -1$"):
        store.sweep(-1)


def test_expired_entries_are_evicted_before_live_ones(clock: ManualClock) -> None:
    store = make(clock, max_entries=10)
    for i in range(5):
        store.set(f"old{i}", V, ttl_seconds=1)
    for i in range(5):
        store.set(f"live{i}", V, ttl_seconds=None)
    clock.advance(2)
    for i in range(5):
        store.set(f"new{i}", V, ttl_seconds=None)
    assert sorted(store.keys()) == sorted(
        [f"live{i}" for i in range(5)] + [f"new{i}" for i in range(5)]
    )
    assert store.statistics().evictions == 0


def test_rewrites_do_not_grow_the_expiry_heap_without_bound(clock: ManualClock) -> None:
    store = make(clock, max_entries=10)
    for _ in range(10_000):
        store.set("k", V, ttl_seconds=60)
    assert len(store._expiry_heap) <= 2 * len(store) + 1024


# -- tags and invalidation -----------------------------------------------------------------


def test_invalidate_tag_removes_the_entries_from_every_tag(clock: ManualClock) -> None:
    store = make(clock)
    store.set("u1", V, ttl_seconds=None, tags=frozenset({"user:1", "users"}))
    store.set("u2", V, ttl_seconds=None, tags=frozenset({"user:2", "users"}))
    store.set("x", V, ttl_seconds=None)
    assert store.invalidate_tag("user:1") == 1
    assert store.keys_tagged("users") == {"u2"}
    assert store.invalidate_tag("users") == 1
    assert store.invalidate_tag("users") == 0
    assert store.invalidate_tag("nobody") == 0
    assert store.keys() == ["x"]
    assert store._tag_index == {}
    assert store.statistics().tags == 0
    check_invariants(store)


def test_rewriting_an_entry_moves_it_between_tags(clock: ManualClock) -> None:
    store = make(clock)
    store.set("k", V, ttl_seconds=None, tags=frozenset({"a", "b"}))
    store.set("k", V, ttl_seconds=None, tags=frozenset({"b", "c"}))
    assert store.keys_tagged("a") == frozenset()
    assert store.invalidate_tag("a") == 0
    assert store.invalidate_tag("c") == 1
    assert store._tag_index == {}


def test_the_tag_index_does_not_leak_through_eviction_or_expiry(clock: ManualClock) -> None:
    store = make(clock, max_entries=20)
    for i in range(1000):
        store.set(f"k{i}", V, ttl_seconds=5 if i % 2 else None, tags=frozenset({f"t{i}", "all"}))
    check_invariants(store)
    assert len(store._tag_index) == len(store) + 1
    clock.advance(5)
    store.sweep(1000)
    check_invariants(store)
    store.clear()
    assert store._tag_index == {}
    assert store.statistics().tags == 0


def test_invalidate_matching_takes_globs_patterns_and_predicates(clock: ManualClock) -> None:
    store = make(clock)
    for key in ("user:1:name", "user:1:mail", "user:2:name", "team:1", "User:1:x"):
        store.set(key, V, ttl_seconds=None, tags=frozenset({"t"}))
    assert store.invalidate_matching("user:1:*") == 2  # case-sensitive, like fnmatchcase
    assert store.invalidate_matching(re.compile(fnmatch.translate("*:name"))) == 1
    assert store.invalidate_matching(re.compile("team")) == 0  # must match the whole key
    assert store.invalidate_matching(lambda key: key.startswith("team")) == 1
    assert store.keys() == ["User:1:x"]
    assert store.keys_tagged("t") == {"User:1:x"}
    check_invariants(store)
    with pytest.raises(TypeError) as info:
        store.invalidate_matching(42)  # type: ignore[arg-type]
    assert str(info.value) == (
        "invalidate_matching() takes a glob string, a compiled re.Pattern or a predicate, "
        "got int: 42"
    )


# -- miss reasons --------------------------------------------------------------------------


def test_misses_are_classified_by_reason(clock: ManualClock) -> None:
    store = make(clock, max_entries=10)
    assert store.get("never") is None
    store.set("ttl", V, ttl_seconds=1)
    clock.advance(1)
    assert store.get("ttl") is None  # expired, found by this get
    assert store.get("ttl") is None  # still expired: the ghost remembers
    store.set("del", V, ttl_seconds=None)
    store.delete("del")
    assert store.get("del") is None
    store.set("tagged", V, ttl_seconds=None, tags=frozenset({"t"}))
    store.invalidate_tag("t")
    assert store.get("tagged") is None
    evicted = [key for i in range(30) for key in store.set(f"k{i}", V, ttl_seconds=None)]
    for key in evicted[-5:]:  # the ghost record holds the latest max_entries removals
        assert store.get(key) is None
    stats = store.statistics()
    assert stats.misses_absent == 1
    assert stats.misses_expired == 2
    assert stats.misses_invalidated == 2
    assert stats.misses_evicted == 5
    assert stats.misses == 10


def test_clear_marks_its_keys_invalidated(clock: ManualClock) -> None:
    store = make(clock)
    store.set("a", V, ttl_seconds=None)
    store.set("b", V, ttl_seconds=None)
    store.clear()
    assert len(store) == 0
    assert store.total_bytes == 0
    assert store.get("a") is None
    assert store.get("zzz") is None
    stats = store.statistics()
    assert (stats.misses_invalidated, stats.misses_absent, stats.invalidations) == (1, 1, 2)
    store.set("a", V, ttl_seconds=None)  # the store works after clear()
    assert store.get("a") is not None
    check_invariants(store)


def test_the_ghost_record_is_bounded(clock: ManualClock) -> None:
    store = L1Store(max_entries=100, max_bytes=1 << 20, clock=clock, ghost_entries=2)
    for key in ("a", "b", "c"):
        store.set(key, V, ttl_seconds=None)
        store.delete(key)
    assert len(store._ghosts) == 2
    for key in ("a", "b", "c"):
        store.get(key)
    stats = store.statistics()
    assert (stats.misses_absent, stats.misses_invalidated) == (1, 2)


def test_delete_reports_whether_the_key_was_resident(clock: ManualClock) -> None:
    store = make(clock)
    store.set("k", V, ttl_seconds=None)
    assert store.delete("k") is True
    assert store.delete("k") is False


# -- negative entries ----------------------------------------------------------------------


def test_negative_entries_are_absent_hits_until_they_expire(clock: ManualClock) -> None:
    store = make(clock)
    store.set_absent("ghost", ttl_seconds=30, tags=frozenset({"user:9"}))
    hit = store.get("ghost")
    assert hit is not None
    assert hit.state is L1State.ABSENT
    assert hit.value is None
    assert store.total_bytes == 0
    assert "ghost" in store
    clock.advance(30)
    assert store.get("ghost") is None
    stats = store.statistics()
    assert (stats.hits, stats.absent_hits, stats.misses_expired) == (1, 1, 1)


def test_a_value_replaces_a_negative_entry(clock: ManualClock) -> None:
    store = make(clock)
    store.set_absent("k", ttl_seconds=30, tags=frozenset({"t"}))
    store.set("k", V, ttl_seconds=30)
    assert store.get("k") == L1Hit(value=V, state=L1State.FRESH)
    assert store.keys_tagged("t") == frozenset()
    store.set_absent("k", ttl_seconds=30)
    assert store.get("k") == L1Hit(value=None, state=L1State.ABSENT)
    assert store.total_bytes == 0
    with pytest.raises(ValueError, match=r"ttl_seconds must be >= 0"):
        store.set_absent("k", ttl_seconds=-5)


# -- reads without side effects, and the small API -----------------------------------------


def test_peek_touches_neither_recency_nor_statistics(clock: ManualClock) -> None:
    store = make(clock)
    store.set("k", V, ttl_seconds=None)
    before = store.statistics()
    assert store.peek("k") == L1Hit(value=V, state=L1State.FRESH)
    assert store.peek("missing") is None
    assert store.statistics() == before
    assert "k" in store._window  # not promoted


def test_container_protocol_and_repr(clock: ManualClock) -> None:
    store = make(clock, max_entries=5, max_bytes=1000)
    store.set("a", V, ttl_seconds=None)
    store.set("b", V, ttl_seconds=1)
    assert "a" in store
    assert 3 not in store
    assert len(store) == 2
    clock.advance(1)
    assert "b" not in store
    assert len(store) == 2  # b is expired but not yet removed
    assert store.keys() == ["a"]
    assert repr(store) == "L1Store(entries=2/5, bytes=20/1000)"


def test_the_default_clock_is_monotonic_time() -> None:
    store = L1Store(max_entries=10, max_bytes=1000)
    store.set("k", V, ttl_seconds=3600)
    assert store.get("k") == L1Hit(value=V, state=L1State.FRESH)


def test_statistics_snapshot(clock: ManualClock) -> None:
    store = make(clock, max_entries=10, max_bytes=1000)
    for key in ("a", "b", "c", "d"):
        store.set(key, V, ttl_seconds=None, tags=frozenset({key}))
    # The window holds 1 entry: a, b and c have moved on to probation.
    store.get("a")  # promoted to protected
    store.get("a")
    store.get("nope")
    store.set_absent("e", ttl_seconds=10)  # pushes d out of the window
    store.get("e")
    store.delete("b")
    assert store.statistics() == L1Statistics(
        hits=3,
        stale_hits=0,
        absent_hits=1,
        misses=1,
        misses_absent=1,
        misses_expired=0,
        misses_evicted=0,
        misses_invalidated=0,
        evictions=0,
        admissions_rejected=0,
        expirations=0,
        invalidations=1,
        entries=4,
        bytes=30,
        max_entries=10,
        max_bytes=1000,
        window_entries=1,
        probation_entries=2,
        protected_entries=1,
        tags=3,
    )
    assert store.statistics().hit_rate == 0.75
    empty = L1Statistics(**{**_zero_statistics(), "max_entries": 1, "max_bytes": 1})
    assert empty.hit_rate == 0.0


def _zero_statistics() -> dict[str, int]:
    return dict.fromkeys(L1Statistics.__struct_fields__, 0)


# -- the eviction policy -------------------------------------------------------------------


def zipf_trace(keys: int, requests: int, s: float, seed: int) -> list[str]:
    """A seeded Zipf(s) trace over ``keys`` keys, with popularity shuffled over key names."""
    cdf: list[float] = []
    total = 0.0
    for rank in range(1, keys + 1):
        total += rank**-s
        cdf.append(total)
    rng = random.Random(seed)
    names = [f"key:{i}" for i in range(keys)]
    rng.shuffle(names)
    return [names[bisect.bisect_left(cdf, rng.random() * total)] for _ in range(requests)]


def recency_trace(requests: int, capacity: int, seed: int) -> list[str]:
    """A stack-distance trace: 70% re-references of recent keys, 30% brand-new keys.

    Popularity is all recency and no frequency, which is where an LRU is at its
    best and a frequency filter at its worst.
    """
    rng = random.Random(seed)
    recent: list[str] = []
    trace: list[str] = []
    for n in range(requests):
        if recent and rng.random() < 0.7:
            distance = min(int(rng.expovariate(1 / (capacity * 0.3))), len(recent) - 1)
            key = recent[-1 - distance]
        else:
            key = f"new:{n}"
        trace.append(key)
        recent.append(key)
        if len(recent) > capacity * 20:
            del recent[: capacity * 10]
    return trace


def lru_hit_rate(trace: list[str], capacity: int) -> float:
    cache: OrderedDict[str, None] = OrderedDict()
    hits = 0
    for key in trace:
        if key in cache:
            cache.move_to_end(key)
            hits += 1
        else:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / len(trace)


def l1_hit_rate(trace: list[str], capacity: int) -> tuple[float, L1Store]:
    store = L1Store(max_entries=capacity, max_bytes=1 << 40, clock=ManualClock())
    for key in trace:
        if store.get(key) is None:
            store.set(key, V, ttl_seconds=None)
    return store.statistics().hit_rate, store


def test_w_tinylfu_beats_lru_on_zipf() -> None:
    trace = zipf_trace(keys=20_000, requests=200_000, s=0.99, seed=1)
    lru = lru_hit_rate(trace, 2_000)
    tinylfu, store = l1_hit_rate(trace, 2_000)
    check_invariants(store)
    assert store.statistics().admissions_rejected > 0
    # Measured about 0.735 against 0.685, whatever the process's hash salt.
    assert tinylfu > lru + 0.03, (tinylfu, lru)


def test_w_tinylfu_is_not_far_behind_lru_on_a_recency_trace() -> None:
    trace = recency_trace(requests=200_000, capacity=2_000, seed=3)
    lru = lru_hit_rate(trace, 2_000)
    tinylfu, store = l1_hit_rate(trace, 2_000)
    # A fixed 1% window scores about 0.47 against 0.70 here; the hill climber grows the
    # window and recovers most of the gap (about 0.655).
    assert tinylfu > 0.9 * lru, (tinylfu, lru)
    assert store.statistics().window_entries > 100  # it started at 1% of 2,000 entries


def test_a_scan_does_not_flush_the_popular_keys(clock: ManualClock) -> None:
    store = make(clock, max_entries=100)
    hot = [f"hot{i}" for i in range(50)]
    for _ in range(5):
        for key in hot:
            if store.get(key) is None:
                store.set(key, V, ttl_seconds=None)
    for i in range(1000):  # one-hit wonders
        if store.get(f"scan{i}") is None:
            store.set(f"scan{i}", V, ttl_seconds=None)
    assert sum(key in store for key in hot) >= 45
    assert store.statistics().admissions_rejected > 800


def test_the_sketch_saturates_at_15_and_ages_by_halving(clock: ManualClock) -> None:
    store = make(clock, max_entries=10)
    store.set("k", V, ttl_seconds=None)
    entry = store._data["k"]
    for _ in range(20):
        store.get("k")
    assert store._frequency(entry) == 15
    assert entry.saturated_in is store._epoch
    # 10 * max_entries accesses (1 insert + 99 hits) trigger the first aging.
    for _ in range(78):
        store.get("k")
    assert store._frequency(entry) == 15
    store.get("k")  # the 99th hit
    assert store._frequency(entry) == 7
    assert entry.saturated_in is not store._epoch
    store.get("k")
    assert store._frequency(entry) == 8


def test_frequency_sketch_counts_saturates_and_ages_in_place() -> None:
    sketch = FrequencySketch(max_entries=100)
    assert len(sketch.table) == 16 * 128
    assert sketch.sample_size == 1_000
    probes = sketch.probes("k")
    assert probes == sketch.probes("k")
    assert all(0 <= i < len(sketch.table) for i in probes)
    assert sketch.frequency(probes) == 0
    for expected in range(1, MAX_COUNT + 1):
        assert not sketch.increment(probes)
        assert sketch.frequency(probes) == expected
    assert sketch.increment(probes)  # all four already full: saturated
    assert sketch.frequency(probes) == MAX_COUNT
    table, epoch = sketch.table, sketch.epoch
    assert sketch.age() is sketch.epoch is not epoch
    assert sketch.table is table  # halved in place: holders of the table stay valid
    assert sketch.frequency(probes) == MAX_COUNT // 2
    assert not sketch.increment(probes)


def test_hill_climber_waits_out_the_warm_up_then_follows_the_hit_rate() -> None:
    climber = HillClimber(max_entries=100, warm_up=1_000)
    initial = climber.window_share
    assert initial == pytest.approx(0.01)
    assert climber.window_share + climber.protected_share == pytest.approx(0.802)
    assert not climber.climb(hits=900, lookups=999)  # warming up: the sample starts here
    assert not climber.climb(hits=900, lookups=999 + 4_095)  # the sample is not complete
    # The first step (hit rate 0 -> 0.5, a jump) goes the initial way: a smaller window.
    assert climber.climb(hits=900 + 2_048, lookups=999 + 4_096)
    assert climber.window_share == 0.0
    # A better hit rate keeps the direction; a worse one reverses it.
    assert climber.climb(hits=900 + 2_048 + 4_000, lookups=999 + 2 * 4_096)
    assert climber.window_share == 0.0
    assert climber.climb(hits=900 + 2_048 + 4_000 + 100, lookups=999 + 3 * 4_096)
    assert climber.window_share == pytest.approx(0.0625)
    assert climber.window_share + climber.protected_share == pytest.approx(0.802)


@pytest.mark.parametrize("seed", range(3))
def test_random_operations_keep_every_structure_consistent(seed: int) -> None:
    clock = ManualClock()
    store = L1Store(max_entries=30, max_bytes=600, clock=clock, ghost_entries=10)
    rng = random.Random(seed)
    for _ in range(5_000):
        key = f"k{rng.randrange(80)}"
        op = rng.random()
        if op < 0.45:
            store.get(key)
        elif op < 0.75:
            ttl = rng.choice([None, 0, 1, 5, 30])
            evicted = store.set(
                key,
                b"v" * rng.randrange(0, 60),
                ttl_seconds=ttl,
                stale_seconds=0 if ttl is None else rng.choice([0, 2]),
                tags=frozenset(rng.sample(["a", "b", "c", "d"], rng.randrange(3))),
            )
            assert all(k not in store._data for k in evicted)
        elif op < 0.8:
            store.set_absent(key, ttl_seconds=rng.choice([1, 10]))
        elif op < 0.85:
            store.delete(key)
        elif op < 0.88:
            store.invalidate_tag(rng.choice("abcd"))
        elif op < 0.9:
            store.invalidate_matching(f"k{rng.randrange(8)}*")
        elif op < 0.97:
            clock.advance(rng.random() * 3)
        elif op < 0.995:
            store.sweep(rng.randrange(5))
        else:
            store.clear()
        check_invariants(store)
        assert len(store._ghosts) <= 10
    stats = store.statistics()
    assert stats.hits + stats.misses > 2_000
