"""Tests of the cache actor's L1 store: bounds, expiry, tags, miss reasons and its small API."""

from __future__ import annotations

import fnmatch
import random
import re
from typing import Any

import pytest

from actors.cache._l1 import EntryTooLarge, L1Hit, L1State, L1Statistics, L1Store
from runtime.testing import ManualClock

from .l1_support import V, check_invariants, make


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock()


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
