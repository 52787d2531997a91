"""Helpers of the lost-Redis tests: a node, a producer, and the history of one run.

The queue's Redis is the server under fault; executions are recorded in a
second Redis (the recorder, :mod:`tests.apps.queue_lost_app`) that no fault
touches, so a run's bookkeeping survives the queue's data being lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import redis.asyncio

from actors.queue import EnqueueRequest, JobOptions, Queue, QueueSettings, Retention, queue_child
from runtime import RedisFanout, RedisUnavailable, SystemClock, TokenVerifier
from runtime.testing import NodeProcess
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_lost_app import EXECUTIONS, RECORDER_ENV, Record

if TYPE_CHECKING:
    from collections.abc import Mapping

    from runtime import RedisLink

__all__ = [
    "FANOUT_PREFIX",
    "KEEP",
    "SECRET",
    "History",
    "bearer",
    "enqueue_request",
    "executions",
    "job_body",
    "lost_node",
    "node_lines",
    "producer",
    "wait_for_line",
]

ROOT = Path(__file__).resolve().parents[3]
SECRET = "queue-lost-test-secret-32-bytes-long!"
FANOUT_PREFIX = "switchyard:fanout"  # the node's: f"{redis_prefix}:fanout"
KEEP = JobOptions(remove_on_complete=Retention(count=100_000))


def lost_node(url: str, recorder_url: str, **settings: str) -> NodeProcess:
    """A real node on the queue's Redis ``url``, recording executions in ``recorder_url``.

    ``settings`` are extra ``SWITCHYARD_*`` variables (``QUEUE_POLL_SECONDS="5"``).
    """
    env = {
        "SWITCHYARD_REDIS_URL": url,
        "SWITCHYARD_JWT_SECRET": SECRET,
        "SWITCHYARD_QUEUE_CONCURRENCY": "default=10",
        RECORDER_ENV: recorder_url,
    }
    env.update({f"SWITCHYARD_{name}": value for name, value in settings.items()})
    return NodeProcess(env, ["--app", "tests.apps.queue_lost_app:setup"], cwd=str(ROOT))


def producer(link: RedisLink, *, wake: bool = True) -> Queue:
    """A producer on ``link`` (its workers are never started).

    With ``wake`` its enqueues publish the workers' wake-up through the node's
    fanout naming, as another node's would; without it the node's workers find
    its jobs only when they poll.
    """
    fanout = RedisFanout(link, prefix=FANOUT_PREFIX) if wake else None
    _, _, queue = queue_child(
        settings=QueueSettings(concurrency="default=1"), redis=link, fanout=fanout
    )
    queue.handler("record", payload=Record)(_never_runs_here)
    return queue


def bearer() -> dict[str, str]:
    """An admin's ``Authorization`` header for the node's HTTP routes."""
    token = TokenVerifier(SECRET, clock=SystemClock()).issue("producer", roles=("admin",))
    return {"Authorization": f"Bearer {token}"}


async def executions(recorder_url: str) -> list[tuple[str, int]]:
    """Every execution recorded so far: ``(job id, seq)`` in the order they ran."""
    client = redis.asyncio.Redis.from_url(recorder_url)
    try:
        rows = await client.lrange(EXECUTIONS, 0, -1)
    finally:
        await client.aclose()
    out = []
    for row in rows:
        text = row.decode() if isinstance(row, bytes) else str(row)
        job_id, _, seq = text.partition(" ")
        out.append((job_id, int(seq)))
    return out


def node_lines(node: NodeProcess, text: str) -> list[str]:
    """The node's log lines that contain ``text``."""
    return [line for line in node.log if text in line]


async def wait_for_line(node: NodeProcess, text: str, *, timeout_seconds: float) -> str:
    """The first log line of ``node`` with ``text``, waited for without blocking the loop."""

    async def seen() -> bool:
        return bool(node_lines(node, text))

    await poll_until(seen, timeout_seconds=timeout_seconds)
    return node_lines(node, text)[0]


@dataclass
class History:
    """What a producer did: acknowledged jobs (id and send time by seq) and refusals.

    The send time, not the answer's, tells on which side of a fault a job was
    stored: an answer read after the fault may come from the server before it.
    """

    acked: dict[int, str] = field(default_factory=dict)
    sent_at: dict[int, float] = field(default_factory=dict)  # of acknowledged jobs only
    refused: list[str] = field(default_factory=list)
    sent: int = 0

    def judge(self, runs: list[tuple[str, int]], seqs: set[int] | None = None) -> dict[str, int]:
        """Lost, duplicated and unknown executions of the acknowledged jobs in ``seqs``."""
        wanted = {seq: self.acked[seq] for seq in (self.acked if seqs is None else seqs)}
        counts = Counter(job_id for job_id, _ in runs)
        ids = set(wanted.values())
        return {
            "acked": len(wanted),
            "lost": sum(1 for job_id in ids if counts[job_id] == 0),
            "duplicated": sum(counts[job_id] - 1 for job_id in ids if counts[job_id] > 1),
            "runs": sum(counts[job_id] for job_id in ids),
        }

    async def produce(self, queue: Queue, stop: anyio.Event, *, rate: float = 100.0) -> None:
        """Enqueue one ``record`` job every ``1/rate`` s through ``queue`` until ``stop``."""
        while not stop.is_set():
            seq = self.sent
            self.sent += 1
            sent = anyio.current_time()
            try:
                added = await queue.enqueue("record", {"seq": seq}, options=KEEP)
            except RedisUnavailable as exc:
                self.refused.append(str(exc))
            else:
                self.acked[seq] = added.id
                self.sent_at[seq] = sent
            with anyio.move_on_after(1 / rate):
                await stop.wait()


def job_body(seq: int) -> Mapping[str, object]:
    """The JSON body of ``POST /api/jobs`` for a ``record`` job with ``seq``."""
    return {
        "type": "record",
        "payload": {"seq": seq},
        "options": {"remove_on_complete": {"count": 100_000}},
    }


async def _never_runs_here(ctx: object) -> None:
    raise AssertionError("the producer's workers never start")


def enqueue_request(seq: int, *, ms: int = 5) -> EnqueueRequest:
    """A ``record`` job request with ``seq`` that works ``ms`` milliseconds."""
    return EnqueueRequest(type="record", payload={"seq": seq, "ms": ms}, options=KEEP)
