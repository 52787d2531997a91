"""The outbox with several nodes: one drainer per queue, so each job event reaches its user once.

Store level (a real Redis): the outbox lease is taken by the first store that
reads, renewed by its reads, lost when another value holds it, released on
shutdown; a store that does not hold it reads nothing.

Node level: two real nodes (``python -m runtime``) with ``tests.apps.queue_outbox_app``
(a ``report`` job: one ``running`` frame at 50 %, then ``completed``) share
one Redis; the test process enqueues through its own link and reads the
user's room history back:

* node A behind a :class:`~runtime.testing.FaultProxy` adding 3 ms each way
  (no fault): every job's frames are exactly ``running, completed``;
* the drainer SIGKILLed mid-run: the other node holds the lease within one
  lease, every completed job has its ``completed`` frame, repeats at most one batch;
* the time from a job's completion on the node that does not drain to its
  frame in the history (the owner's ``XREAD BLOCK`` wakes on it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, cast

import anyio
import anyio.to_thread
import msgspec
import redis.asyncio

from actors.queue import EnqueueRequest, JobOptions, Queue, QueueSettings, Retention, queue_child
from actors.queue._keys import QueueKeys
from actors.queue._model import JobEvent, Progress
from actors.queue._outbox import _BATCH
from actors.queue._store_redis import RedisJobStore
from actors.socket_hub import HubKeys, personal_room
from runtime import RedisLink, SystemClock
from runtime.testing import FaultProxy, ManualClock, NodeProcess, RedisServer, steady
from tests.actors.queue.store_support import QUEUES, new_job
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_outbox_app import Report, Reported

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
PREFIX = "switchyard"
USER = "outbox-user"
CONCURRENCY = 10
DRAINS = "default: this node now drains the outbox"
_KEEP = JobOptions(remove_on_complete=Retention(count=100_000))


# -- store level ---------------------------------------------------------------


def _event(n: int) -> JobEvent:
    return JobEvent(job_id=f"default.j{n}", user_id="u", kind="progress", percentage=float(n))


@contextlib.asynccontextmanager
async def _two_stores(url: str) -> AsyncIterator[tuple[RedisJobStore, RedisJobStore]]:
    """Two stores of the same queues, as two nodes have (each its own link and token)."""
    async with contextlib.AsyncExitStack() as stack:
        stores = []
        for _ in range(2):
            link = await stack.enter_async_context(RedisLink(url, clock=ManualClock()))
            store = RedisJobStore(link, QueueKeys("t"), QUEUES, outbox_lease_seconds=5.0)
            await store.open()
            stack.push_async_callback(store.release_outbox)
            stores.append(store)
        yield stores[0], stores[1]


async def _progress_event(store: RedisJobStore, n: int) -> None:
    (added,) = await store.add([new_job(f"j{n}", user_id="u")], 1000.0)
    (claim,) = await store.claim("default", 1, 1000.0, 30.0)
    assert claim.job.id == added.id
    assert await store.progress(claim.job.id, claim.token, Progress(percentage=n), _event(n))


async def test_the_outbox_lease_is_taken_renewed_lost_and_released(redis_url: str) -> None:
    owner_key = QueueKeys("t").outbox_owner("default")
    raw = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with _two_stores(redis_url) as (first, second):
            await _progress_event(first, 1)
            # Taken: the first reader holds the lease and reads; the second reads nothing.
            assert [e.event for e in await first.events(10)] == [_event(1)]
            assert first.drains_outbox()
            assert await second.events(10) == []
            assert not second.drains_outbox()
            token = await raw.get(owner_key)
            assert token is not None
            # Renewed by every read (PX 5 s).
            await raw.pexpire(owner_key, 100)
            await first.events(10)
            assert 4_000 < await raw.pttl(owner_key) <= 5_000
            assert await raw.get(owner_key) == token
            # Lost: the leases ran out and the second store took them; the first stops reading.
            await raw.delete(*(QueueKeys("t").outbox_owner(queue) for queue in QUEUES))
            assert [e.event for e in await second.events(10)] == [_event(1)]
            assert second.drains_outbox()
            assert await first.events(10) == []
            assert not first.drains_outbox()
            # Released (compare and delete): the first store's release leaves it alone...
            await first.release_outbox()
            assert await raw.get(owner_key) not in (None, token)
            # ... the holder's frees it, and the next reader takes it at once.
            await second.release_outbox()
            assert await raw.get(owner_key) is None
            assert [e.event for e in await first.events(10)] == [_event(1)]
            assert await raw.get(owner_key) == token
            # Redis lost everything: the lease is simply taken again.
            await raw.flushall()
            assert await first.events(10) == []
            assert first.drains_outbox()
            assert await raw.get(owner_key) == token
    finally:
        await raw.aclose()


async def _blocked_in_xread(raw: redis.asyncio.Redis) -> bool:
    clients = await raw.client_list()
    return any(
        client.get("cmd") == "xread" and "b" in client.get("flags", "") for client in clients
    )


async def test_the_drainer_wakes_on_an_event_another_store_wrote(redis_url: str) -> None:
    raw = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with _two_stores(redis_url) as (first, second):
            assert await first.events(10) == []  # takes the leases of both queues
            assert first.drains_outbox()
            woke: list[float] = []

            async def wait() -> None:
                await first.wait_events(5.0)  # the block is capped at 1 s
                woke.append(time.monotonic())

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await poll_until(lambda: _blocked_in_xread(raw), timeout_seconds=5, interval=0.01)
                written = time.monotonic()
                await _progress_event(second, 2)
            assert woke and woke[0] - written < 0.5, (woke, written)
            entries = await first.events(10)
            assert [e.event for e in entries] == [_event(2)]
            await first.ack_events([e.id for e in entries])
            # Nothing after the last acknowledged event: the wait runs its whole block.
            started = time.monotonic()
            await first.wait_events(0.2)
            assert 0.15 < time.monotonic() - started < 0.9
            # A store that drains nothing does not wait.
            started = time.monotonic()
            await second.wait_events(1.0)
            assert time.monotonic() - started < 0.15
    finally:
        await raw.aclose()


# -- two real nodes ------------------------------------------------------------


def _node(name: str, url: str, *, lease_seconds: float) -> NodeProcess:
    env = {
        "SWITCHYARD_REDIS_URL": url,
        "SWITCHYARD_JWT_SECRET": "queue-outbox-test-secret-32-bytes-long",
        "SWITCHYARD_QUEUE_CONCURRENCY": f"default={CONCURRENCY}",
        "SWITCHYARD_QUEUE_LEASE_SECONDS": "2",
        "SWITCHYARD_QUEUE_OUTBOX_LEASE_SECONDS": str(lease_seconds),
        "SWITCHYARD_HUB_HISTORY_SIZE": "100000",
        "OUTBOX_NODE": name,
    }
    return NodeProcess(env, ["--app", "tests.apps.queue_outbox_app:setup"], cwd=str(ROOT))


@contextlib.asynccontextmanager
async def _nodes(
    links: dict[str, str], *, lease_seconds: float = 5.0
) -> AsyncIterator[dict[str, NodeProcess]]:
    """One node per ``name -> Redis URL``, started and stopped in threads (a FaultProxy
    keeps running in the event loop meanwhile)."""
    nodes = {name: _node(name, url, lease_seconds=lease_seconds) for name, url in links.items()}
    try:
        async with anyio.create_task_group() as tg:
            for node in nodes.values():
                tg.start_soon(anyio.to_thread.run_sync, _start, node)
        yield nodes
    finally:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for node in nodes.values():
                    tg.start_soon(anyio.to_thread.run_sync, _stop, node)


def _start(node: NodeProcess) -> None:
    node.start(ready_timeout_seconds=60)


def _stop(node: NodeProcess) -> None:
    node.stop()


@contextlib.asynccontextmanager
async def _producer(url: str) -> AsyncIterator[Queue]:
    """A ``Queue`` on its own link to ``url`` (its workers and outbox never start)."""
    async with RedisLink(url, clock=SystemClock()) as link, anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        with anyio.fail_after(10):
            await link.wait_until(True)
        _, _, queue = queue_child(settings=QueueSettings(concurrency="default=1"), redis=link)
        queue.handler("report", payload=Report)(_never_runs_here)
        try:
            yield queue
        finally:
            tg.cancel_scope.cancel()


async def _never_runs_here(ctx: object) -> None:
    raise AssertionError("the producer's workers never start")


def _enqueuer(
    queue: Queue, ids: dict[int, str], *, ms: int = 10
) -> Callable[[int], Awaitable[None]]:
    async def enqueue(seq: int) -> None:
        request = EnqueueRequest(
            type="report", payload=Report(seq, ms), user_id=USER, options=_KEEP
        )
        (added,) = await queue.enqueue_many([request])
        ids[seq] = added.id

    return enqueue


async def _all_delivered(queue: Queue, reader: redis.asyncio.Redis, jobs: int) -> None:
    """Every job completed and the outbox stream empty (each event went to the hub)."""
    outbox = QueueKeys(PREFIX).keys("default")[10]

    async def done() -> bool:
        counts = await queue.counts("default")
        return counts.completed >= jobs and await reader.xlen(outbox) == 0

    await poll_until(done, timeout_seconds=60, interval=0.05)


class _Frames(msgspec.Struct, frozen=True):
    """The user's room history per job: ``(state, when the hub took it)`` in history order."""

    by_job: dict[str, list[tuple[str, float]]]

    def states(self, job_id: str) -> list[str]:
        return [state for state, _ in self.by_job.get(job_id, [])]


async def _frames(reader: redis.asyncio.Redis) -> _Frames:
    history = HubKeys(PREFIX).history(personal_room(USER))
    rows = cast("list[tuple[bytes, dict[bytes, bytes]]]", await reader.xrange(history))
    by_job: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for _, fields in rows:
        frame = json.loads(fields[b"f"])
        state = frame.get("state", "running")  # the default is left out of the frame
        by_job[frame["task_id"]].append((state, float(frame["ts"])))
    return _Frames(dict(by_job))


def _drainer(nodes: dict[str, NodeProcess]) -> str:
    drainers = [name for name, node in nodes.items() if any(DRAINS in line for line in node.log)]
    assert len(drainers) == 1, {name: node.log[-20:] for name, node in nodes.items()}
    return drainers[0]


async def test_two_nodes_deliver_every_event_once_and_in_order() -> None:
    jobs = 300
    with RedisServer() as server:
        reader = redis.asyncio.Redis.from_url(server.url)
        try:
            async with (
                FaultProxy("127.0.0.1", server.port) as proxy,
                _nodes({"A": proxy.url_for("redis"), "B": server.url}) as nodes,
                _producer(server.url) as queue,
            ):
                proxy.latency(0.003)
                ids: dict[int, str] = {}
                started = time.monotonic()
                await steady(
                    150,
                    duration_seconds=30,
                    max_operations=jobs,
                    operation=_enqueuer(queue, ids, ms=100),
                )
                await _all_delivered(queue, reader, jobs)
                took = time.monotonic() - started
                frames = await _frames(reader)
                drainer = _drainer(nodes)
                ran: dict[str, int] = defaultdict(int)
                for job in (await queue.jobs("default", "completed", 0, 1000)).jobs:
                    assert job.result is not None
                    ran[msgspec.json.decode(job.result, type=Reported).node] += 1
        finally:
            await reader.aclose()
    wrong = {
        job_id: frames.states(job_id)
        for job_id in ids.values()
        if frames.states(job_id) != ["running", "completed"]
    }
    repeated = sum(max(0, len(frames.states(job_id)) - 2) for job_id in ids.values())
    figures = (
        f"{jobs} jobs in {took:.2f}s, ran by node {dict(ran)}, drained by {drainer}; "
        f"{len(wrong)} jobs with other frames than running+completed, {repeated} repeats"
    )
    log.warning("two nodes, one drainer: %s", figures)
    assert len(ids) == jobs, figures
    assert sum(ran.values()) == jobs and len(ran) == 2, figures  # both nodes ran jobs
    assert not wrong, (figures, dict(list(wrong.items())[:5]))


async def test_the_drainer_killed_mid_run_is_replaced_within_its_lease() -> None:
    jobs, lease = 300, 2.0
    owner_key = QueueKeys(PREFIX).outbox_owner("default")
    with RedisServer() as server:
        reader = redis.asyncio.Redis.from_url(server.url)
        try:
            async with (
                _nodes({"A": server.url, "B": server.url}, lease_seconds=lease) as nodes,
                _producer(server.url) as queue,
            ):
                ids: dict[int, str] = {}
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        lambda: steady(
                            100,
                            duration_seconds=30,
                            max_operations=jobs,
                            operation=_enqueuer(queue, ids, ms=20),
                        )
                    )

                    async def under_way() -> bool:
                        return (await queue.counts("default")).completed >= jobs // 3

                    await poll_until(under_way, timeout_seconds=30)
                    drainer = _drainer(nodes)
                    token = await reader.get(owner_key)
                    nodes[drainer].signal(signal.SIGKILL)
                    killed_at = time.monotonic()
                    nodes[drainer].wait(timeout_seconds=10)

                    async def taken_over() -> bool:
                        return await reader.get(owner_key) not in (None, token)

                    await poll_until(taken_over, timeout_seconds=3 * lease, interval=0.01)
                    takeover = time.monotonic() - killed_at
                await _all_delivered(queue, reader, jobs)
                frames = await _frames(reader)
                survivor = next(name for name in nodes if name != drainer)
                assert any(DRAINS in line for line in nodes[survivor].log)
        finally:
            await reader.aclose()
    completed = {job_id: frames.states(job_id).count("completed") for job_id in ids.values()}
    missing = [job_id for job_id, n in completed.items() if n == 0]
    repeated = sum(n - 1 for n in completed.values() if n > 1)
    figures = (
        f"{jobs} jobs, drainer {drainer} SIGKILLed, lease taken over after {takeover:.2f}s "
        f"(lease {lease:g}s); {len(missing)} completed events missing, {repeated} repeated"
    )
    log.warning("drainer killed: %s", figures)
    assert len(ids) == jobs, figures
    assert not missing, (figures, missing[:5])
    assert repeated <= _BATCH, figures
    assert takeover <= lease + 1.5, figures


async def test_an_event_from_the_other_node_reaches_the_hub_promptly() -> None:
    jobs = 150
    with RedisServer() as server:
        reader = redis.asyncio.Redis.from_url(server.url)
        try:
            async with (
                _nodes({"A": server.url, "B": server.url}) as nodes,
                _producer(server.url) as queue,
            ):
                ids: dict[int, str] = {}
                await steady(
                    50, duration_seconds=30, max_operations=jobs, operation=_enqueuer(queue, ids)
                )
                await _all_delivered(queue, reader, jobs)
                frames = await _frames(reader)
                drainer = _drainer(nodes)
                done = (await queue.jobs("default", "completed", 0, 1000)).jobs
        finally:
            await reader.aclose()
    latencies = []
    for job in done:
        assert job.result is not None and job.finished_at is not None
        if msgspec.json.decode(job.result, type=Reported).node == drainer:
            continue
        (at,) = [ts for state, ts in frames.by_job[job.id] if state == "completed"]
        latencies.append(at - job.finished_at)
    latencies.sort()
    assert len(latencies) >= 20, len(latencies)
    median = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    figures = (
        f"{len(latencies)} jobs completed on the node that does not drain: completion to "
        f"history median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
    log.warning("cross-node event latency: %s", figures)
    assert p99 < 1.0, figures
