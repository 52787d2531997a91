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

The climber only computes shares of capacity; the store turns them into entry
and byte limits for its queues.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HillClimber"]

# Caffeine's shares of capacity: the window starts at 1%, protected at 80% of the rest. The
# climber moves capacity between them; their sum stays fixed and probation keeps the rest.
_INITIAL_WINDOW_SHARE: Final = 0.01
_WINDOW_AND_PROTECTED_SHARE: Final = _INITIAL_WINDOW_SHARE + 0.8 * (1 - _INITIAL_WINDOW_SHARE)
_STEP: Final = 0.0625  # HILL_CLIMBER_STEP_PERCENT
_DECAY: Final = 0.98  # HILL_CLIMBER_STEP_DECAY_RATE
_RESTART: Final = 0.05  # HILL_CLIMBER_RESTART_THRESHOLD
_MIN_SAMPLE: Final = 4096


class HillClimber:
    """Sizes the admission window of a store of ``max_entries`` entries.

    Args:
        max_entries: The store's entry bound (>= 1); sets the sample size.
        warm_up: Lookups to ignore at first (the store passes one sketch sample):
            hits rise as the frequency sketch learns, whatever the window does,
            and the climber would credit its own moves with the rise.

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
        # Caffeine samples 10 * max_entries lookups per climb; 2 * max_entries adapts to a
        # recency-heavy workload five times sooner at little cost on skewed ones, and the
        # floor keeps the sampled hit rate of a small store from being mostly noise.
        self._sample = max(_MIN_SAMPLE, 2 * max_entries)

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
        self._previous_hit_rate = hit_rate
        self._sample_hits = hits
        self._sample_lookups = lookups
        self._set_window_share(self.window_share + amount)
        return True

    def _set_window_share(self, share: float) -> None:
        share = min(max(share, 0.0), _WINDOW_AND_PROTECTED_SHARE)
        self.window_share = share
        self.protected_share = _WINDOW_AND_PROTECTED_SHARE - share
