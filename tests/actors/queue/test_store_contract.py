"""The job store contract: the memory and Redis twins pass the same tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from actors.queue._model import JobError, JobEvent, Progress, Retention
from actors.queue._store import USER_SCAN_LIMIT, Finish, JobPage
from actors.queue._store_memory import MemoryJobStore
from actors.queue._store_redis import RedisJobStore

from .store_support import make_store, new_job

Store = MemoryJobStore | RedisJobStore
KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(name="store", params=KINDS)
async def _store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    async for store in make_store(request, request.param, outbox_size=5):
        yield store


@pytest.fixture(name="limited", params=KINDS)
async def _limited(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    async for store in make_store(request, request.param, rate_limits={"default": (3, 60.0)}):
        yield store


def done(job_id: str, token: int, at: float, **kw: object) -> Finish:
    return Finish(job_id=job_id, token=token, outcome="completed", finished_at=at, **kw)  # type: ignore[arg-type]


async def test_add_get_and_dedup(store: Store) -> None:
    added = await store.add([new_job("a", dedup_key="k"), new_job("b", dedup_key="k")], 1000)
    assert [(a.id, a.created) for a in added] == [("default.a", True), ("default.a", False)]
    job = await store.get("default.a")
    assert job is not None and job.state == "waiting" and job.payload == b'{"n":1}'
    assert await store.get("default.b") is None
    [claim] = await store.claim("default", 5, 1001, 30)
    assert await store.finish([done("default.a", claim.token, 1002, result=b"1")]) == [True]
    again = await store.add([new_job("c", dedup_key="k")], 1003)
    assert again[0].created  # the key was released when the job finished


async def test_delayed_promotion_and_next_due(store: Store) -> None:
    await store.add([new_job("d", run_at=1050)], 1000)
    assert (await store.get("default.d")).state == "delayed"  # type: ignore[union-attr]
    assert await store.next_due("default") == 1050
    assert await store.claim("default", 5, 1049, 30) == []
    [claim] = await store.claim("default", 5, 1050, 30)
    assert claim.job.id == "default.d" and claim.job.attempt == 1
    assert claim.job.lease_until == 1080 and claim.job.started_at == 1050
    assert await store.next_due("default") is None


async def test_priority_then_fifo(store: Store) -> None:
    await store.add(
        [new_job("1"), new_job("2", priority=5), new_job("3"), new_job("4", priority=5)], 1000
    )
    waiting = [j.id for j in (await store.jobs("default", "waiting", 0, 10)).jobs]
    assert waiting == ["default.2", "default.4", "default.1", "default.3"]
    claims = await store.claim("default", 3, 1000, 30)
    assert [c.job.id for c in claims] == ["default.2", "default.4", "default.1"]
    assert len({c.token for c in claims}) == 3
    counts = await store.counts("default")
    assert (counts.waiting, counts.active) == (1, 3)


async def test_fencing_and_renew(store: Store) -> None:
    await store.add([new_job("f", attempts=3)], 1000)
    [first] = await store.claim("default", 1, 1000, 10)
    # the lease runs out: the job goes back and a second claim gets a new token
    [second] = await store.claim("default", 1, 1011, 10)
    assert second.job.attempt == 2 and second.token != first.token
    assert await store.finish([done("default.f", first.token, 1012)]) == [False]
    assert not await store.progress("default.f", first.token, Progress(percentage=5), None)
    assert await store.renew("default", [("default.f", first.token)], 1012, 10) == ["default.f"]
    assert await store.renew("default", [("default.f", second.token)], 1012, 10) == []
    assert (await store.get("default.f")).lease_until == 1022  # type: ignore[union-attr]
    assert await store.finish([done("default.f", second.token, 1013, result=b"7")]) == [True]
    job = await store.get("default.f")
    assert job is not None and job.state == "completed" and job.result == b"7"


async def test_expired_lease_with_spent_attempts_fails(store: Store) -> None:
    await store.add([new_job("x", attempts=1, user_id="u")], 1000)
    await store.claim("default", 1, 1000, 10)
    assert await store.claim("default", 1, 1011, 10) == []
    job = await store.get("default.x")
    assert job is not None and job.state == "failed" and job.error is not None
    [entry] = await store.events(10)
    assert entry.event.kind == "failed" and entry.event.user_id == "u"


async def test_outcomes(store: Store) -> None:
    await store.add([new_job(s) for s in "abcde"], 1000)
    c = {x.job.id: x.token for x in await store.claim("default", 5, 1000, 30)}
    err = JobError(kind="E", message="boom")
    results = await store.finish(
        [
            done("default.a", c["default.a"], 1001, result=b"1"),
            Finish(job_id="default.b", token=c["default.b"], outcome="retry",
                   finished_at=1001, error=err, retry_at=1100),
            Finish(job_id="default.c", token=c["default.c"], outcome="failed",
                   finished_at=1001, error=err),
            Finish(job_id="default.d", token=c["default.d"], outcome="handed_back",
                   finished_at=1001),
            Finish(job_id="default.e", token=c["default.e"], outcome="cancelled",
                   finished_at=1001),
        ]
    )  # fmt: skip
    assert results == [True] * 5
    states = {s: (await store.get(f"default.{s}")).state for s in "abcde"}  # type: ignore[union-attr]
    assert states == {"a": "completed", "b": "delayed", "c": "failed", "d": "waiting",
                      "e": "cancelled"}  # fmt: skip
    b = await store.get("default.b")
    assert b is not None and b.run_at == 1100 and b.error == err and b.attempt == 1
    d = await store.get("default.d")
    assert d is not None and d.attempt == 0
    counts = await store.counts("default")
    assert (counts.completed, counts.failed, counts.cancelled, counts.delayed) == (1, 1, 1, 1)
    assert [j.id for j in (await store.jobs("default", "failed", 0, 10)).jobs] == ["default.c"]


async def test_retention_by_count_and_age(store: Store) -> None:
    jobs = [new_job(f"{i}", remove_on_complete=Retention(count=2)) for i in range(4)]
    await store.add(jobs, 1000)
    for i, claim in enumerate(await store.claim("default", 4, 1000, 30)):
        await store.finish([done(claim.job.id, claim.token, 1001 + i)])
    kept = [j.id for j in (await store.jobs("default", "completed", 0, 10)).jobs]
    assert kept == ["default.3", "default.2"]
    assert await store.get("default.0") is None
    aged = [new_job(f"g{i}", remove_on_fail=Retention(age_seconds=10)) for i in range(2)]
    await store.add(aged, 1000)
    claims = await store.claim("default", 2, 1000, 30)
    err = JobError(kind="E", message="m")
    await store.finish([Finish(job_id=claims[0].job.id, token=claims[0].token, outcome="failed",
                               finished_at=1000, error=err)])  # fmt: skip
    await store.finish([Finish(job_id=claims[1].job.id, token=claims[1].token, outcome="failed",
                               finished_at=1020, error=err)])  # fmt: skip
    assert [j.id for j in (await store.jobs("default", "failed", 0, 10)).jobs] == [claims[1].job.id]


async def test_result_ttl(store: Store) -> None:
    await store.add([new_job("r", result_ttl_seconds=5), new_job("s")], 1000)
    claims = await store.claim("default", 2, 1000, 30)
    await store.finish([done(c.job.id, c.token, 1001) for c in claims])
    assert await store.get("default.r") is not None
    await store.claim("default", 1, 1006, 30)
    assert await store.get("default.r") is None
    assert await store.get("default.s") is not None


async def test_outbox_bounded_and_acked(store: Store) -> None:
    await store.add([new_job("p", user_id="u")], 1000)
    [c] = await store.claim("default", 1, 1000, 30)
    for i in range(7):
        event = JobEvent(job_id="default.p", user_id="u", kind="progress", percentage=float(i))
        assert await store.progress("default.p", c.token, Progress(percentage=i), event)
    entries = await store.events(10)
    assert [e.event.percentage for e in entries] == [2, 3, 4, 5, 6]  # outbox_size=5
    assert (await store.get("default.p")).progress == Progress(percentage=6)  # type: ignore[union-attr]
    await store.ack_events([e.id for e in entries[:3]])
    assert [e.event.percentage for e in await store.events(10)] == [5, 6]


async def test_cancel(store: Store) -> None:
    await store.add([new_job("w", user_id="u"), new_job("a")], 1000)
    ev = JobEvent(job_id="default.w", user_id="u", kind="cancelled", percentage=0)
    assert await store.cancel("default.w", 1001, ev) == "cancelled"
    assert await store.cancel("default.w", 1001, None) == "finished"
    assert await store.cancel("default.zz", 1001, None) == "missing"
    [c] = await store.claim("default", 5, 1001, 30)
    assert await store.cancel_requested("default", [c.job.id]) == []
    assert await store.cancel(c.job.id, 1002, None) == "signalled"
    assert await store.cancel_requested("default", [c.job.id, "default.w"]) == [c.job.id]
    fin = Finish(job_id=c.job.id, token=c.token, outcome="cancelled", finished_at=1003)
    assert await store.finish([fin]) == [True]
    assert await store.cancel_requested("default", [c.job.id]) == []
    assert [e.event.kind for e in await store.events(10)] == ["cancelled"]


async def test_retry(store: Store) -> None:
    await store.add([new_job("f", attempts=1)], 1000)
    [c] = await store.claim("default", 1, 1000, 30)
    assert not await store.retry("default.f", 1001)  # active
    err = JobError(kind="E", message="m")
    await store.finish([Finish(job_id="default.f", token=c.token, outcome="failed",
                               finished_at=1001, error=err)])  # fmt: skip
    assert await store.retry("default.f", 1002)
    job = await store.get("default.f")
    assert job is not None and job.state == "waiting" and job.attempt == 0 and job.error is None
    [again] = await store.claim("default", 1, 1003, 30)
    assert again.job.attempt == 1 and again.token > c.token


async def test_pause(store: Store) -> None:
    await store.add([new_job("p")], 1000)
    await store.set_paused("default", True)
    assert (await store.counts("default")).paused
    assert await store.claim("default", 5, 1000, 30) == []
    await store.set_paused("default", False)
    assert len(await store.claim("default", 5, 1000, 30)) == 1


async def test_queues_are_separate(store: Store) -> None:
    await store.add([new_job("a", queue="email"), new_job("b")], 1000)
    assert [c.job.id for c in await store.claim("email", 5, 1000, 30)] == ["email.a"]
    assert (await store.counts("email")).active == 1
    assert (await store.counts("default")).waiting == 1


async def test_claim_schedule(store: Store) -> None:
    assert await store.claim_schedule("nightly", 100.0, 60)
    assert not await store.claim_schedule("nightly", 100.0, 60)
    assert await store.claim_schedule("nightly", 200.0, 60)
    assert await store.claim_schedule("other", 100.0, 60)


async def test_rate_limit(limited: Store) -> None:
    await limited.add([new_job(f"{i}") for i in range(5)], 1000)
    assert len(await limited.claim("default", 2, 1000, 30)) == 2
    assert len(await limited.claim("default", 5, 1000, 30)) == 1
    assert await limited.claim("default", 5, 1000, 30) == []


async def test_expired_lease_of_a_cancel_flagged_job_cancels_it(store: Store) -> None:
    await store.add([new_job("c", attempts=3, user_id="u")], 1000)
    [c] = await store.claim("default", 1, 1000, 10)
    assert await store.cancel(c.job.id, 1001, None) == "signalled"
    assert await store.claim("default", 1, 1011, 10) == []
    job = await store.get(c.job.id)
    assert job is not None and job.state == "cancelled" and job.finished_at == 1011
    assert [e.event.kind for e in await store.events(10)] == ["cancelled"]


async def test_handed_back_job_keeps_its_place(store: Store) -> None:
    await store.add([new_job("1"), new_job("2")], 1000)
    [first] = await store.claim("default", 1, 1000, 30)
    fin = Finish(job_id=first.job.id, token=first.token, outcome="handed_back", finished_at=1001)
    assert await store.finish([fin]) == [True]
    [again] = await store.claim("default", 1, 1002, 30)
    assert again.job.id == "default.1" and again.job.attempt == 1


async def test_retention_count_zero_removes_at_once(store: Store) -> None:
    await store.add([new_job("z", remove_on_complete=Retention(count=0), dedup_key="k")], 1000)
    [c] = await store.claim("default", 1, 1000, 30)
    assert await store.finish([done(c.job.id, c.token, 1001)]) == [True]
    assert await store.get("default.z") is None
    assert (await store.counts("default")).completed == 0
    assert (await store.add([new_job("y", dedup_key="k")], 1002))[0].created


async def test_listing_order_and_paging(store: Store) -> None:
    await store.add([new_job(f"{i}", run_at=1100 - i) for i in range(4)], 1000)
    delayed = [j.id for j in (await store.jobs("default", "delayed", 1, 2)).jobs]
    assert delayed == ["default.2", "default.1"]
    assert (await store.jobs("default", "completed", 0, 10)).jobs == []


def _ids(page: JobPage) -> list[str]:
    return [job.id for job in page.jobs]


async def test_unfiltered_pages_say_where_the_next_starts(store: Store) -> None:
    await store.add([new_job(f"{i}") for i in range(5)], 1000)
    first = await store.jobs("default", "waiting", 0, 2)
    assert (_ids(first), first.next_cursor, first.next_offset) == (
        ["default.0", "default.1"],
        2,
        0,
    )
    second = await store.jobs("default", "waiting", 0, 2, cursor=2)
    assert _ids(second) == ["default.2", "default.3"] and second.next_cursor == 4
    assert _ids(await store.jobs("default", "waiting", 2, 2)) == _ids(second)
    last = await store.jobs("default", "waiting", 1, 5, cursor=3)
    assert (_ids(last), last.next_cursor) == (["default.4"], None)


async def test_a_users_pages_count_only_their_jobs(store: Store) -> None:
    # a, b and anonymous jobs interleaved: a's pages are full, in the state's order
    owners = ["a", "b", None, "b", "a", "b", "b", None, "a", "b", "a", "b"]
    await store.add([new_job(f"{i:02d}", user_id=owner) for i, owner in enumerate(owners)], 1000)
    mine = [f"default.{i:02d}" for i, owner in enumerate(owners) if owner == "a"]
    first = await store.jobs("default", "waiting", 0, 2, user_id="a")
    assert _ids(first) == mine[:2]
    assert first.next_cursor == 5 and first.next_offset == 0  # just past a's second job
    second = await store.jobs("default", "waiting", 2, 2, user_id="a")
    assert _ids(second) == mine[2:] and second.next_cursor == 11  # b's last job follows
    resumed = await store.jobs("default", "waiting", 0, 2, user_id="a", cursor=5)
    assert _ids(resumed) == mine[2:]
    end = await store.jobs("default", "waiting", 0, 2, user_id="a", cursor=11)
    assert (_ids(end), end.next_cursor) == ([], None)
    everything = await store.jobs("default", "waiting", 0, 10, user_id="a")
    assert (_ids(everything), everything.next_cursor) == (mine, None)
    assert _ids(await store.jobs("default", "waiting", 4, 10, user_id="a")) == []
    assert _ids(await store.jobs("default", "waiting", 0, 10, user_id="nobody")) == []
    # finished lists page newest first, filtered the same way
    claims = await store.claim("default", len(owners), 1000, 30)
    finishes = [done(c.job.id, c.token, 1001 + i) for i, c in enumerate(claims)]
    assert all(await store.finish(finishes))
    newest = await store.jobs("default", "completed", 1, 2, user_id="a")
    assert _ids(newest) == mine[::-1][1:3] and newest.next_cursor is not None
    assert (
        _ids(await store.jobs("default", "completed", 0, 10, user_id="b"))
        == [f"default.{i:02d}" for i, owner in reversed(list(enumerate(owners))) if owner == "b"][
            :10
        ]
    )


async def test_a_users_scan_stops_at_its_bound_and_says_where_to_go_on(store: Store) -> None:
    # one of u's jobs first, USER_SCAN_LIMIT others', then two more of u's
    jobs = [new_job("00000", user_id="u")]
    jobs += [new_job(f"{i:05d}", user_id="other") for i in range(1, USER_SCAN_LIMIT + 1)]
    jobs += [new_job("late1", user_id="u"), new_job("late2", user_id="u")]
    for start in range(0, len(jobs), 1000):  # batches well inside Redis's command deadline
        await store.add(jobs[start : start + 1000], 1000)
    first = await store.jobs("default", "waiting", 0, 10, user_id="u")
    assert _ids(first) == ["default.00000"]  # short: the scan reached its bound
    assert (first.next_cursor, first.next_offset) == (USER_SCAN_LIMIT, 0)
    rest = await store.jobs("default", "waiting", 0, 10, user_id="u", cursor=USER_SCAN_LIMIT)
    assert (_ids(rest), rest.next_cursor) == (["default.late1", "default.late2"], None)
    # stopped while still skipping: what is left to skip carries over
    skipping = await store.jobs("default", "waiting", 2, 10, user_id="u")
    assert (_ids(skipping), skipping.next_cursor, skipping.next_offset) == (
        [],
        USER_SCAN_LIMIT,
        1,
    )
    after = await store.jobs(
        "default", "waiting", skipping.next_offset, 10, user_id="u", cursor=USER_SCAN_LIMIT
    )
    assert _ids(after) == ["default.late2"]


async def test_renew_of_unknown_and_finished_jobs(store: Store) -> None:
    await store.add([new_job("r")], 1000)
    [c] = await store.claim("default", 1, 1000, 30)
    await store.finish([done(c.job.id, c.token, 1001)])
    lost = await store.renew("default", [(c.job.id, c.token), ("default.nope", 1)], 1002, 30)
    assert lost == [c.job.id, "default.nope"]
    assert await store.finish([done("default.nope", 1, 1003)]) == [False]


async def test_events_across_queues(store: Store) -> None:
    await store.add([new_job("a", user_id="u"), new_job("b", queue="email", user_id="u")], 1000)
    for queue in ("email", "default"):
        [c] = await store.claim(queue, 1, 1000, 30)
        ev = JobEvent(job_id=c.job.id, user_id="u", kind="completed", percentage=100)
        await store.finish([done(c.job.id, c.token, 1001, event=ev)])
    entries = await store.events(10)
    # oldest first within a queue; across queues Redis orders by millisecond only
    assert sorted(e.event.job_id for e in entries) == ["default.a", "email.b"]
    assert len(await store.events(1)) == 1
    await store.ack_events([e.id for e in entries])
    assert await store.events(10) == []
