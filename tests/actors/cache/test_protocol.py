"""The cache actor driven through its messages alone, as another actor would, with no facade.

A node runs the cache (``actors.cache.install``) and a client actor that holds
only a ref to it: commands carry user keys and plain values, replies are the
typed ``...Reply`` Structs, and invalid input comes back as ``Rejected`` with
the facade's codes, never as a crash. The public commands cannot carry the
facade's shortcuts (a pre-namespaced key, a pre-encoded payload), so nothing
another actor sends is written outside the cache's namespace. Runs in memory
and on a real Redis (where writes reply before Redis has them, and ``wait()``
waits for it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, assert_type

import msgspec
import pytest
import redis.asyncio

import actors.cache
from actors.cache import (
    CACHE,
    CACHE_SETTINGS,
    CacheDelete,
    CacheDeleteReply,
    CacheExists,
    CacheExistsReply,
    CacheGet,
    CacheGetOrLoad,
    CacheGetOrLoadReply,
    CacheGetReply,
    CacheInvalidate,
    CacheInvalidateReply,
    CacheMessage,
    CacheSet,
    CacheSetReply,
    CacheSettings,
    CacheStatistics,
    CacheStats,
)
from actors.cache._messages import _PreparedSet
from runtime import (
    Actor,
    ActorRef,
    ChildSpec,
    Message,
    NodeContext,
    NodeSetup,
    Rejected,
    Request,
    SystemClock,
)
from runtime.testing import Probe, open_app

KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


class Attempt(Message, tag="test.attempt", frozen=True, kw_only=True):
    """Ask the client to send ``command`` to the cache and report the outcome to the probe."""

    label: str
    command: Any


class Outcome(Message, tag="test.outcome", frozen=True, kw_only=True):
    """What the cache answered: a reply, or a rejection's code."""

    label: str
    reply: Any = None
    code: str | None = None


class Client(Actor[Attempt]):
    """Another actor of the node: it knows the cache only by its ref."""

    def __init__(self, probe: Probe) -> None:
        self._probe = probe

    async def handle(self, message: Attempt) -> None:
        cache: ActorRef[CacheMessage] = self.context.refs["cache"]
        command: Request[Any] = message.command
        try:
            reply = await cache.ask(command)
        except Rejected as exc:
            outcome = Outcome(label=message.label, code=exc.code)
        else:
            outcome = Outcome(label=message.label, reply=reply)
        await self.context.refs["probe"].tell(outcome)


@asynccontextmanager
async def cache_node(
    kind: str, request: pytest.FixtureRequest, probe: Probe | None = None
) -> AsyncIterator[tuple[ActorRef[CacheMessage], NodeContext]]:
    """A node with the cache (and, with ``probe``, the client and the probe); the cache's ref."""
    redis_url: str | None = request.getfixturevalue("redis_url") if kind == "redis" else None

    def compose(setup: NodeSetup) -> None:
        actors.cache.install(setup)
        if probe is not None:
            setup.add_actor(ChildSpec("probe", lambda: probe))
            setup.add_actor(ChildSpec("client", lambda: Client(probe)))

    sections = {CACHE_SETTINGS: CacheSettings(max_value_bytes=64, default_ttl_seconds=120)}
    async with open_app(compose=compose, redis_url=redis_url, sections=sections) as (_, context):
        ref: ActorRef[CacheMessage] = context.refs["cache"]
        yield ref, context


@pytest.mark.parametrize("kind", KINDS)
async def test_every_command_works_without_the_facade(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with cache_node(kind, request) as (ref, _):
        # Typed replies, no casts: assert_type makes mypy prove each one (and an annotated
        # ``r: Wrong = await ref.ask(...)`` is an error too: the fallback for plain
        # messages is typed ``object``).
        stored = await ref.ask(
            CacheSet(key="user:1", value={"name": "Ada"}, ttl_seconds=60, tags=("users",))
        )
        assert_type(stored, CacheSetReply)
        await stored.wait()
        await (await ref.ask(CacheSet(key="user:2", value=b"raw", prefix="p"))).wait()
        await (await ref.ask(CacheSet(key="order:1", value=[1, 2], tags=("orders",)))).wait()

        got = await ref.ask(CacheGet(key="user:1"))
        assert_type(got, CacheGetReply)
        assert got == CacheGetReply(found=True, value={"name": "Ada"})
        assert await ref.ask(CacheGet(key="user:2", prefix="p")) == CacheGetReply(
            found=True, value=b"raw"
        )
        assert await ref.ask(CacheGet(key="user:2")) == CacheGetReply(found=False)
        exists = await ref.ask(CacheExists(key="order:1"))
        assert_type(exists, CacheExistsReply)
        assert exists.exists is True

        deleted = await ref.ask(CacheDelete(keys=("order:1", "never")))
        assert_type(deleted, CacheDeleteReply)
        assert await deleted.wait() == 1
        assert await ref.ask(CacheExists(key="order:1")) == CacheExistsReply(exists=False)

        by_pattern = await ref.ask(CacheInvalidate(pattern="user:*"))
        assert_type(by_pattern, CacheInvalidateReply)
        assert await by_pattern.wait() == 1  # user:1; user:2 lives under the sub-prefix p
        assert (await ref.ask(CacheGet(key="user:1"))).found is False
        assert (await ref.ask(CacheGet(key="user:2", prefix="p"))).found is True

        await (await ref.ask(CacheSet(key="vip", value=1, tags=("users",)))).wait()
        by_tag = await ref.ask(CacheInvalidate(tag="users"))
        assert await by_tag.wait() == 1
        assert (await ref.ask(CacheGet(key="vip"))).found is False

        stats = await ref.ask(CacheStats())
        assert_type(stats, CacheStatistics)
        assert stats.l2_enabled is (kind == "redis")
        assert stats.l1_entries == 1  # p:user:2
        assert stats.invalidation_publish_failures == 0
        assert stats.invalidations_undecodable == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_the_facade_reads_what_another_actor_wrote(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with cache_node(kind, request) as (ref, context):
        cache = context.get(CACHE)
        await (await ref.ask(CacheSet(key="config", value={"theme": "dark"}))).wait()
        # The same key, namespaced by the actor as the facade namespaces it; and back.
        assert await cache.get("config") == {"theme": "dark"}
        await cache.set("user:9", {"id": 9}, prefix="p")
        assert await ref.ask(CacheGet(key="user:9", prefix="p")) == CacheGetReply(
            found=True, value={"id": 9}
        )
        assert await cache.delete("config") == 1
        assert await ref.ask(CacheExists(key="config")) == CacheExistsReply(exists=False)


async def test_get_or_load_from_another_actor_runs_the_loader_once(
    request: pytest.FixtureRequest,
) -> None:
    calls: list[int] = []

    async def load() -> str:
        calls.append(1)
        return "loaded"

    async with cache_node("memory", request) as (ref, _):
        first = await ref.ask(CacheGetOrLoad(key="report", loader=load))
        assert_type(first, CacheGetOrLoadReply)
        assert first.flight is not None
        assert await first.result(clock=SystemClock(), timeout_seconds=5) == "loaded"
        again = await ref.ask(CacheGetOrLoad(key="report", loader=load))
        assert (again.found, again.value, again.flight) == (True, "loaded", None)
        assert calls == [1]
        assert await ref.ask(CacheGet(key="report")) == CacheGetReply(found=True, value="loaded")


INVALID: list[tuple[str, Any, str]] = [
    ("space in key", CacheGet(key="user 1"), "invalid_key"),
    ("glob in key", CacheSet(key="user:*", value=1), "invalid_key"),
    ("empty key", CacheExists(key=""), "invalid_key"),
    ("bad sub-prefix", CacheGet(key="k", prefix="a b"), "invalid_key"),
    ("bad key among keys", CacheDelete(keys=("ok", "no\n")), "invalid_key"),
    ("negative ttl", CacheSet(key="k", value=1, ttl_seconds=-1), "invalid_ttl"),
    ("bad stale", CacheSet(key="k", value=1, stale_seconds=-5), "invalid_ttl"),
    ("bare string tags", CacheSet(key="k", value=1, tags="users"), "invalid_tag"),  # type: ignore[arg-type]
    ("bad tag", CacheSet(key="k", value=1, tags=("a b",)), "invalid_tag"),
    ("unencodable", CacheSet(key="k", value=object()), "unencodable_value"),
    ("too large", CacheSet(key="k", value=b"x" * 65), "value_too_large"),
    ("key not a string", CacheGet(key=1), "invalid_key"),  # type: ignore[arg-type]
    ("key None in a set", CacheSet(key=None, value=1), "invalid_key"),  # type: ignore[arg-type]
    ("sub-prefix not a string", CacheExists(key="k", prefix=7), "invalid_key"),  # type: ignore[arg-type]
    ("keys None", CacheDelete(keys=None), "invalid_key"),  # type: ignore[arg-type]
    ("keys a bare string", CacheDelete(keys="abc"), "invalid_key"),  # type: ignore[arg-type]
    ("ttl a string", CacheSet(key="k", value=1, ttl_seconds="60"), "invalid_ttl"),  # type: ignore[arg-type]
    ("stale None", CacheSet(key="k", value=1, stale_seconds=None), "invalid_ttl"),  # type: ignore[arg-type]
    ("tags None", CacheSet(key="k", value=1, tags=None), "invalid_tag"),  # type: ignore[arg-type]
    ("tags a number", CacheSet(key="k", value=1, tags=3), "invalid_tag"),  # type: ignore[arg-type]
    ("tag not a string", CacheSet(key="k", value=1, tags=(1,)), "invalid_tag"),  # type: ignore[arg-type]
    ("load: bad key", CacheGetOrLoad(key="a b", loader=lambda: None), "invalid_key"),  # type: ignore[arg-type, return-value]
    ("load: bad ttl", CacheGetOrLoad(key="k", loader=int, ttl_seconds=0), "invalid_ttl"),  # type: ignore[arg-type]
    ("load: no loader", CacheGetOrLoad(key="k", loader=None), "invalid_loader"),  # type: ignore[arg-type]
    ("neither", CacheInvalidate(), "invalid_invalidation"),
    ("both", CacheInvalidate(pattern="*", tag="t"), "invalid_invalidation"),
    ("bad pattern", CacheInvalidate(pattern="user:[a"), "invalid_pattern"),
    ("bad tag to invalidate", CacheInvalidate(tag=""), "invalid_tag"),
    ("pattern not a string", CacheInvalidate(pattern=1), "invalid_pattern"),  # type: ignore[arg-type]
    ("tag not a string to invalidate", CacheInvalidate(tag=[]), "invalid_tag"),  # type: ignore[arg-type]
    ("bad sub-prefix to invalidate", CacheInvalidate(pattern="*", prefix="*"), "invalid_key"),
]


@pytest.mark.parametrize("kind", KINDS)
async def test_invalid_input_from_another_actor_is_rejected_with_a_code(
    kind: str, request: pytest.FixtureRequest
) -> None:
    probe = Probe()
    async with cache_node(kind, request, probe) as (ref, context):
        node_refs = context.refs
        for label, command, _ in INVALID:
            await node_refs["client"].tell(Attempt(label=label, command=command))
        outcomes = [await probe.expect(Outcome) for _ in INVALID]
        assert [(o.label, o.code) for o in outcomes] == [
            (label, code) for label, _, code in INVALID
        ]
        # The cache carried on: a valid command from the same client still works.
        await node_refs["client"].tell(Attempt(label="ok", command=CacheSet(key="k", value=1)))
        ok = await probe.expect(Outcome)
        assert ok.code is None and isinstance(ok.reply, CacheSetReply)
        assert (await ref.ask(CacheGet(key="k"))).value == 1
        stats = await ref.ask(CacheStats())
        assert stats.l1_entries == 1
        # Every rejection was a reply: the actor never crashed nor restarted.
        actor = ref.statistics()
        assert (actor.crashes, actor.restarts, actor.last_crash_reason) == (0, 0, None)


def test_public_replies_and_commands_are_frozen_structs() -> None:
    for kind in (CacheGetReply, CacheExistsReply, CacheSetReply, CacheDeleteReply):
        assert issubclass(kind, msgspec.Struct)
        assert kind.__struct_config__.frozen
    assert CACHE.name == "cache"
    # The commands decode from msgpack (no loader): what an edge would receive.
    wire = msgspec.msgpack.encode(CacheSet(key="user:1", value={"a": 1}, ttl_seconds=5))
    decoded = msgspec.msgpack.decode(wire, type=CacheSet)
    assert decoded == CacheSet(key="user:1", value={"a": 1}, ttl_seconds=5)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (CacheSet, "prepared"),
        (CacheSet, "payload"),
        (CacheSet, "encoding"),
        (CacheGet, "prepared"),
        (CacheDelete, "prepared"),
        (CacheExists, "prepared"),
        (CacheInvalidate, "prepared"),
        (CacheGetOrLoad, "prepared"),
        (CacheGetOrLoad, "lookup"),
    ],
)
def test_public_commands_cannot_express_the_facades_shortcuts(
    command: type[Request[Any]], field: str
) -> None:
    required: dict[str, Any] = {
        "key": "k",
        "keys": ("k",),
        "value": 1,
        "loader": lambda: None,
    }
    fields = set(command.__struct_fields__)
    arguments = {name: value for name, value in required.items() if name in fields}
    command(**arguments)  # the user-level fields alone are a valid command
    with pytest.raises(TypeError, match=field):
        command(**arguments, **{field: b"clobbered" if field == "payload" else True})


def test_an_edge_cannot_decode_a_prepared_write() -> None:
    # Shortcut fields on the wire are ignored: the value is encoded by the actor.
    wire = msgspec.msgpack.encode(
        {
            "type": "cache.set",
            "key": "someone_elses:key",
            "value": 0,
            "prepared": True,
            "payload": b"clobbered",
            "encoding": 1,
        }
    )
    decoded = msgspec.msgpack.decode(wire, type=CacheMessage)
    assert decoded == CacheSet(key="someone_elses:key", value=0)
    # The private prepared messages are not part of the public union.
    private = msgspec.msgpack.encode(
        _PreparedSet(key="someone_elses:key", value=0, payload=b"x", encoding=0, ttl_seconds=5)
    )
    with pytest.raises(msgspec.ValidationError, match=r"cache\.prepared_set"):
        msgspec.msgpack.decode(private, type=CacheMessage)


@pytest.mark.redis
async def test_nothing_another_actor_sends_is_written_outside_the_namespace(
    request: pytest.FixtureRequest, redis_url: str
) -> None:
    hostile: list[Any] = [
        # The reviewer's attack, with the fields a public command still has.
        CacheSet(key="someone_elses:key", value=0, ttl_seconds=50),
        CacheSet(key="x", value=b"not msgpack", prefix="someone_elses"),
        CacheSet(key="tagged", value=1, tags=("someone_elses:key",)),
        CacheSet(key="../../etc", value=1),
        CacheSet(key="k", value=1, prefix=""),
        CacheSet(key="", value=1),
        CacheSet(key="a*", value=1),
        CacheDelete(keys=("someone_elses:victim",)),
        CacheGetOrLoad(key="loaded", loader=_load_one, tags=("t",)),
    ]
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.set("someone_elses:key", b"theirs")
        await client.set("someone_elses:victim", b"theirs")
        probe = Probe()
        async with cache_node("redis", request, probe) as (ref, context):
            before = {key async for key in client.scan_iter(count=1000)}
            for index, command in enumerate(hostile):
                await context.refs["client"].tell(Attempt(label=str(index), command=command))
            outcomes = [await probe.expect(Outcome) for _ in hostile]
            for outcome in outcomes:
                if outcome.reply is not None and hasattr(outcome.reply, "wait"):
                    await outcome.reply.wait()
                elif isinstance(outcome.reply, CacheGetOrLoadReply):
                    assert outcome.reply.flight is not None
                    await outcome.reply.flight.result(clock=SystemClock(), timeout_seconds=5)
            assert await ref.ask(CacheGet(key="loaded")) == CacheGetReply(found=True, value=1)
            after = {key async for key in client.scan_iter(count=1000)}
            # An invalidation under the other tenant's name stays in the cache's namespace.
            invalidated = await ref.ask(CacheInvalidate(pattern="*", prefix="someone_elses"))
            assert await invalidated.wait() == 2  # someone_elses:key and someone_elses:x
            assert ref.statistics().crashes == 0
        namespaces = (b"switchyard:cache:", b"switchyard:cache-tag:", b"switchyard:cache-lock:")
        written = after - before
        assert written, "the valid commands wrote their entries"
        assert [key for key in written if not key.startswith(namespaces)] == []
        assert b"switchyard:cache:someone_elses:key" in written
        assert b"switchyard:cache:someone_elses:x" in written
        # The other tenant's keys are untouched.
        assert await client.get("someone_elses:key") == b"theirs"
        assert await client.get("someone_elses:victim") == b"theirs"
        assert [o.code for o in outcomes] == [
            None,  # namespaced: switchyard:cache:someone_elses:key
            None,  # switchyard:cache:someone_elses:x
            None,  # the tag index is switchyard:cache-tag:someone_elses:key
            None,  # '../../etc' is just a key in the namespace
            "invalid_key",
            "invalid_key",
            "invalid_key",
            None,  # deletes switchyard:cache:someone_elses:victim (absent), not the bare key
            None,
        ]
    finally:
        await client.aclose()


async def _load_one() -> int:
    return 1
