"""The cache actor driven through its messages alone, as another actor would, with no facade.

A node runs the cache (``actors.cache.install``) and a client actor that holds
only a ref to it: commands carry user keys and plain values, replies are the
typed ``...Reply`` Structs, and invalid input comes back as ``Rejected`` with
the facade's codes. Runs in memory and on a real Redis (where writes reply
before Redis has them, and ``wait()`` waits for it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, assert_type

import msgspec
import pytest

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
    ("bad encoding", CacheSet(key="k", value=1, payload=b"\x01", encoding=7), "invalid_encoding"),
    ("neither", CacheInvalidate(), "invalid_invalidation"),
    ("both", CacheInvalidate(pattern="*", tag="t"), "invalid_invalidation"),
    ("bad pattern", CacheInvalidate(pattern="user:[a"), "invalid_pattern"),
    ("bad tag to invalidate", CacheInvalidate(tag=""), "invalid_tag"),
]


async def test_invalid_input_from_another_actor_is_rejected_with_a_code(
    request: pytest.FixtureRequest,
) -> None:
    probe = Probe()
    async with cache_node("memory", request, probe) as (ref, context):
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


def test_public_replies_and_commands_are_frozen_structs() -> None:
    for kind in (CacheGetReply, CacheExistsReply, CacheSetReply, CacheDeleteReply):
        assert issubclass(kind, msgspec.Struct)
        assert kind.__struct_config__.frozen
    assert CACHE.name == "cache"
    # The commands decode from msgpack (no loader): what an edge would receive.
    wire = msgspec.msgpack.encode(CacheSet(key="user:1", value={"a": 1}, ttl_seconds=5))
    decoded = msgspec.msgpack.decode(wire, type=CacheSet)
    assert decoded == CacheSet(key="user:1", value={"a": 1}, ttl_seconds=5)
