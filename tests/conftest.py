"""Fixtures for every test of this project (users get theirs from ``runtime.pytest_plugin``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _older_tests_heap_frozen() -> Iterator[None]:
    """Keep what earlier tests left alive out of this test's garbage collections.

    One process runs the whole suite, so the heap grows test after test, and a
    full collection late in the run scanned all of it: 75-120 ms pauses, three
    of them during the 600-request burst of ``test_cache_stalls``, enough to make
    a 0.5 s health PING miss its deadline on a quiet machine. A node in
    production does not carry a thousand tests' worth of objects. ``gc.freeze``
    moves the objects alive now out of every collection and ``gc.unfreeze``
    gives them back afterwards, both in constant time; what the test creates is
    collected as usual.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
