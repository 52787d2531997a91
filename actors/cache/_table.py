"""The L1 table readers share with the cache actor, on Erlang's ETS model.

The cache actor owns the table: it alone stores, deletes and invalidates
entries, and it installs a fresh :class:`L1Store` at each start (a restarted
actor does not trust what a crashed one left behind). Other tasks of the same
process read it directly, without a message round trip: ``lookup`` never
awaits, so on the event loop it is atomic with respect to the owner's writes.
The lookup does update the store's recency and frequency records; that is
the one mutation readers make, and it is the owner's eviction bookkeeping, not
its data.

Readers also bump plain integer counters here (L2 hits, misses, errors),
which costs a few nanoseconds and never waits: recording never slows a get.

The write epoch lets a reader's L2 fill lose to a write that happened while
the reader was waiting for Redis: a fill carries the epoch seen before the
read, and the owner drops it if the key was written or invalidated since.

Writers other than the owner go through the owner's :class:`~._writes.Writes`
(``writes``), which changes L1 and queues the Redis side in one synchronous
step, exactly as the owner's handler would.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime import ActorRef

    from ._l1 import L1Hit, L1Store
    from ._writes import Writes

__all__ = ["CacheTable"]

# How many recently written keys keep their own write epoch; older ones share one floor.
_RECENT_WRITES = 65_536


class CacheTable:
    """One node's L1 store, its write epochs, and readers' counters."""

    def __init__(self) -> None:
        self.l1: L1Store | None = None
        self.ref: ActorRef[Any] | None = None  # the owner's ref; valid across its restarts
        self.writes: Writes | None = None  # the running incarnation's write path
        self.epoch = 0
        self._bulk_epoch = 0  # last pattern/tag/everything invalidation
        self._floor_epoch = 0  # the newest epoch forgotten from _written
        self._written: OrderedDict[str, int] = OrderedDict()
        self.l2_hits = 0
        self.l2_misses = 0
        self.l2_errors = 0
        self.degraded_reads = 0  # lookups answered as misses because Redis could not be asked

    def lookup(self, key: str) -> L1Hit | None:
        """Read ``key`` from L1 without a round trip; ``None`` on a miss or while restarting."""
        l1 = self.l1
        return l1.get(key) if l1 is not None else None

    # -- owner only ---------------------------------------------------------------------

    def attach(self, l1: L1Store, ref: ActorRef[Any], writes: Writes | None = None) -> None:
        """Install the store (and write path) of a new actor incarnation (owner only)."""
        self.l1 = l1
        self.ref = ref
        self.writes = writes
        self.wrote_everything()

    def detach(self) -> None:
        """Remove the store when the actor stops; readers then miss (owner only)."""
        self.l1 = None
        self.writes = None
        self.wrote_everything()

    def wrote(self, key: str) -> None:
        """Record a write or invalidation of ``key`` (owner only)."""
        self.epoch += 1
        written = self._written
        written[key] = self.epoch
        written.move_to_end(key)
        if len(written) > _RECENT_WRITES:
            _, forgotten = written.popitem(last=False)
            self._floor_epoch = max(self._floor_epoch, forgotten)

    def wrote_everything(self) -> None:
        """Record an invalidation that may touch any key (owner only)."""
        self.epoch += 1
        self._bulk_epoch = self.epoch

    def fill_allowed(self, key: str, seen_epoch: int) -> bool:
        """Whether a fill read at ``seen_epoch`` is still current for ``key``."""
        if self._bulk_epoch > seen_epoch:
            return False
        last = self._written.get(key, self._floor_epoch)
        return last <= seen_epoch
