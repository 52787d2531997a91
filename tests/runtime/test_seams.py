"""The seams every actor package builds on: typed keys, typed asks, statistics, services."""

from __future__ import annotations

from typing import Any, assert_never

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec
import pytest

from runtime import (
    FANOUT,
    REDIS,
    STATISTICS,
    Actor,
    ChildSpec,
    ConfigError,
    Extension,
    Extensions,
    Gap,
    Message,
    NodeSetup,
    RedisFanout,
    Request,
    Secret,
    ServiceSpec,
    Settings,
    StatisticsRegistry,
    Supervisor,
    TokenVerifier,
)
from runtime.testing import open_app, open_nodes, open_system

SECRET = "a-test-secret-that-is-32-bytes-long!"


class Greeter:
    """A facade of a made-up package."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting


GREETER: Extension[Greeter] = Extension("greeter", Greeter)


# -- typed discovery -------------------------------------------------------------------------


def test_provide_then_require_returns_the_facade() -> None:
    extensions = Extensions()
    greeter = Greeter("hi")
    extensions.provide(GREETER, greeter)
    assert extensions.require(GREETER) is greeter
    assert GREETER in extensions
    assert extensions.names() == ["greeter"]


def test_a_missing_provider_names_the_key_and_who_needed_it() -> None:
    with pytest.raises(ConfigError) as caught:
        Extensions().require(GREETER)
    assert "greeter" in str(caught.value)
    assert __name__ in str(caught.value)  # the module that asked


def test_providing_twice_or_the_wrong_type_is_refused() -> None:
    extensions = Extensions()
    extensions.provide(GREETER, Greeter("hi"))
    with pytest.raises(ConfigError, match="already provided"):
        extensions.provide(GREETER, Greeter("again"))
    other: Extension[Greeter] = Extension("greeter", Greeter)
    with pytest.raises(ConfigError, match="already provided"):
        extensions.provide(other, Greeter("same name"))
    wrong: Extension[Any] = Extension("wrong", Greeter)
    with pytest.raises(ConfigError, match="promises a Greeter"):
        extensions.provide(wrong, "not a greeter")


def test_extension_names_are_validated() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        Extension("Bad Name", Greeter)


async def test_a_node_fails_assembly_when_a_package_needs_a_missing_one() -> None:
    def needs_greeter(setup: NodeSetup) -> None:
        setup.require(GREETER)

    with pytest.raises(ConfigError, match=r"greeter.*needs it"):
        async with open_app(compose=needs_greeter):
            pass  # pragma: no cover - assembly fails first


class Hello(Request[str], tag="test.hello", frozen=True, kw_only=True):
    name: str


class UsesGreeter(Actor[Hello]):
    async def handle(self, message: Hello) -> str:
        return f"{self.context.get(GREETER).greeting} {message.name}"


async def test_actors_and_routes_reach_provided_facades_by_key() -> None:
    greeter = Greeter("hello")

    def compose(setup: NodeSetup) -> None:
        setup.provide(GREETER, greeter)
        setup.add_actor(ChildSpec("uses", UsesGreeter))

    async with open_app(compose=compose) as (_, context):
        assert context.get(GREETER) is greeter
        reply: str = await context.refs["uses"].ask(Hello(name="ada"))
        assert reply == "hello ada"


# -- typed request/reply ---------------------------------------------------------------------


class CountReply(msgspec.Struct, frozen=True, kw_only=True):
    count: int


class Count(Request[CountReply], tag="test.count", frozen=True, kw_only=True):
    by: int = 1


class Reset(Message, tag="test.reset", frozen=True):
    pass


CounterMessage = Count | Reset


class Counter(Actor[CounterMessage]):
    def __init__(self) -> None:
        self.value = 0

    async def handle(self, message: CounterMessage) -> CountReply | None:
        match message:
            case Count(by=by):
                self.value += by
                return CountReply(count=self.value)
            case Reset():
                self.value = 0
                return None
            case _:
                assert_never(message)


async def test_a_request_is_asked_and_typed_with_its_reply() -> None:
    async with open_system([ChildSpec("counter", Counter)]) as refs:
        counter = refs["counter"]
        reply = await counter.ask(Count(by=2))
        assert reply == CountReply(count=2)
        await counter.tell(Reset())
        assert (await counter.ask(Count())).count == 1


def test_a_request_decodes_from_the_wire_like_any_message() -> None:
    decoded = msgspec.json.decode(b'{"type":"test.count","by":3}', type=CounterMessage)
    assert decoded == Count(by=3)
    assert isinstance(decoded, Request)


# -- statistics ------------------------------------------------------------------------------


class Tally(msgspec.Struct, frozen=True, kw_only=True):
    seen: int


async def test_the_registry_reads_sync_and_async_sources_and_reports_failures() -> None:
    registry = StatisticsRegistry()
    registry.add("sync", lambda: Tally(seen=1))

    async def asynchronous() -> Tally:
        await anyio.lowlevel.checkpoint()
        return Tally(seen=2)

    def broken() -> Tally:
        raise RuntimeError("counter gone")

    registry.add("pkg.async", asynchronous)
    registry.add("broken", broken)
    snapshot = await registry.snapshot()
    assert snapshot["sync"] == Tally(seen=1)
    assert snapshot["pkg.async"] == Tally(seen=2)
    assert snapshot["broken"].error.code == "statistics_failed"
    assert "counter gone" in snapshot["broken"].error.message
    with pytest.raises(ConfigError, match="already registered"):
        registry.add("sync", lambda: Tally(seen=0))
    with pytest.raises(ConfigError, match="dotted lower-case"):
        registry.add("Not Valid", lambda: Tally(seen=0))


def _admin_headers(verifier: TokenVerifier | None) -> dict[str, str]:
    assert verifier is not None
    return {"Authorization": f"Bearer {verifier.issue('root', roles=('admin',))}"}


async def test_api_statistics_lists_every_runtime_part_and_package() -> None:
    def compose(setup: NodeSetup) -> None:
        setup.add_actor(ChildSpec("counter", Counter, mailbox_size=16))
        setup.add_statistics("greeter", lambda: Tally(seen=7))

    settings = Settings(jwt_secret=Secret(SECRET))
    async with open_app(settings, compose=compose) as (app, context):
        client = app.test_client()
        assert (await client.get("/api/statistics")).status_code == 401
        response = await client.get("/api/statistics", headers=_admin_headers(context.verifier))
        assert response.status_code == 200
        body = await response.get_json()
    assert body["greeter"] == {"seen": 7}
    assert [actor["actor_id"] for actor in body["runtime.actors"]] == ["counter"]
    assert body["runtime.actors"][0]["mailbox_capacity"] == 16
    assert [service["service_id"] for service in body["runtime.services"]] == ["runtime.fanout"]
    assert body["runtime.services"][0]["state"] == "running"
    assert body["runtime.http"]["requests"] >= 2
    assert body["runtime.http"]["responses_4xx"] == 1
    assert "runtime.fanout" in body
    assert body["runtime.websocket"]["connections_open"] == 0
    (root,) = body["runtime.supervisors"]
    assert root["supervisor_id"] == "root"
    assert root["children"] == 2  # the fanout reader and the counter
    assert root["restarts"] == root["recent_restarts"] == 0
    assert "runtime.redis" not in body  # no Redis configured


# -- supervised services ---------------------------------------------------------------------


class FlakyService:
    """A service that crashes when told to, counting its incarnations."""

    def __init__(self) -> None:
        self.incarnations = 0
        self.crash = anyio.Event()
        self.started = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self.incarnations += 1
        self.crash = anyio.Event()
        task_status.started()
        self.started.set()
        await self.crash.wait()
        raise RuntimeError("service lost its connection")


async def test_a_crashed_service_is_restarted_like_an_actor() -> None:
    service = FlakyService()
    supervisor = Supervisor([ServiceSpec("flaky", service.run)], max_restarts=5)
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        assert service.incarnations == 1
        for expected in (2, 3):
            service.started = anyio.Event()
            service.crash.set()
            with anyio.fail_after(5):
                await service.started.wait()
            assert service.incarnations == expected
        (stats,) = supervisor.service_statistics()
        assert (stats.crashes, stats.restarts, stats.state) == (2, 2, "running")
        assert "service lost its connection" in (stats.last_crash_reason or "")
        (root,) = supervisor.supervisor_statistics()
        assert root.recent_restarts == root.restarts == 2
        tg.cancel_scope.cancel()


async def test_services_start_before_and_stop_after_the_actors() -> None:
    events: list[str] = []

    async def service(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        events.append("service up")
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            events.append("service down")

    class Recorder(Actor[Any]):
        async def on_start(self) -> None:
            events.append("actor up")

        async def on_stop(self) -> None:
            events.append("actor down")

    async with open_system([ServiceSpec("svc", service), ChildSpec("actor", Recorder)]):
        pass
    assert events == ["service up", "actor up", "actor down", "service down"]


# -- real nodes on one Redis -----------------------------------------------------------------


@pytest.mark.redis
async def test_open_nodes_share_one_redis_and_supervise_its_link(redis_url: str) -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    async with open_nodes(2, redis_url=redis_url, settings=settings) as (first, second):
        for node in (first, second):
            assert node.context.redis is not None and node.context.redis.up
            states = node.context.supervisor.service_states()
            assert states == {"runtime.redis": "running", "runtime.fanout": "running"}
        async with second.context.fanout.subscribe("test.ping") as subscription:
            await first.context.fanout.publish("test.ping", b"hello")
            with anyio.fail_after(5):
                assert await subscription.receive() == b"hello"
        response = await first.app.test_client().get(
            "/api/statistics", headers=_admin_headers(first.context.verifier)
        )
        body = await response.get_json()
    assert body["runtime.redis"]["up"] is True
    assert [s["service_id"] for s in body["runtime.services"]] == [
        "runtime.redis",
        "runtime.fanout",
    ]


async def test_readyz_names_a_service_that_is_not_running() -> None:
    service = FlakyService()

    def compose(setup: NodeSetup) -> None:
        setup.add_actor(ServiceSpec("flaky", service.run, restart="temporary"))

    async with open_app(compose=compose) as (app, context):
        client = app.test_client()
        assert (await client.get("/readyz")).status_code == 200
        service.crash.set()
        with anyio.fail_after(5):
            while context.supervisor.service_states()["flaky"] != "stopped":
                await anyio.lowlevel.checkpoint()
        response = await client.get("/readyz")
        assert response.status_code == 503
        body = await response.get_json()
    assert "service flaky is stopped" in body["reasons"]


# -- the node's own parts, by key ------------------------------------------------------------


class Ping(Request[str], tag="test.node_ping", frozen=True, kw_only=True):
    channel: str


class UsesTheNode(Actor[Ping]):
    """Publishes on the node's fanout and reads the node's statistics, through its context."""

    async def handle(self, message: Ping) -> str:
        fanout = self.context.get(FANOUT)
        await fanout.publish(message.channel, b"from an actor")
        statistics = self.context.get(STATISTICS)
        redis = self.context.find(REDIS)
        return f"{len(statistics)} sources; redis {'up' if redis is not None else 'absent'}"


async def test_actors_reach_the_nodes_fanout_statistics_and_redis_by_key() -> None:
    def compose(setup: NodeSetup) -> None:
        setup.add_actor(ChildSpec("user", UsesTheNode))

    async with open_app(compose=compose) as (_, context):
        assert context.get(FANOUT) is context.fanout
        assert context.find(REDIS) is None  # a node in memory
        async with context.fanout.subscribe("test.node") as subscription:
            reply = await context.refs["user"].ask(Ping(channel="test.node"))
            with anyio.fail_after(5):
                assert await subscription.receive() == b"from an actor"
    assert reply == f"{len(context.statistics)} sources; redis absent"


class SelfTeller(Actor[Reset | Count]):
    """Tells itself through its typed ``self_ref``."""

    def __init__(self) -> None:
        self.resets = 0

    async def handle(self, message: Reset | Count) -> CountReply | None:
        if isinstance(message, Count):
            await self.self_ref.tell(Reset())  # typed ActorRef[Reset | Count]
            return CountReply(count=self.resets)
        self.resets += 1
        return None


async def test_an_actor_tells_itself_through_its_typed_self_ref() -> None:
    async with open_system([ChildSpec("self", SelfTeller)]) as refs:
        assert (await refs["self"].ask(Count())).count == 0
        assert (await refs["self"].ask(Count())).count == 1  # the first Reset came first


@pytest.mark.redis
async def test_a_crashed_fanout_reader_is_restarted_and_reports_a_gap(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real reader under the node's supervisor: an unexpected error restarts it."""
    async with open_app(redis_url=redis_url) as (_, context):
        fanout = context.fanout
        assert isinstance(fanout, RedisFanout)
        async with fanout.subscribe("test.crash") as subscription:
            original = RedisFanout._read_until_failure
            crashed = anyio.Event()

            async def crash_once(self: RedisFanout, connection: Any) -> str:
                monkeypatch.setattr(RedisFanout, "_read_until_failure", original)
                crashed.set()
                raise RuntimeError("a bug in the reader")

            monkeypatch.setattr(RedisFanout, "_read_until_failure", crash_once)
            assert context.redis is not None
            await context.redis.client.client_kill_filter(_type="pubsub")
            with anyio.fail_after(10):
                await crashed.wait()
                gap = await subscription.receive()
                assert isinstance(gap, Gap)
                while True:  # publish until the restarted reader has re-subscribed
                    await fanout.wait_connected()
                    if await fanout.publish("test.crash", b"after") > 0:
                        break
                    await anyio.lowlevel.checkpoint()
                item = await subscription.receive()
                while isinstance(item, Gap):
                    item = await subscription.receive()
                assert item == b"after"
        (fanout_stats,) = [
            s for s in context.supervisor.service_statistics() if s.service_id == "runtime.fanout"
        ]
    assert fanout_stats.crashes == 1
    assert fanout_stats.restarts == 1
    assert "a bug in the reader" in (fanout_stats.last_crash_reason or "")
