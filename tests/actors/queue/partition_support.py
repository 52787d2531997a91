"""Real queue nodes under link faults, a producer that tracks its acknowledgements, and a judge.

Nodes run ``python -m runtime`` with ``tests.apps.queue_partition_app`` (the
``step`` job records each attempt's start and end straight into Redis). The
test process is the producer: a :class:`Producer` enqueues ``step`` jobs
through its own :class:`~runtime.RedisLink`, one per sequence number, and
remembers which enqueues were acknowledged and which failed (and how).
:func:`collect` reads back everything the run left in Redis (every job record,
every attempt mark, every ``completed`` event in the user's room history) and
:func:`judge` checks it the way :func:`runtime.testing.check_history` checks
writes: nothing acknowledged lost, nothing recorded twice, no phantom, with
the counts in the assertion message.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.to_thread
import httpx
import msgspec
import redis.asyncio

from actors.queue import (
    Backoff,
    EnqueueRequest,
    Job,
    JobOptions,
    JobState,
    Queue,
    QueueSettings,
    RedisJobStore,
    Retention,
    queue_child,
)
from actors.queue._keys import QUEUE_KEY_PARTS, QueueKeys
from actors.socket_hub import HubKeys, personal_room
from runtime import RedisLink, RedisUnavailable, SystemClock
from runtime.testing import NodeProcess
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_partition_app import MARKS, Mark, Ran, Step

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

__all__ = [
    "CONCURRENCY",
    "LEASE_SECONDS",
    "Collected",
    "Producer",
    "Verdict",
    "all_done",
    "collect",
    "judge",
    "readiness",
    "running_nodes",
    "starts_of",
]

ROOT = Path(__file__).resolve().parents[3]
CONCURRENCY = 10
LEASE_SECONDS = 2.0
USER = "partition"
PREFIX = "switchyard"
_STATES: tuple[JobState, ...] = ("waiting", "delayed", "active", "completed", "failed", "cancelled")
_KEEP = JobOptions(
    remove_on_complete=Retention(count=100_000),
    attempts=20,
    backoff=Backoff(base_seconds=0.2, cap_seconds=1.0),
)


def _node(name: str, link_url: str, record_url: str) -> NodeProcess:
    env = {
        "SWITCHYARD_REDIS_URL": link_url,
        "SWITCHYARD_JWT_SECRET": "queue-partition-test-secret-32-bytes",
        "SWITCHYARD_QUEUE_CONCURRENCY": f"default={CONCURRENCY}",
        "SWITCHYARD_QUEUE_LEASE_SECONDS": str(LEASE_SECONDS),
        "SWITCHYARD_QUEUE_POLL_SECONDS": "0.25",
        "SWITCHYARD_HUB_HISTORY_SIZE": "100000",
        "PARTITION_RECORD_URL": record_url,
        "PARTITION_NODE": name,
    }
    return NodeProcess(env, ["--app", "tests.apps.queue_partition_app:setup"], cwd=str(ROOT))


@contextlib.asynccontextmanager
async def running_nodes(
    links: dict[str, str], record_url: str
) -> AsyncIterator[dict[str, NodeProcess]]:
    """One node per ``name -> Redis URL of its link``, started together, stopped at the end.

    Starting and stopping block on the node's log, so they run in threads: the
    event loop keeps serving a :class:`~runtime.testing.FaultProxy` meanwhile.
    """
    nodes = {name: _node(name, url, record_url) for name, url in links.items()}
    try:
        async with anyio.create_task_group() as tg:
            for node in nodes.values():
                tg.start_soon(_start, node)
        yield nodes
    finally:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for node in nodes.values():
                    tg.start_soon(_stop, node)


async def _start(node: NodeProcess) -> None:
    await anyio.to_thread.run_sync(lambda: node.start(ready_timeout_seconds=60))


async def _stop(node: NodeProcess) -> None:
    await anyio.to_thread.run_sync(node.stop)


async def readiness(http: httpx.AsyncClient, node: NodeProcess) -> tuple[int, dict[str, Any]]:
    """A node's ``GET /readyz``: its status code and body."""
    response = await http.get(node.url + "/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


@dataclass
class Producer:
    """The test's producer: enqueues ``step`` jobs by sequence number and keeps the outcomes.

    ``acked`` maps a sequence number to the job id of its acknowledged enqueue;
    ``failures`` lists every failed enqueue as ``(seq, cause, seconds it took)``.
    Every enqueue carries ``dedup_key=f"seq-{seq}"``, so retrying one whose
    outcome was unknown returns the job it created, while that job is unfinished.
    """

    queue: Queue
    ms: int
    acked: dict[int, str] = field(default_factory=dict)
    failures: list[tuple[int, str, float]] = field(default_factory=list)
    slowest: float = 0.0

    async def enqueue(self, seq: int) -> None:
        """Enqueue job ``seq``; record the acknowledgement, or the failure (then re-raise)."""
        options = msgspec.structs.replace(_KEEP, dedup_key=f"seq-{seq}")
        request = EnqueueRequest(
            type="step", payload=Step(seq, self.ms), user_id=USER, options=options
        )
        started = time.monotonic()
        try:
            (added,) = await self.queue.enqueue_many([request])
        except RedisUnavailable as exc:
            took = time.monotonic() - started
            self.slowest = max(self.slowest, took)
            self.failures.append((seq, type(exc.reason).__name__, took))
            raise
        self.slowest = max(self.slowest, time.monotonic() - started)
        self.acked[seq] = added.id

    @property
    def unacked(self) -> list[int]:
        """Sequence numbers tried and never acknowledged (yet)."""
        return sorted({seq for seq, _, _ in self.failures} - set(self.acked))

    async def retry_unacked(self, *, timeout_seconds: float) -> int:
        """Enqueue every unacknowledged number again until all are acknowledged; how many."""
        retried = self.unacked

        async def done() -> bool:
            for seq in self.unacked:
                with contextlib.suppress(RedisUnavailable):
                    await self.enqueue(seq)
            return not self.unacked

        await poll_until(done, timeout_seconds=timeout_seconds, interval=0.1)
        return len(retried)


async def all_done(producer: Producer, reader: redis.asyncio.Redis, *, at_least: int) -> None:
    """Wait until no job is waiting, delayed or active, ``at_least`` completed, and every
    node's outbox delivered its events (the queue's outbox stream is empty)."""
    outbox = QueueKeys(PREFIX).keys("default")[QUEUE_KEY_PARTS.index("outbox")]

    async def done() -> bool:
        try:
            counts = await producer.queue.counts("default")
        except RedisUnavailable:
            return False
        busy = counts.waiting + counts.delayed + counts.active
        return busy == 0 and counts.completed >= at_least and await reader.xlen(outbox) == 0

    await poll_until(done, timeout_seconds=40, interval=0.1)


@contextlib.asynccontextmanager
async def producing(redis_url: str, *, ms: int) -> AsyncIterator[Producer]:
    """A :class:`Producer` on its own link to ``redis_url`` (its workers never start)."""
    async with (
        RedisLink(redis_url, clock=SystemClock()) as link,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(link.run)
        with anyio.fail_after(10):
            await link.wait_until(True)
        _, _, queue = queue_child(settings=QueueSettings(concurrency="default=1"), redis=link)
        queue.handler("step", payload=Step)(_never_runs_here)
        try:
            yield Producer(queue, ms)
        finally:
            tg.cancel_scope.cancel()


async def _never_runs_here(ctx: object) -> None:
    raise AssertionError("the producer's workers never start")


class Collected(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a run left in Redis."""

    jobs: dict[str, Job]
    marks: list[Mark]
    completed_events: dict[str, list[bytes]]


async def collect(redis_url: str) -> Collected:
    """Read every job record, attempt mark and ``completed`` event (a fresh connection)."""
    jobs: dict[str, Job] = {}
    async with RedisLink(redis_url, clock=SystemClock(), command_timeout_seconds=5.0) as link:
        store = RedisJobStore(link, QueueKeys(PREFIX), ["default"])
        for state in _STATES:
            cursor: int | None = 0
            while cursor is not None:
                page = await store.jobs("default", state, 0, 1000, cursor=cursor)
                jobs.update((job.id, job) for job in page.jobs)
                cursor = page.next_cursor
    reader = redis.asyncio.Redis.from_url(redis_url)
    try:
        marks = [msgspec.json.decode(raw, type=Mark) for raw in await reader.lrange(MARKS, 0, -1)]
        history = HubKeys(PREFIX).history(personal_room(USER))
        events: dict[str, list[bytes]] = defaultdict(list)
        rows = cast("list[tuple[bytes, dict[bytes, bytes]]]", await reader.xrange(history))
        for _, fields in rows:
            frame = json.loads(fields[b"f"])
            if frame.get("state") == "completed":
                events[frame["task_id"]].append(json.dumps(frame.get("result")).encode())
    finally:
        await reader.aclose()
    return Collected(jobs=jobs, marks=marks, completed_events=dict(events))


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`judge` found (all zero but ``executions``/``duplicates`` on a good run)."""

    jobs: int
    acknowledged: int
    executions: int
    duplicates: int
    lost: int
    not_completed: int
    recorded_twice: int
    stale_recorded: int
    phantoms: int
    extra_jobs: int
    events_missing: int
    events_conflicting: int
    events_repeated: int
    stale_attempts: int
    by_node: dict[str, int]

    def summary(self) -> str:
        """The counts in one line, for assertion messages and the log."""
        return ", ".join(f"{name}={value}" for name, value in msgspec.structs.asdict(self).items())


def judge(producer: Producer, collected: Collected) -> Verdict:
    """Compare what the producer was told with what the store recorded and the nodes ran.

    * ``lost``: acknowledged sequence numbers with no job;
    * ``not_completed``: jobs (acknowledged or landed from a failed enqueue) not completed;
    * ``recorded_twice``: sequence numbers acknowledged once with more than one job;
    * ``stale_recorded``: completed jobs whose stored result is not from their current
      attempt (a fenced-off attempt's completion that took effect);
    * ``phantoms``: jobs of sequence numbers never enqueued, or attempts (marks) of jobs
      that do not exist;
    * ``extra_jobs``: second jobs of a number whose first enqueue failed and whose
      retry came after the first had finished (an unknown outcome, counted);
    * ``events_missing`` / ``events_conflicting``: completed jobs with no ``completed``
      event, or with events carrying different results (two completions recorded);
      ``events_repeated``: identical repeats (the outbox delivers at least once);
    * ``stale_attempts``: attempts that ran to their end but whose completion was not the
      one recorded (no-ops by the fencing token); ``duplicates`` counts executions beyond
      one per job.
    """
    jobs = collected.jobs
    by_seq: dict[int, list[Job]] = defaultdict(list)
    for job in jobs.values():
        by_seq[msgspec.json.decode(job.payload, type=Step).seq].append(job)
    attempted = set(producer.acked) | {seq for seq, _, _ in producer.failures}
    failed_once = {seq for seq, _, _ in producer.failures}
    lost = sum(1 for seq, job_id in producer.acked.items() if job_id not in jobs)
    not_completed = sum(1 for job in jobs.values() if job.state != "completed")
    recorded_twice = sum(
        1 for seq in producer.acked if seq not in failed_once and len(by_seq.get(seq, [])) > 1
    )
    extra_jobs = sum(len(by_seq.get(seq, [])) - 1 for seq in failed_once if seq in by_seq)
    stale_recorded = 0
    for job in jobs.values():
        if job.state != "completed" or job.result is None:
            continue
        ran = msgspec.json.decode(job.result, type=Ran)
        if ran.job != job.id or ran.attempt != job.attempt:
            stale_recorded += 1
    phantoms = sum(len(found) for seq, found in by_seq.items() if seq not in attempted)
    phantoms += sum(1 for mark in collected.marks if mark.job not in jobs)
    starts = [mark for mark in collected.marks if mark.kind == "start"]
    ends = [mark for mark in collected.marks if mark.kind == "end"]
    executions = Counter(mark.job for mark in starts)
    events_missing = events_conflicting = events_repeated = 0
    for job in jobs.values():
        if job.state != "completed":
            continue
        results = collected.completed_events.get(job.id, [])
        if not results:
            events_missing += 1
        distinct = {msgspec.json.decode(r, type=Ran) for r in results}
        events_conflicting += len(distinct) > 1
        events_repeated += max(0, len(results) - len(distinct))
    stale_attempts = 0
    for mark in ends:
        ended = jobs.get(mark.job)
        if ended is not None and ended.result is not None:
            ran = msgspec.json.decode(ended.result, type=Ran)
            stale_attempts += (ran.node, ran.attempt) != (mark.node, mark.attempt)
    return Verdict(
        jobs=len(jobs),
        acknowledged=len(producer.acked),
        executions=len(starts),
        duplicates=sum(n - 1 for n in executions.values()),
        lost=lost,
        not_completed=not_completed,
        recorded_twice=recorded_twice,
        stale_recorded=stale_recorded,
        phantoms=phantoms,
        extra_jobs=extra_jobs,
        events_missing=events_missing,
        events_conflicting=events_conflicting,
        events_repeated=events_repeated,
        stale_attempts=stale_attempts,
        by_node=dict(Counter(mark.node for mark in starts)),
    )


def starts_of(marks: Sequence[Mark], node: str, *, after: float = 0.0) -> list[Mark]:
    """The attempts ``node`` began after Unix time ``after``."""
    return [m for m in marks if m.kind == "start" and m.node == node and m.at > after]
