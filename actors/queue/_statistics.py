"""The queue's figures: counters per queue and type, and wait/run time summaries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import msgspec

__all__ = ["Counters", "QueueStatistics", "Reservoir", "Summary", "TypeStatistics"]

_RESERVOIR = 1024


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """Count, sum and percentiles (from a bounded reservoir) of a duration, in seconds."""

    count: int = 0
    sum: float = 0.0
    p50: float = 0.0
    p99: float = 0.0


class Reservoir:
    """A bounded uniform sample of observed values (Vitter's algorithm R)."""

    __slots__ = ("count", "samples", "total")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        """Observe ``value``."""
        self.count += 1
        self.total += value
        if len(self.samples) < _RESERVOIR:
            self.samples.append(value)
        else:
            slot = int(random.random() * self.count)  # uniform in [0, count): randrange costs 3x
            if slot < _RESERVOIR:
                self.samples[slot] = value

    def summary(self) -> Summary:
        """The summary so far."""
        if not self.samples:
            return Summary()
        ordered = sorted(self.samples)
        last = len(ordered) - 1
        return Summary(
            count=self.count,
            sum=self.total,
            p50=ordered[round(last * 0.5)],
            p99=ordered[round(last * 0.99)],
        )


@dataclass(slots=True)
class TypeCounters:
    """Counters of one (queue, type)."""

    enqueued: int = 0
    completed: int = 0
    failed: int = 0
    retries: int = 0
    lease_expiries: int = 0
    cancelled: int = 0
    handed_back: int = 0
    wait: Reservoir = field(default_factory=Reservoir)
    run: Reservoir = field(default_factory=Reservoir)


class TypeStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Figures of one job type on one queue, on this node."""

    queue: str
    type: str
    enqueued: int
    completed: int
    failed: int
    retries: int
    lease_expiries: int
    cancelled: int
    handed_back: int
    wait_seconds: Summary
    run_seconds: Summary


class QueueStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One queue's figures: concurrency, depth per state and its job types."""

    queue: str
    concurrency: int
    active_here: int
    waiting: int
    delayed: int
    active: int
    completed: int
    failed: int
    cancelled: int
    paused: bool
    types: list[TypeStatistics]


class Counters:
    """This node's queue counters, keyed by (queue, type)."""

    def __init__(self) -> None:
        self.by_type: dict[tuple[str, str], TypeCounters] = {}

    def of(self, queue: str, job_type: str) -> TypeCounters:
        """The counters of ``(queue, job_type)``, created on first use."""
        key = (queue, job_type)
        counters = self.by_type.get(key)
        if counters is None:
            counters = self.by_type[key] = TypeCounters()
        return counters

    def snapshot(self, queue: str) -> list[TypeStatistics]:
        """The type figures of ``queue``."""
        return [
            TypeStatistics(
                queue=q,
                type=t,
                enqueued=c.enqueued,
                completed=c.completed,
                failed=c.failed,
                retries=c.retries,
                lease_expiries=c.lease_expiries,
                cancelled=c.cancelled,
                handed_back=c.handed_back,
                wait_seconds=c.wait.summary(),
                run_seconds=c.run.summary(),
            )
            for (q, t), c in sorted(self.by_type.items())
            if q == queue
        ]
