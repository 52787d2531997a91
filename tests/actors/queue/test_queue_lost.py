"""The queue when its Redis loses its data, is starved of connections, or drops its clients.

A real node (``python -m runtime``, app :mod:`tests.apps.queue_lost_app`) works
the ``default`` queue while a producer enqueues about 100 jobs/s; every
execution is recorded in a second Redis that no fault touches. Each test keeps
a history (acknowledged ids by sequence number, the completions the store
records, the executions) and reports lost and duplicated jobs.

* Redis restarted empty (a failover to a stale replica looks the same): the
  node finds the epoch marker gone at once, says so in ``/readyz`` (503 naming
  the queue store, for a whole guard period even if the link flaps again) and
  an ERROR line, keeps serving, never runs a job the loss took, and runs every
  job enqueued afterwards (the new epoch) once.
* Connections starved (``maxclients``): every refused ``POST /api/jobs`` is a
  prompt 503 ``unavailable``, every acknowledged job runs and completes once,
  the workers resume by themselves.
* Clients killed (normal and pub/sub, three times each): everything reconnects
  by itself, no job is lost or run twice, and an idle worker still wakes on an
  enqueue within milliseconds, where the poll would take seconds.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import redis.asyncio

from actors.queue import Queue
from actors.queue._keys import QueueKeys
from runtime import RedisFanout, RedisLink, RedisUnavailable, SystemClock
from runtime.testing import RedisServer
from tests.actors.queue.lost_support import (
    FANOUT_PREFIX,
    KEEP,
    History,
    bearer,
    enqueue_request,
    executions,
    job_body,
    lost_node,
    producer,
    wait_for_line,
)
from tests.actors.socket_hub.nodes_support import poll_until

log = logging.getLogger(__name__)
CONCURRENCY = 10
POLL = 3.0  # the idle workers' poll fallback in the kill test, in seconds
PROBE = 2_000_000  # the sequence numbers of the idle wake-up probes
BACKLOG = 1_000_000  # the sequence numbers of the slow backlog


async def _json(http: httpx.AsyncClient, path: str) -> tuple[int, Any]:
    response = await http.get(path)
    return response.status_code, response.json()


async def test_redis_restarted_empty_is_reported_and_never_taken_for_an_empty_queue() -> None:
    with RedisServer(appendonly=True) as server, RedisServer() as recorder:
        node = lost_node(server.url, recorder.url, QUEUE_LEASE_SECONDS="3")
        node.start(ready_timeout_seconds=30)
        try:
            async with (
                RedisLink(server.url, clock=SystemClock()) as link,
                httpx.AsyncClient(base_url=node.url, timeout=10) as http,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(link.run)
                await link.wait_until(True)
                queue = producer(link)
                history, stop = History(), anyio.Event()
                tg.start_soon(history.produce, queue, stop)

                async def flowing() -> bool:
                    return len(await executions(recorder.url)) >= 100

                await poll_until(flowing, timeout_seconds=20)
                assert (await _json(http, "/readyz"))[0] == 200
                # A backlog the loss takes with it: 200 jobs of 100 ms (2 s for 10 slots).
                slow = [enqueue_request(BACKLOG + i, ms=100) for i in range(200)]
                sent = anyio.current_time()
                for i, added in enumerate(await queue.enqueue_many(slow)):
                    history.acked[BACKLOG + i] = added.id
                    history.sent_at[BACKLOG + i] = sent

                async def backlog_started() -> bool:
                    return sum(s >= BACKLOG for _, s in await executions(recorder.url)) >= 20

                await poll_until(backlog_started, timeout_seconds=20)
                ran_before = await executions(recorder.url)
                acked_before = set(history.acked)
                server.restart(empty=True)  # a failover to a stale replica looks the same
                restarted_at = anyio.current_time()

                # The node notices at once and says so: readiness and an ERROR line.
                lost_reasons: list[str] = []
                health: list[int] = []

                async def reported() -> bool:
                    status, body = await _json(http, "/readyz")
                    health.append((await http.get("/healthz")).status_code)
                    found = [r for r in body["reasons"] if "queue store lost its data" in r]
                    lost_reasons.extend(found if status == 503 else [])
                    return bool(lost_reasons)

                await poll_until(reported, timeout_seconds=20)
                detected = anyio.current_time() - restarted_at
                error = await wait_for_line(node, "queue store lost its data", timeout_seconds=5)
                assert "ERROR" in error and "the jobs it held are gone" in error, error
                assert "default" in lost_reasons[0], lost_reasons
                # A failover may drop the link more than once: the loss stays reported.
                server.restart(empty=False)  # the AOF keeps the new epoch: no second loss

                # Designed: the check adopted the new epoch, so the next guard pass clears it.
                async def ready_again() -> bool:
                    status, _ = await _json(http, "/readyz")
                    health.append((await http.get("/healthz")).status_code)
                    return status == 200

                await poll_until(ready_again, timeout_seconds=20)
                reported_for = anyio.current_time() - restarted_at - detected
                await wait_for_line(node, "queue store is back", timeout_seconds=5)
                assert set(health) == {200}, health  # the node kept serving throughout
                # The loss stays counted after readiness cleared (what an alert reads).
                statistics = await http.get("/api/statistics", headers=bearer())
                store = statistics.json()["queue.store"]
                assert store["losses"] == 1 and not store["lost_now"], store
                assert "default" in store["last_loss"] and store["last_loss_at"] > 0, store

                # Jobs enqueued after the loss are the new epoch's: they all run, once.
                async def enough_after() -> bool:
                    return sum(1 for t in history.sent_at.values() if t > restarted_at) >= 100

                await poll_until(enough_after, timeout_seconds=20)
                stop.set()
                after = {s for s, t in history.sent_at.items() if t > restarted_at}

                await _wait_completed(queue, [history.acked[s] for s in after])
                gone = [seq for seq in acked_before if await queue.get(history.acked[seq]) is None]
                tg.cancel_scope.cancel()
            runs = await executions(recorder.url)
        finally:
            node.stop()
    late = runs[len(ran_before) :]
    ran_ids = {job_id for job_id, _ in ran_before}
    before = {history.acked[s] for s in acked_before}
    never_ran = before - ran_ids
    in_flight = [job_id for job_id, _ in late if job_id in never_ran]
    verdict = history.judge(runs, after)
    log.warning(
        "Redis restarted empty: detected in %.2fs, 503 for %.2fs, %d acked before (%d ran, "
        "%d lost with the data, %d run after the loss = in flight), after: %s, %d refused, "
        "%d sent before and answered after",
        detected,
        reported_for,
        len(before),
        len(before & ran_ids),
        len(never_ran),
        len(in_flight),
        verdict,
        len(history.refused),
        len(history.acked) - len(acked_before) - len(after),
    )
    assert verdict["lost"] == 0 and verdict["duplicated"] == 0, verdict
    assert len(never_ran) >= 100, "the loss took a backlog with it"  # the scenario's premise
    # Found at once: the guard checks the marker as soon as the link sees Redis back.
    assert detected < 2.0, f"the loss was reported {detected:.2f}s after Redis came back"
    # ... and stays reported for one guard period (5 s), then the new epoch counts as ready.
    assert reported_for > 4.0, f"readiness named the loss for {reported_for:.2f}s only"
    assert len(gone) == len(acked_before), "the old jobs' records are gone with the data"
    # Only attempts claimed before the loss can still run: the workers' slots.
    assert len(in_flight) <= CONCURRENCY, (in_flight, never_ran)


class HttpProducer:
    """``POST /api/jobs`` at ~``rate``/s, each request on its own, and what each answered."""

    def __init__(self, http: httpx.AsyncClient, history: History) -> None:
        self.http = http
        self.history = history
        self.refusals: list[tuple[int, dict[str, Any]]] = []
        self.wrong: list[str] = []  # anything but 202 or a 503 "unavailable"; or no answer
        self.answered = 0
        self.slowest_refusal = 0.0

    async def post(self, seq: int) -> None:
        sent = anyio.current_time()
        try:
            response = await self.http.post("/api/jobs", json=job_body(seq), headers=bearer())
        except httpx.HTTPError as exc:
            self.wrong.append(f"#{seq}: {exc!r}")
            return
        took = anyio.current_time() - sent
        self.answered += 1
        body = response.json()
        if response.status_code == 202:
            self.history.acked[seq] = body["id"]
            self.history.sent_at[seq] = sent
        elif response.status_code == 503 and body.get("error", {}).get("code") == "unavailable":
            self.refusals.append((seq, body))
            self.slowest_refusal = max(self.slowest_refusal, took)
        else:
            self.wrong.append(f"#{seq}: {response.status_code} {response.text[:200]}")

    async def run(self, stop: anyio.Event, *, rate: float = 100.0) -> None:
        async with anyio.create_task_group() as tg:
            while not stop.is_set():
                tg.start_soon(self.post, self.history.sent)
                self.history.sent += 1
                with anyio.move_on_after(1 / rate):
                    await stop.wait()


def _precise(body: dict[str, Any]) -> bool:
    """The node's error shape, naming the queue's store: ``{"error": {code, message}}``."""
    error = body["error"]
    return bool(error["code"] == "unavailable") and str(error["message"]).startswith(
        "the queue cannot store jobs right now; retry"
    )


async def _wait_completed(queue: Queue, ids: list[str], timeout_seconds: float = 30) -> None:
    """Wait until every job of ``ids`` is recorded completed; else fail naming the others."""
    pending = list(ids)

    async def done() -> bool:
        try:
            while pending:
                job = await queue.get(pending[-1])
                if job is None or job.state != "completed":
                    return False
                pending.pop()
        except RedisUnavailable:
            return False
        return True

    try:
        await poll_until(done, timeout_seconds=timeout_seconds, interval=0.2)
    except TimeoutError:
        jobs = [await queue.get(job_id) for job_id in pending[-5:]]
        raise AssertionError(f"{len(pending)} of {len(ids)} jobs not completed: {jobs}") from None


async def test_starved_connections_refuse_enqueues_with_503_and_lose_no_acknowledged_job() -> None:
    with RedisServer() as server, RedisServer() as recorder:
        node = lost_node(server.url, recorder.url, QUEUE_LEASE_SECONDS="5")
        node.start(ready_timeout_seconds=30)
        try:
            async with (
                RedisLink(server.url, clock=SystemClock()) as link,
                httpx.AsyncClient(base_url=node.url, timeout=10) as http,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(link.run)
                await link.wait_until(True)
                queue = producer(link)
                history, stop = History(), anyio.Event()
                posts = HttpProducer(http, history)
                tg.start_soon(posts.run, stop)

                async def flowing() -> bool:
                    return len(await executions(recorder.url)) >= 100

                await poll_until(flowing, timeout_seconds=20)
                with server.starve(spare=0) as limit:
                    # No connection more than now: the pool cannot grow for a burst of 100.
                    async with anyio.create_task_group() as burst:
                        for _ in range(100):
                            burst.start_soon(posts.post, history.sent)
                            history.sent += 1
                    refused_while_capped = len(posts.refusals)
                    # Then none at all: every client dropped, and no reconnect accepted.
                    server.set_maxclients(1)  # the control connection alone
                    killed = server.client_kill("normal")
                    starved_at = anyio.current_time()

                    async def refused() -> bool:
                        return len(posts.refusals) >= refused_while_capped + 100

                    await poll_until(refused, timeout_seconds=20)
                    starved_for = anyio.current_time() - starved_at
                healed_at = anyio.current_time()
                ran_at_heal = len(await executions(recorder.url))

                async def resumed() -> bool:
                    return len(await executions(recorder.url)) > ran_at_heal

                await poll_until(resumed, timeout_seconds=20, interval=0.01)
                resumed_in = anyio.current_time() - healed_at

                async def enough_after() -> bool:
                    return sum(1 for t in history.sent_at.values() if t > healed_at) >= 100

                await poll_until(enough_after, timeout_seconds=20)
                stop.set()
                ids = list(history.acked.values())
                await _wait_completed(queue, ids)
                tg.cancel_scope.cancel()
            runs = await executions(recorder.url)
        finally:
            node.stop()
    verdict = history.judge(runs)
    unacked_ran = {seq for _, seq in runs} - set(history.acked)
    log.warning(
        "starved: limit %d, %d refused while capped, %d clients killed, starved %.2fs, "
        "resumed %.3fs after; %d posts, %d refused (503, slowest %.3fs), %d wrong; %s; "
        "%d refused but stored",
        limit,
        refused_while_capped,
        killed,
        starved_for,
        resumed_in,
        history.sent,
        len(posts.refusals),
        posts.slowest_refusal,
        len(posts.wrong),
        verdict,
        len(unacked_ran),
    )
    assert posts.wrong == [], posts.wrong[:5]  # no 500, no hang: a 503 or a 202
    vague = [body for _, body in posts.refusals if not _precise(body)]
    assert vague == [], vague[:3]
    assert posts.slowest_refusal < 3.0, f"a refusal took {posts.slowest_refusal:.2f}s"
    assert verdict["lost"] == 0 and verdict["duplicated"] == 0, verdict
    assert resumed_in < 5.0, f"workers resumed {resumed_in:.2f}s after the connections came back"


async def _idle(queue: Queue) -> None:
    """Wait until the node holds no job: the last finish (which also claims) is recorded.

    A probe enqueued while a finish is in flight could be taken by that finish's
    claim instead of by a wake-up, which would measure the wrong path.
    """

    async def idle() -> bool:
        counts = await queue.counts("default")
        return counts.active == counts.waiting == counts.delayed == 0

    await poll_until(idle, timeout_seconds=20, interval=0.01)


async def _probe(queue: Queue, recorder_url: str, seq: int) -> float:
    """Seconds from an idle node's enqueue of one job to its execution."""
    runs = len(await executions(recorder_url))
    started = anyio.current_time()
    await queue.enqueue("record", {"seq": seq}, options=KEEP)

    async def ran() -> bool:
        return len(await executions(recorder_url)) > runs

    await poll_until(ran, timeout_seconds=20, interval=0.002)
    return anyio.current_time() - started


async def test_killed_clients_reconnect_by_themselves_and_lose_no_job() -> None:
    with RedisServer() as server, RedisServer() as recorder:
        node = lost_node(
            server.url, recorder.url, QUEUE_LEASE_SECONDS="2", QUEUE_POLL_SECONDS=str(POLL)
        )
        node.start(ready_timeout_seconds=30)
        try:
            async with (
                RedisLink(server.url, clock=SystemClock()) as link,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(link.run)
                await link.wait_until(True)
                queue = producer(link)
                wake = RedisFanout(link, prefix=FANOUT_PREFIX).redis_channel(
                    QueueKeys.channel("default")
                )
                control = redis.asyncio.Redis.from_url(server.url)

                async def subscribed() -> bool:
                    try:
                        found = await control.pubsub_numsub(wake)
                    except redis.RedisError:
                        return False
                    return bool(found and found[0][1] >= 1)

                await poll_until(subscribed, timeout_seconds=10)
                history, stop = History(), anyio.Event()
                tg.start_soon(history.produce, queue, stop)
                kills: list[tuple[str, int]] = []
                resubscribed: list[float] = []
                for kind in ("normal", "pubsub") * 3:
                    ran = len(await executions(recorder.url))

                    async def ran_more(ran: int = ran) -> bool:
                        return len(await executions(recorder.url)) >= ran + 50

                    await poll_until(ran_more, timeout_seconds=20)
                    kills.append((kind, server.client_kill(kind)))
                    if kind == "pubsub":
                        killed_at = anyio.current_time()
                        await poll_until(subscribed, timeout_seconds=10, interval=0.01)
                        resubscribed.append(anyio.current_time() - killed_at)
                stop.set()
                ids = list(history.acked.values())
                await _wait_completed(queue, ids)
                # Idle wake-up after the pub/sub kills: a job starts within a round trip,
                # against a job that no wake-up announces, found by the poll.
                latencies = []
                for seq in range(PROBE, PROBE + 5):
                    await _idle(queue)
                    latencies.append(await _probe(queue, recorder.url, seq))
                await _idle(queue)
                unannounced = await _probe(producer(link, wake=False), recorder.url, PROBE + 5)
                await control.aclose()
                tg.cancel_scope.cancel()
            runs = await executions(recorder.url)
        finally:
            node.stop()
    verdict = history.judge(runs)
    unacked_ran = {seq for _, seq in runs if seq < PROBE} - set(history.acked)
    log.warning(
        "clients killed %s: resubscribed in %s s; %d enqueues, %d refused; %s; "
        "%d refused but stored; idle wake-up %s ms (no wake-up: %.0f ms, poll %ss)",
        kills,
        [round(t, 3) for t in resubscribed],
        history.sent,
        len(history.refused),
        verdict,
        len(unacked_ran),
        [round(t * 1000, 1) for t in latencies],
        unannounced * 1000,
        POLL,
    )
    assert all(n >= 1 for _, n in kills), kills  # each kill cut live connections
    assert verdict["lost"] == 0 and verdict["duplicated"] == 0, verdict
    assert max(latencies) < 0.5, latencies  # the wake-up, not the 3 s poll
    assert unannounced > 1.0, unannounced  # the measure tells the two apart
