"""Record what clients wrote and saw under faults, then judge it: :func:`check_history`.

The model is deliberately small, so key-value traffic, room messages and jobs
fit it alike:

* **writes with an order per key.** Every write puts an integer ``value`` on a
  ``key``; for one key, a larger value is a later write (the writer's counter, a
  room's sequence number, a job's state number). Values of one key are unique.
  A write is *acknowledged* (``ok=True``) when the client got a success reply at
  ``acked``; a failed or unanswered write (``ok=False``) may or may not have
  taken effect, so it is never counted as lost, and a value it wrote is never a
  phantom.
* **observations per client.** A *read* sees a key's current value (``None`` for
  absent) at some point between ``started`` and ``finished``; seeing the same
  value twice is normal. A *delivery* is one message of a stream (a room
  subscriber receiving sequence number ``value``), each expected once and in
  order.

:func:`check_history` reports, per key:

* **lost updates**: acknowledged writes newer than the key's final value at a
  source (Redis, a node); they were overwritten by an older value or dropped;
* **stale reads**: a read started more than ``stale_bound_seconds`` after a write
  was acknowledged that returns an older value (or nothing);
* **out-of-order** observations: a client sees a key's value go backwards;
* **duplicates**: a client receives the same delivery twice;
* **phantoms**: a read (or a final value) that no write ever wrote;
* **final divergence**: the sources' final values of a key disagree.

Times come from one clock: :meth:`History.now` (the clock given to
:class:`History`), so the writer and the readers share it.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "Anomaly",
    "AnomalyKind",
    "History",
    "HistoryReport",
    "Observation",
    "Write",
    "check_history",
]

AnomalyKind = Literal[
    "lost_update", "stale_read", "out_of_order", "duplicate", "phantom", "divergence"
]

_KINDS: tuple[AnomalyKind, ...] = (
    "lost_update",
    "stale_read",
    "out_of_order",
    "duplicate",
    "phantom",
    "divergence",
)


class _HasMonotonic(Protocol):
    """The one clock method :class:`History` needs."""

    def monotonic(self) -> float: ...


class Write(msgspec.Struct, frozen=True, kw_only=True):
    """One write: ``client`` put ``value`` on ``key``; ``acked`` is when its outcome was known."""

    client: str
    key: str
    value: int
    started: float
    acked: float
    ok: bool


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """What ``client`` saw of ``key``: a ``"read"`` of its value, or a ``"delivery"``."""

    client: str
    key: str
    value: int | None
    started: float
    finished: float
    kind: Literal["read", "delivery"] = "read"


class Anomaly(msgspec.Struct, frozen=True, kw_only=True):
    """One example of something wrong, in words (``detail``) and by where it happened."""

    kind: AnomalyKind
    key: str
    client: str | None
    detail: str


class HistoryReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`check_history` found: counts, and up to ``max_examples`` examples per kind.

    ``assert report.ok, report.summary()`` is the intended use.
    """

    keys: int
    writes: int
    acknowledged: int
    failed: int
    reads: int
    deliveries: int
    stale_bound_seconds: float
    final_sources: tuple[str, ...]
    lost_updates: int
    stale_reads: int
    out_of_order: int
    duplicates: int
    phantoms: int
    divergent_keys: int
    examples: tuple[Anomaly, ...]

    @property
    def ok(self) -> bool:
        """No anomaly of any kind."""
        return self.anomalies == 0

    @property
    def anomalies(self) -> int:
        """The number of anomalies of every kind together."""
        return (
            self.lost_updates
            + self.stale_reads
            + self.out_of_order
            + self.duplicates
            + self.phantoms
            + self.divergent_keys
        )

    def examples_of(self, kind: AnomalyKind) -> tuple[Anomaly, ...]:
        """The examples kept of one kind."""
        return tuple(example for example in self.examples if example.kind == kind)

    def summary(self) -> str:
        """A few readable lines: the traffic, each count, and the examples."""
        final = ", ".join(self.final_sources) if self.final_sources else "not given"
        lines = [
            f"history: {self.keys} keys, {self.writes} writes ({self.acknowledged} acknowledged, "
            f"{self.failed} failed), {self.reads} reads, {self.deliveries} deliveries; "
            f"stale bound {self.stale_bound_seconds:g}s; final state: {final}",
            f"lost updates {self.lost_updates}, stale reads {self.stale_reads}, "
            f"out of order {self.out_of_order}, duplicates {self.duplicates}, "
            f"phantoms {self.phantoms}, divergent keys {self.divergent_keys}"
            + (" -> ok" if self.ok else ""),
        ]
        lines.extend(
            f"  {example.kind} {example.key!r}"
            + (f" ({example.client})" if example.client is not None else "")
            + f": {example.detail}"
            for example in self.examples
        )
        return "\n".join(lines)


class History:
    """What clients did, recorded as it happens (append only, in memory).

    Args:
        clock: the time source of :meth:`now`; anything with ``monotonic()``
            (a :class:`~runtime.testing.ManualClock` too); ``time.monotonic`` by default.

    Example::

        history = History()
        started = history.now()
        await client.set(key, str(n))
        history.write("writer", key, n, started=started, acked=history.now(), ok=True)
    """

    def __init__(self, clock: _HasMonotonic | None = None) -> None:
        self._now: Callable[[], float] = clock.monotonic if clock is not None else time.monotonic
        self._writes: list[Write] = []
        self._observations: list[Observation] = []

    def now(self) -> float:
        """The current time on the history's clock."""
        return self._now()

    def write(
        self, client: str, key: str, value: int, *, started: float, acked: float, ok: bool
    ) -> None:
        """Record a write; ``ok`` says whether it was acknowledged (at ``acked``)."""
        self._writes.append(
            Write(client=client, key=key, value=value, started=started, acked=acked, ok=ok)
        )

    def read(
        self, client: str, key: str, value: int | None, *, started: float, finished: float
    ) -> None:
        """Record a read of ``key`` that returned ``value`` (``None``: absent)."""
        self._observations.append(
            Observation(client=client, key=key, value=value, started=started, finished=finished)
        )

    def deliver(self, client: str, key: str, value: int, *, at: float) -> None:
        """Record that ``client`` received message ``value`` of stream ``key`` (e.g. a room)."""
        self._observations.append(
            Observation(
                client=client, key=key, value=value, started=at, finished=at, kind="delivery"
            )
        )

    @property
    def writes(self) -> tuple[Write, ...]:
        """Every write recorded, in recording order."""
        return tuple(self._writes)

    @property
    def observations(self) -> tuple[Observation, ...]:
        """Every read and delivery recorded, in recording order."""
        return tuple(self._observations)

    def __repr__(self) -> str:
        return f"History(writes={len(self._writes)}, observations={len(self._observations)})"


def check_history(
    history: History,
    *,
    final: Mapping[str, Mapping[str, int | None]] | None = None,
    stale_bound_seconds: float = 0.0,
    max_examples: int = 5,
) -> HistoryReport:
    """Judge a history: see the module docstring for each kind of anomaly.

    Args:
        history: what the clients recorded.
        final: each source's final value per key after the load stopped and the
            system settled, e.g. ``{"redis": {...}, "node-a": {...}, "node-b": {...}}``.
            A key missing from a source's mapping counts as absent there (``None``).
            Without it, lost updates and divergence are not checked.
        stale_bound_seconds: how long after an acknowledgement a read may still
            return an older value.
        max_examples: examples kept per kind of anomaly.

    Raises:
        ValueError: two writes of one key carry the same value (values must order
            the writes of a key).
    """
    if stale_bound_seconds < 0:
        raise ValueError(f"stale_bound_seconds must be >= 0, got {stale_bound_seconds}")
    examples: dict[AnomalyKind, list[Anomaly]] = {kind: [] for kind in _KINDS}
    counts: dict[AnomalyKind, int] = dict.fromkeys(_KINDS, 0)

    def found(kind: AnomalyKind, key: str, client: str | None, detail: str) -> None:
        counts[kind] += 1
        if len(examples[kind]) < max_examples:
            examples[kind].append(Anomaly(kind=kind, key=key, client=client, detail=detail))

    writes_by_key: dict[str, list[Write]] = defaultdict(list)
    for write in history.writes:
        writes_by_key[write.key].append(write)
    written: dict[str, set[int]] = {}
    for key, writes in writes_by_key.items():
        values = {write.value for write in writes}
        if len(values) != len(writes):
            raise ValueError(
                f"key {key!r} has several writes of one value; values must order its writes"
            )
        written[key] = values

    observations = history.observations
    _check_reads(observations, writes_by_key, written, stale_bound_seconds, found)
    _check_sequences(observations, found)
    sources: tuple[str, ...] = ()
    if final is not None:
        sources = tuple(final)
        _check_final(final, writes_by_key, written, found)

    keys = set(writes_by_key) | {observation.key for observation in observations}
    if final is not None:
        for source_values in final.values():
            keys.update(source_values)
    writes_all = history.writes
    acknowledged = sum(1 for write in writes_all if write.ok)
    return HistoryReport(
        keys=len(keys),
        writes=len(writes_all),
        acknowledged=acknowledged,
        failed=len(writes_all) - acknowledged,
        reads=sum(1 for o in observations if o.kind == "read"),
        deliveries=sum(1 for o in observations if o.kind == "delivery"),
        stale_bound_seconds=stale_bound_seconds,
        final_sources=sources,
        lost_updates=counts["lost_update"],
        stale_reads=counts["stale_read"],
        out_of_order=counts["out_of_order"],
        duplicates=counts["duplicate"],
        phantoms=counts["phantom"],
        divergent_keys=counts["divergence"],
        examples=tuple(example for kind in _KINDS for example in examples[kind]),
    )


#: How the checks report one anomaly: kind, key, client (or source), and what happened.
_Found = Callable[[AnomalyKind, str, "str | None", str], None]


def _check_reads(
    observations: Sequence[Observation],
    writes_by_key: Mapping[str, list[Write]],
    written: Mapping[str, set[int]],
    bound: float,
    found: _Found,
) -> None:
    """Stale reads and phantom reads."""
    # Per key: acknowledged writes by acknowledgement time, and the newest value acked so far.
    acked_times: dict[str, list[float]] = {}
    newest: dict[str, list[Write]] = {}
    for key, writes in writes_by_key.items():
        acked = sorted((w for w in writes if w.ok), key=lambda w: w.acked)
        acked_times[key] = [w.acked for w in acked]
        running: list[Write] = []
        for write in acked:
            running.append(write if not running or write.value > running[-1].value else running[-1])
        newest[key] = running
    for read in observations:
        if read.kind != "read":
            continue
        key = read.key
        if read.value is not None and read.value not in written.get(key, ()):
            found(
                "phantom",
                key,
                read.client,
                f"read {read.value} at {read.started:.3f}, a value nobody wrote",
            )
        index = bisect.bisect_right(acked_times.get(key, []), read.started - bound)
        if index == 0:
            continue
        expected = newest[key][index - 1]
        if read.value is None or read.value < expected.value:
            found(
                "stale_read",
                key,
                read.client,
                f"read {read.value} at {read.started:.3f}, but {expected.value} was acknowledged "
                f"to {expected.client} at {expected.acked:.3f} "
                f"({read.started - expected.acked:.3f}s earlier, bound {bound:g}s)",
            )


def _check_sequences(
    observations: Sequence[Observation],
    found: _Found,
) -> None:
    """Per client and key, in recording order: values going backwards, deliveries seen twice."""
    last: dict[tuple[str, str], Observation] = {}
    delivered: dict[tuple[str, str], set[int]] = defaultdict(set)
    for observation in observations:
        if observation.value is None:
            continue
        where = (observation.client, observation.key)
        if observation.kind == "delivery":
            if observation.value in delivered[where]:
                found(
                    "duplicate",
                    observation.key,
                    observation.client,
                    f"received {observation.value} again at {observation.started:.3f}",
                )
                continue
            delivered[where].add(observation.value)
        previous = last.get(where)
        if (
            previous is not None
            and previous.value is not None
            and observation.value < previous.value
        ):
            found(
                "out_of_order",
                observation.key,
                observation.client,
                f"saw {observation.value} at {observation.started:.3f} "
                f"after {previous.value} at {previous.started:.3f}",
            )
            continue  # keep the newest seen as the reference
        last[where] = observation


def _check_final(
    final: Mapping[str, Mapping[str, int | None]],
    writes_by_key: Mapping[str, list[Write]],
    written: Mapping[str, set[int]],
    found: _Found,
) -> None:
    """Lost updates, phantom final values and divergence between the sources."""
    keys = set(writes_by_key)
    for values in final.values():
        keys.update(values)
    for key in sorted(keys):
        at = {source: values.get(key) for source, values in final.items()}
        for source, value in at.items():
            if value is not None and value not in written.get(key, ()):
                found("phantom", key, source, f"{source} ends on {value}, a value nobody wrote")
        acked = sorted((w for w in writes_by_key.get(key, []) if w.ok), key=lambda w: w.value)
        for write in acked:
            behind = [s for s, v in at.items() if v is None or v < write.value]
            if behind:
                found(
                    "lost_update",
                    key,
                    write.client,
                    f"{write.value} acknowledged at {write.acked:.3f}, but the final value is "
                    + ", ".join(f"{at[source]} at {source}" for source in behind),
                )
        if len(set(at.values())) > 1:
            found(
                "divergence",
                key,
                None,
                "final values differ: " + ", ".join(f"{s}={v}" for s, v in at.items()),
            )
