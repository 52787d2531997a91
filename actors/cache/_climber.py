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

Departures from Caffeine, each worth hit rate on the bench's traces:

* A change of hit rate smaller than chance would explain (three standard
  deviations of the difference of two samples' hit rates) moves nothing, and
  keeps the step. Caffeine always steps, so on a stationary workload its
  window wanders with the sampling noise, and a frequency-skewed workload
  loses hits wherever the window wanders off its best size (near zero). A
  recency-heavy workload still moves the window: each step towards its right
  size raises the hit rate by far more than the noise.
* The hit rate it climbs on leaves out compulsory misses (keys the store
  never held, or forgot), which no window size could turn into hits: a burst
  of one-off keys (a scan) would otherwise look like a step gone wrong.
* It samples 2 entries' worth of lookups (Caffeine 10), so a recency-heavy
  workload gets its large window five times sooner; the noise test keeps the
  shorter, noisier samples from moving the window on a skewed one.
* Its warm-up starts at the first eviction after the store last grew: hits
  rise while the store fills, whatever the window does.

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
            ``2 * max_entries`` lookups (at least 4,096).
        warm_up: Cumulative lookups to ignore at first, or ``None`` (the
            default) for one sample from the first :meth:`climb`, which the
            store calls when it first evicts: hits rise as the store fills and
            the frequency sketch learns, whatever the window does, and the
            climber would credit its own moves with the rise. :meth:`resize`
            starts a new warm-up.

    Attributes:
        window_share: The window's share of capacity (between 0 and 0.802).
        protected_share: Protected's share: what the window does not take of
            their fixed sum. Probation keeps the rest.
    """

    __slots__ = (
        "_previous_hit_rate",
        "_sample",
        "_sample_compulsory",
        "_sample_hits",
        "_sample_lookups",
        "_step",
        "_warm_up",
        "protected_share",
        "window_share",
    )

    def __init__(self, *, max_entries: int, warm_up: int | None = None) -> None:
        self._set_window_share(_INITIAL_WINDOW_SHARE)
        self._step = -_STEP
        self._sample_hits = 0
        self._sample_lookups = 0
        self._sample_compulsory = 0
        self._previous_hit_rate = 0.0
        self._warm_up: int | None = warm_up
        self._sample = sample_size(max_entries)

    def resize(self, max_entries: int) -> None:
        """The store grew to ``max_entries``: sample that size, after a new warm-up.

        The warm-up lasts one sample from the next :meth:`climb`, which the
        store calls when it evicts, i.e. once it is full again.
        """
        self._sample = sample_size(max_entries)
        self._warm_up = None

    def climb(self, hits: int, lookups: int, compulsory: int = 0) -> bool:
        """Take a step if a sample of lookups is complete; return whether it took one.

        Args:
            hits: The store's cumulative hits.
            lookups: The store's cumulative lookups (hits and misses).
            compulsory: The store's cumulative misses of keys it never held
                (or forgot): left out of the hit rate the climber compares.
        """
        if self._warm_up is None:  # the warm-up starts now, at the first eviction
            self._warm_up = lookups + self._sample
        if lookups < self._warm_up:
            self._sample_hits = hits
            self._sample_lookups = lookups
            self._sample_compulsory = compulsory
            return False
        requests = lookups - self._sample_lookups
        if requests < self._sample:
            return False
        judged = requests - (compulsory - self._sample_compulsory)
        hit_rate = (hits - self._sample_hits) / judged if judged > 0 else 0.0
        change = hit_rate - self._previous_hit_rate
        if abs(change) >= _RESTART:
            amount = self._step if change >= 0 else -self._step
            self._step = _STEP if amount >= 0 else -_STEP
        elif abs(change) < _NOISE * math.sqrt(2 * hit_rate * (1 - hit_rate) / max(1, judged)):
            # Two samples' hit rates differ by chance by about this much: a smaller change
            # is no evidence either way, so the window stays, and so does the step.
            amount = 0.0
        else:
            amount = self._step if change >= 0 else -self._step
            self._step = _DECAY * amount
        self._previous_hit_rate = hit_rate
        self._sample_hits = hits
        self._sample_lookups = lookups
        self._sample_compulsory = compulsory
        self._set_window_share(self.window_share + amount)
        return True

    def _set_window_share(self, share: float) -> None:
        share = min(max(share, 0.0), _WINDOW_AND_PROTECTED_SHARE)
        self.window_share = share
        self.protected_share = _WINDOW_AND_PROTECTED_SHARE - share


def sample_size(max_entries: int) -> int:
    """Lookups per climb for a store of ``max_entries`` entries."""
    return max(_MIN_SAMPLE, _SAMPLE_PER_ENTRY * max_entries)
