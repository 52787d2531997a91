"""The L1 store's admission-window sizing: Caffeine's hill climber.

W-TinyLFU splits capacity between a small LRU *admission window* and a main
space of *probation* and *protected* segments. The right window size depends on
the workload: a recency-heavy one wants a large window (the store then behaves
more like an LRU), a frequency-skewed one a small window (most capacity guarded
by the frequency sketch). :class:`HillClimber` finds it as Caffeine's
``BoundedLocalCache.climb`` does: after each sample of lookups it moves
capacity between the window and protected in the direction that raised the hit
rate. The step decays, and restarts at full size when the hit rate jumps, i.e.
the workload changed.

One departure from Caffeine: a change of hit rate smaller than chance would
explain (three standard deviations of the difference of two samples' hit
rates) moves nothing. Caffeine always steps, so on a stationary workload its
window wanders with the sampling noise; a frequency-skewed workload loses
hits wherever the window wanders off its best size (near zero), and this
climber stays there. A recency-heavy workload still moves the window, as
each step towards the right size raises the hit rate by far more than the
noise.

The climber only computes shares of capacity; the store turns them into entry
and byte limits for its queues.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["HillClimber", "sample_size"]

# Caffeine's shares of capacity: the window starts at 1%, protected at 80% of the rest. The
# climber moves capacity between them; their sum stays fixed and probation keeps the rest.
_INITIAL_WINDOW_SHARE: Final = 0.01
_WINDOW_AND_PROTECTED_SHARE: Final = _INITIAL_WINDOW_SHARE + 0.8 * (1 - _INITIAL_WINDOW_SHARE)
_STEP: Final = 0.0625  # HILL_CLIMBER_STEP_PERCENT
_DECAY: Final = 0.98  # HILL_CLIMBER_STEP_DECAY_RATE
_RESTART: Final = 0.05  # HILL_CLIMBER_RESTART_THRESHOLD
_SAMPLE_PER_ENTRY: Final = 2
_MIN_SAMPLE: Final = 4096
_NOISE: Final = 3.0  # standard deviations of a difference of two samples' hit rates


class HillClimber:
    """Sizes the admission window of a store of ``max_entries`` entries.

    Args:
        max_entries: The entries the store holds (>= 1); sets the sample size,
            ``2 * max_entries`` lookups (at least 4,096). Caffeine samples 10
            entries' worth; a shorter sample follows a recency-heavy workload
            five times sooner, and the noise test keeps its noise from moving
            the window on a skewed one.
        warm_up: Lookups to ignore at first (the store passes one sample):
            hits rise as the store fills and the frequency sketch learns,
            whatever the window does, and the climber would credit its own
            moves with the rise.

    Attributes:
        window_share: The window's share of capacity (between 0 and 0.802).
        protected_share: Protected's share: what the window does not take of
            their fixed sum. Probation keeps the rest.
    """

    __slots__ = (
        "_previous_hit_rate",
        "_sample",
        "_sample_hits",
        "_sample_lookups",
        "_step",
        "_warm_up",
        "protected_share",
        "window_share",
    )

    def __init__(self, *, max_entries: int, warm_up: int) -> None:
        self._set_window_share(_INITIAL_WINDOW_SHARE)
        self._step = -_STEP
        self._sample_hits = 0
        self._sample_lookups = 0
        self._previous_hit_rate = 0.0
        self._warm_up = warm_up
        self._sample = sample_size(max_entries)

    def resize(self, max_entries: int, lookups: int) -> None:
        """The store grew to ``max_entries``: sample that size, after a new warm-up.

        The warm-up ends one sample after ``lookups`` (the store's cumulative
        lookups): hits rise while the store fills, whatever the window does.
        """
        self._sample = sample_size(max_entries)
        self._warm_up = lookups + self._sample

    def climb(self, hits: int, lookups: int) -> bool:
        """Take a step if a sample of lookups is complete; return whether it took one.

        Args:
            hits: The store's cumulative hits.
            lookups: The store's cumulative lookups (hits and misses).
        """
        if lookups < self._warm_up:
            self._sample_hits = hits
            self._sample_lookups = lookups
            return False
        requests = lookups - self._sample_lookups
        if requests < self._sample:
            return False
        hit_rate = (hits - self._sample_hits) / requests
        change = hit_rate - self._previous_hit_rate
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= _RESTART:
            self._step = _STEP if amount >= 0 else -_STEP
        else:
            self._step = _DECAY * amount
            # Two samples' hit rates differ by chance by about this much: a smaller change
            # is no evidence either way, so hold the window where it is.
            noise = _NOISE * math.sqrt(2 * hit_rate * (1 - hit_rate) / requests)
            if abs(change) < noise:
                amount = 0.0
        self._previous_hit_rate = hit_rate
        self._sample_hits = hits
        self._sample_lookups = lookups
        self._set_window_share(self.window_share + amount)
        return True

    def _set_window_share(self, share: float) -> None:
        share = min(max(share, 0.0), _WINDOW_AND_PROTECTED_SHARE)
        self.window_share = share
        self.protected_share = _WINDOW_AND_PROTECTED_SHARE - share


def sample_size(max_entries: int) -> int:
    """Lookups per climb for a store of ``max_entries`` entries."""
    return max(_MIN_SAMPLE, _SAMPLE_PER_ENTRY * max_entries)
