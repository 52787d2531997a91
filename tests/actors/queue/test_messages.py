"""The queue actor driven through its messages alone, embedded with ``open_system``.

``queue_child`` gives the queue's services and the ``queue`` child; the test
holds only that child's ref and asks it every command, in memory and on a
real redis-server: replies are the typed Structs, invalid input comes back as
``Rejected`` with the facade's codes (the actor neither crashes nor restarts),
another user's job looks missing, a Redis outage is ``unavailable``, and the
commands decode from the JSON the HTTP bodies use. A node built by
``install`` runs the same child, which another actor of the node asks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, assert_type

import anyio
import msgspec
import pytest

from actors.queue import (
    QUEUE_SETTINGS,
    Added,
    EnqueueRequest,
    JobContext,
    JobOptions,
    JobPage,
    Queue,
    QueueCancel,
    QueueCancelReply,
    QueueCounts,
    QueueEnqueue,
    QueueEnqueueMany,
    QueueEnqueueManyReply,
    QueueGetCounts,
    QueueGetJob,
    QueueGetJobReply,
    QueueListJobs,
    QueueListQueues,
    QueueListQueuesReply,
    QueueMessage,
    QueuePause,
    QueuePauseReply,
    QueueResume,
    QueueResumeReply,
    QueueRetry,
    QueueRetryReply,
    QueueSettings,
    queue_child,
)
from actors.queue._routes import EnqueueBody, JobQuery
from runtime import (
    Actor,
    ActorRef,
    ChildSpec,
    Message,
    NodeSetup,
    RedisLink,
    Rejected,
    ServiceSpec,
    SystemClock,
)
from runtime.testing import Probe, RedisServer, open_app, open_system
from tests.actors.socket_hub.nodes_support import poll_until

KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]
LATER = JobOptions(delay_seconds=3600)  # stays delayed: listing and cancel are deterministic
WAIT = 10.0


class Email(msgspec.Struct, frozen=True):
    """The test job's payload."""

    to: str


def _register(queue: Queue) -> None:
    @queue.handler("send-email", queue="email", payload=Email)
    async def send(ctx: JobContext[Email]) -> object:
        return {"sent": ctx.payload.to}


def _email(to: str = "a@example.com", **fields: Any) -> EnqueueRequest:
    fields.setdefault("options", LATER)
    return EnqueueRequest(type="send-email", payload={"to": to}, **fields)


@asynccontextmanager
async def queue_system(
    kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[ActorRef[QueueMessage], RedisServer | None]]:
    """The queue's services and actor under one supervisor; the actor's ref (and the server)."""
    settings = QueueSettings(concurrency="default=1,email=1", max_payload_bytes=256)
    if kind == "memory":
        specs, _, queue = queue_child(settings=settings)
        _register(queue)
        async with open_system(specs, ask_timeout_seconds=WAIT) as refs:
            yield refs["queue"], None
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with (
        RedisLink(server.url, clock=SystemClock()) as link,
        anyio.create_task_group() as group,
    ):
        group.start_soon(link.run)
        with anyio.fail_after(WAIT):
            await link.wait_until(up=True)
        specs, _, queue = queue_child(settings=settings, redis=link, prefix="msgs")
        _register(queue)
        async with open_system(specs, ask_timeout_seconds=WAIT) as refs:
            yield refs["queue"], server
        group.cancel_scope.cancel()


async def _code(ref: ActorRef[QueueMessage], message: Any) -> str:
    with pytest.raises(Rejected) as caught:
        await ref.ask(message)
    return caught.value.code


def _untouched(ref: ActorRef[QueueMessage]) -> None:
    stats = ref.statistics()
    assert (stats.crashes, stats.restarts, stats.state) == (0, 0, "running"), stats


async def _until_state(ref: ActorRef[QueueMessage], job_id: str, state: str) -> None:
    async def reached() -> bool:
        job = (await ref.ask(QueueGetJob(job_id=job_id))).job
        return job is not None and job.state == state

    await poll_until(reached, timeout_seconds=WAIT, interval=0.01)


@pytest.mark.parametrize("kind", KINDS)
async def test_every_command_answers_with_its_typed_reply(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with queue_system(kind, request) as (ref, _):
        added = await ref.ask(QueueEnqueue(job=_email(user_id="alice")))
        assert_type(added, Added)
        assert added.created and added.id.startswith("email.")
        many = await ref.ask(
            QueueEnqueueMany(jobs=(_email("b@example.com", user_id="bob"), _email("c@x.org")))
        )
        assert_type(many, QueueEnqueueManyReply)
        assert [a.created for a in many.added] == [True, True]
        bobs, anonymous = (a.id for a in many.added)

        got = await ref.ask(QueueGetJob(job_id=added.id))
        assert_type(got, QueueGetJobReply)
        assert got.job is not None
        assert (got.job.state, got.job.user_id, got.job.payload) == (
            "delayed",
            "alice",
            b'{"to":"a@example.com"}',
        )
        assert (await ref.ask(QueueGetJob(job_id=added.id, user_id="alice"))).job == got.job
        assert (await ref.ask(QueueGetJob(job_id=added.id, user_id="bob"))).job is None
        assert (await ref.ask(QueueGetJob(job_id="email.nothere"))).job is None
        assert (await ref.ask(QueueGetJob(job_id="no dot, no queue"))).job is None

        page = await ref.ask(QueueListJobs(queue="email", state="delayed"))
        assert_type(page, JobPage)
        assert [j.id for j in page.jobs] == [added.id, bobs, anonymous]
        assert page.next_cursor is None
        first = await ref.ask(QueueListJobs(queue="email", state="delayed", limit=2))
        assert [j.id for j in first.jobs] == [added.id, bobs] and first.next_cursor == 2
        mine = await ref.ask(QueueListJobs(queue="email", state="delayed", user_id="bob"))
        assert [j.id for j in mine.jobs] == [bobs] and mine.next_cursor is None

        counts = await ref.ask(QueueGetCounts(queue="email"))
        assert_type(counts, QueueCounts)
        assert counts == QueueCounts(delayed=3)
        infos = await ref.ask(QueueListQueues())
        assert_type(infos, QueueListQueuesReply)
        assert [(i.name, i.concurrency, i.counts.delayed) for i in infos.queues] == [
            ("default", 1, 0),
            ("email", 1, 3),
        ]

        # someone else's job: missing, and left as it was
        refused = await ref.ask(QueueCancel(job_id=added.id, user_id="bob"))
        assert_type(refused, QueueCancelReply)
        assert refused == QueueCancelReply(job_id=added.id, outcome="missing")
        assert (await ref.ask(QueueGetJob(job_id=added.id))).job.state == "delayed"  # type: ignore[union-attr]
        cancelled = await ref.ask(QueueCancel(job_id=added.id, user_id="alice"))
        assert cancelled.outcome == "cancelled"
        again = await ref.ask(QueueCancel(job_id=added.id))
        assert again.outcome == "finished"
        assert (await ref.ask(QueueCancel(job_id="email.nothere"))).outcome == "missing"

        assert (await ref.ask(QueueRetry(job_id=added.id, user_id="bob"))).retried is False
        assert (await ref.ask(QueueRetry(job_id=bobs))).retried is False  # delayed: no retry

        paused = await ref.ask(QueuePause(queue="email"))
        assert_type(paused, QueuePauseReply)
        assert paused == QueuePauseReply(queue="email", paused=True)
        assert (await ref.ask(QueueGetCounts(queue="email"))).paused is True
        retried = await ref.ask(QueueRetry(job_id=added.id, user_id="alice"))
        assert_type(retried, QueueRetryReply)
        assert retried == QueueRetryReply(job_id=added.id, retried=True)
        assert (await ref.ask(QueueGetJob(job_id=added.id))).job.state == "waiting"  # type: ignore[union-attr]
        resumed = await ref.ask(QueueResume(queue="email"))
        assert_type(resumed, QueueResumeReply)
        assert resumed == QueueResumeReply(queue="email", paused=False)
        await _until_state(ref, added.id, "completed")  # the worker runs it once resumed
        done = (await ref.ask(QueueGetJob(job_id=added.id))).job
        assert done is not None and done.result == b'{"sent":"a@example.com"}'
        _untouched(ref)


@pytest.mark.parametrize("kind", KINDS)
async def test_user_errors_are_rejections_and_the_actor_carries_on(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with queue_system(kind, request) as (ref, _):
        refusals: list[tuple[Any, str]] = [
            (QueueEnqueue(job=_email(queue="nope")), "unknown_queue"),
            (QueueEnqueue(job=EnqueueRequest(type="no-such-type")), "unknown_job_type"),
            (QueueEnqueue(job=EnqueueRequest(type="Not A Type!")), "unknown_job_type"),
            (QueueEnqueue(job=EnqueueRequest(type="send-email", payload=5)), "invalid_payload"),
            (
                QueueEnqueue(job=EnqueueRequest(type="send-email", payload={"to": object()})),
                "invalid_payload",
            ),
            (QueueEnqueue(job=_email("x" * 300)), "payload_too_large"),
            (QueueEnqueue(job=_email(options=JobOptions(attempts=0))), "invalid_options"),
            (QueueEnqueue(job=_email(user_id="")), "invalid_options"),
            (QueueEnqueue(job={"type": "send-email"}), "invalid_request"),  # type: ignore[arg-type]
            (QueueEnqueueMany(jobs=(_email(), _email(queue="nope"))), "unknown_queue"),
            (QueueGetCounts(queue="nope"), "unknown_queue"),
            (QueueListJobs(queue="nope"), "unknown_queue"),
            (QueueListJobs(queue="email", limit=0), "invalid_options"),
            (QueueListJobs(queue="email", offset=-1), "invalid_options"),
            (QueueListJobs(queue="email", state="lost"), "invalid_options"),  # type: ignore[arg-type]
            (QueueListJobs(queue="email", user_id=""), "invalid_options"),
            (QueuePause(queue="nope"), "unknown_queue"),
            (QueueResume(queue=["email"]), "unknown_queue"),  # type: ignore[arg-type]
        ]
        for message, code in refusals:
            assert (await _code(ref, message), message) == (code, message)
        # a refused batch stored none of it
        assert await ref.ask(QueueGetCounts(queue="email")) == QueueCounts()
        _untouched(ref)
        assert (await ref.ask(QueueEnqueue(job=_email()))).created  # still answering


@pytest.mark.redis
async def test_a_redis_outage_is_unavailable_not_a_crash(request: pytest.FixtureRequest) -> None:
    async with queue_system("redis", request) as (ref, server):
        assert server is not None
        added = await ref.ask(QueueEnqueue(job=_email()))
        server.kill()
        assert await _code(ref, QueueGetCounts(queue="email")) == "unavailable"
        assert await _code(ref, QueueEnqueue(job=_email())) == "unavailable"
        _untouched(ref)
        server.start()
        with anyio.fail_after(WAIT):  # the link reconnects by itself; the actor never left
            while True:
                try:
                    again = await ref.ask(QueueEnqueue(job=_email()))
                except Rejected as exc:
                    assert exc.code == "unavailable"
                    await anyio.sleep(0.05)
                else:
                    break
        assert again.created and again.id != added.id
        _untouched(ref)


def test_commands_decode_from_the_json_the_http_bodies_use() -> None:
    body = {"type": "send-email", "payload": {"to": "a@example.com"}, "options": {"attempts": 2}}
    # POST /api/jobs's body is the command's ``job``, as its documented schema says
    assert msgspec.convert(body, EnqueueBody) is not None
    decoded = msgspec.json.decode(
        msgspec.json.encode({"type": "queue.enqueue", "job": body}), type=QueueMessage
    )
    assert decoded == QueueEnqueue(
        job=EnqueueRequest(
            type="send-email", payload={"to": "a@example.com"}, options=JobOptions(attempts=2)
        )
    )
    query = {"queue": "email", "state": "failed", "offset": 5, "limit": 20}
    listed = msgspec.json.decode(
        msgspec.json.encode({"type": "queue.jobs", **query}), type=QueueMessage
    )
    assert listed == QueueListJobs(queue="email", state="failed", offset=5, limit=20)
    assert set(JobQuery.__struct_fields__) <= set(QueueListJobs.__struct_fields__)
    # msgpack, as between processes, round-trips every command
    commands: list[Any] = [
        decoded,
        listed,
        QueueEnqueueMany(jobs=(decoded.job,)),
        QueueGetJob(job_id="email.1", user_id="u"),
        QueueGetCounts(queue="email"),
        QueueListQueues(),
        QueueCancel(job_id="email.1"),
        QueueRetry(job_id="email.1"),
        QueuePause(queue="email"),
        QueueResume(queue="email"),
    ]
    for command in commands:
        packed = msgspec.msgpack.encode(command)
        assert msgspec.msgpack.decode(packed, type=QueueMessage) == command
    # the edge's validation: wrong fields and out-of-range values never reach the actor
    for bad in (
        {"type": "queue.enqueue", "job": body | {"extra": 1}},
        {"type": "queue.enqueue", "job": {"payload": {}}},
        {"type": "queue.jobs", "queue": "email", "limit": 0},
        {"type": "queue.jobs", "queue": "email", "state": "lost"},
        {"type": "queue.nothing"},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(msgspec.json.encode(bad), type=QueueMessage)


class Attempt(Message, tag="test.attempt", frozen=True, kw_only=True):
    """Ask the client actor to send ``command`` to the queue and tell the probe the reply."""

    command: Any


class Client(Actor[Attempt]):
    """Another actor of the node: it knows the queue only by its ref."""

    def __init__(self, probe: Probe) -> None:
        self._probe = probe

    async def handle(self, message: Attempt) -> None:
        queue: ActorRef[QueueMessage] = self.context.refs["queue"]
        try:
            reply = await queue.ask(message.command)
        except Rejected as exc:
            reply = exc.code
        await self.context.refs["probe"].tell(reply)


async def test_install_runs_the_actor_that_other_actors_ask() -> None:
    probe = Probe()

    def compose(setup: NodeSetup) -> None:
        from actors.queue import install

        install(setup)
        setup.add_actor(ChildSpec("probe", lambda: probe))
        setup.add_actor(ChildSpec("client", lambda: Client(probe)))

    sections = {QUEUE_SETTINGS: QueueSettings(concurrency="default=1")}
    async with open_app(compose=compose, sections=sections) as (_, context):
        client = context.refs["client"]
        await client.tell(Attempt(command=QueueGetCounts(queue="default")))
        assert await probe.expect(QueueCounts, timeout_seconds=WAIT) == QueueCounts()
        await client.tell(Attempt(command=QueueGetCounts(queue="nope")))
        assert await probe.expect(str, timeout_seconds=WAIT) == "unknown_queue"
        await client.tell(Attempt(command=QueuePause(queue="default")))
        assert await probe.expect(QueuePauseReply, timeout_seconds=WAIT) == QueuePauseReply(
            queue="default"
        )
        assert context.refs["queue"].statistics().crashes == 0


def test_queue_child_names_its_actor() -> None:
    specs, _, _ = queue_child(actor_id="jobs")
    children = [s for s in specs if isinstance(s, ChildSpec)]
    assert [c.id for c in children] == ["jobs"]
    assert all(isinstance(s, ServiceSpec) for s in specs if s not in children)
