"""The room history contract, run against MemoryHistory and RedisHistory alike, plus each one's own.

Redis tests use a real ``redis-server``; time passes for Redis by moving the
keys' expiry into the past (Redis time cannot be moved), for memory on a
:class:`ManualClock`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import msgspec
import pytest
import redis.asyncio

from actors.socket_hub import HubKeys, HubSettings, ServerFrame
from actors.socket_hub._frames import NewMessage, TaskProgress
from actors.socket_hub._history import (
    MemoryHistory,
    Position,
    RemoteFrame,
    RoomHistory,
    echo_prefix,
    parse_remote,
    remote_payload,
    splice_offset,
)
from actors.socket_hub._history_redis import RedisHistory
from runtime import Gap, RedisFanout, RedisLink, RedisUnavailable, Subscription
from runtime.testing import ManualClock, RedisServer

SIZE = 5
TTL = 600.0
SETTINGS = HubSettings(history_size=SIZE, history_ttl_seconds=TTL, memory_history_rooms=1000)
KEYS = HubKeys("sw")
NODE = "node-a"
WAIT_SECONDS = 10

_decoder = msgspec.json.Decoder(ServerFrame)


def template(room: str, text: str) -> bytes:
    """A ``new_message`` encoded once, without its offset (as the hub encodes it)."""
    message = NewMessage(id=text, room=room, user_id="u1", message=text, ts=1.5)
    encoded = msgspec.json.encode(message)
    assert b'"offset"' not in encoded
    return encoded


def text_of(frame: bytes) -> str:
    decoded = _decoder.decode(frame)
    assert isinstance(decoded, NewMessage)
    return decoded.message


class Env:
    """One history under test and a way to make its rooms' time pass."""

    kind: str
    history: RoomHistory

    async def expire(self, room: str) -> None:
        """Make the room's TTL run out."""
        raise NotImplementedError


class MemoryEnv(Env):
    kind = "memory"

    def __init__(self, settings: HubSettings = SETTINGS) -> None:
        self.clock = ManualClock()
        self.memory = MemoryHistory(settings, self.clock)
        self.history = self.memory

    async def expire(self, room: str) -> None:
        self.clock.advance(TTL + 1)


class RedisEnv(Env):
    kind = "redis"

    def __init__(self, link: RedisLink, url: str, node_id: str = NODE) -> None:
        self.link = link
        self.url = url
        self.client: redis.asyncio.Redis = link.client
        self.fanout = RedisFanout(link, prefix="sw:fanout")
        self.redis = RedisHistory(link, KEYS, self.fanout, node_id, SETTINGS)
        self.history = self.redis

    async def expire(self, room: str) -> None:
        for key in (KEYS.meta(room), KEYS.history(room)):
            await self.client.pexpireat(key, 1)  # an expiry in the past applies at once


@pytest.fixture(name="env", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def _env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    if request.param == "memory":
        yield MemoryEnv()
        return
    url: str = request.getfixturevalue("redis_url")
    async with RedisLink(url, clock=ManualClock()) as link:
        yield RedisEnv(link, url)


async def append(history: RoomHistory, room: str, *texts: str) -> list[int]:
    appended = await history.append_many([(room, template(room, text)) for text in texts])
    return [item.offset for item in appended]


# -- the contract ---------------------------------------------------------------------------


async def test_offsets_count_from_one_per_room_in_item_order(env: Env) -> None:
    history = env.history
    items = [
        ("public:a", template("public:a", "a1")),
        ("public:b", template("public:b", "b1")),
        ("public:a", template("public:a", "a2")),
        ("public:a", template("public:a", "a3")),
    ]
    appended = await history.append_many(items)
    assert [(item.room, item.offset) for item in appended] == [
        ("public:a", 1),
        ("public:b", 1),
        ("public:a", 2),
        ("public:a", 3),
    ]
    assert [text_of(item.frame) for item in appended] == ["a1", "b1", "a2", "a3"]
    assert appended[0].epoch == appended[2].epoch == appended[3].epoch
    assert appended[0].epoch != appended[1].epoch  # each room has an epoch of its own
    assert await append(history, "public:a", "a4") == [4]
    assert await append(history, "public:b", "b2", "b3") == [2, 3]
    assert await history.append_many([]) == []
    a = await history.position("public:a")
    assert a == Position(epoch=appended[0].epoch, offset=4)
    assert (await history.position("public:b")).offset == 3


async def test_the_stored_frame_is_the_frame_with_its_offset(env: Env) -> None:
    history = env.history
    room = "user:42"
    progress = msgspec.json.encode(
        TaskProgress(task_id="t1", room=room, percentage=50, stage="copy", ts=2.0)
    )
    appended = await history.append_many(
        [(room, template(room, 'héllo "quoted" \n')), (room, progress), (room, b"{}")]
    )
    message = _decoder.decode(appended[0].frame)
    assert message == NewMessage(
        id='héllo "quoted" \n', room=room, offset=1, user_id="u1",
        message='héllo "quoted" \n', ts=1.5,
    )  # fmt: skip
    assert _decoder.decode(appended[1].frame) == TaskProgress(
        task_id="t1", room=room, offset=2, percentage=50, stage="copy", ts=2.0
    )
    assert appended[2].frame == b'{"offset":3}'
    replay = await history.replay(room, 0, appended[0].epoch)
    # What the store holds (spliced by Lua on Redis) is byte for byte what append returned.
    assert replay.frames == [(item.offset, item.frame) for item in appended]
    with pytest.raises(ValueError, match="must be a JSON object"):
        await history.append_many([(room, b"[1]")])
    assert (await history.position(room)).offset == 3  # a refused batch stores nothing


async def test_replay_since_k_returns_exactly_what_follows(env: Env) -> None:
    history = env.history
    room = "public:r"
    await append(history, room, "1", "2", "3", "4")
    epoch = (await history.position(room)).epoch
    for since in range(5):
        replay = await history.replay(room, since, epoch)
        assert replay.recovered
        assert replay.position == Position(epoch=epoch, offset=4)
        assert [offset for offset, _ in replay.frames] == list(range(since + 1, 5))
        assert [text_of(frame) for _, frame in replay.frames] == [
            str(n) for n in range(since + 1, 5)
        ]
    without_epoch = await history.replay(room, 2, None)  # trusts since to be in this epoch
    assert without_epoch.recovered and [o for o, _ in without_epoch.frames] == [3, 4]
    with pytest.raises(ValueError, match="since must be >= 0"):
        await history.replay(room, -1, epoch)


async def test_replay_past_the_trimmed_history_is_not_recovered(env: Env) -> None:
    history = env.history
    room = "public:t"
    await append(history, room, *(str(n) for n in range(1, 9)))  # keeps 4..8
    epoch = (await history.position(room)).epoch
    for since in (0, 1, 2):
        replay = await history.replay(room, since, epoch)
        assert replay == type(replay)(
            position=Position(epoch=epoch, offset=8), frames=[], recovered=False
        )
    replay = await history.replay(room, 3, epoch)  # needs 4..8: still all there
    assert replay.recovered and [o for o, _ in replay.frames] == [4, 5, 6, 7, 8]
    assert await history.read(room, 0, 8) == replay.frames
    statistics = history.statistics()
    assert statistics.not_recovered_trimmed == 3
    assert statistics.replays == 4 and statistics.replayed == 5


async def test_replay_with_another_epoch_or_ahead_is_not_recovered(env: Env) -> None:
    history = env.history
    room = "public:e"
    await append(history, room, "1", "2")
    position = await history.position(room)
    wrong = await history.replay(room, 1, "0123456789abcdef")
    assert wrong.position == position and wrong.frames == [] and not wrong.recovered
    ahead = await history.replay(room, 3, position.epoch)
    assert ahead.position == position and ahead.frames == [] and not ahead.recovered
    current = await history.replay(room, 2, position.epoch)
    assert current.recovered and current.frames == [] and current.position == position
    statistics = history.statistics()
    assert (statistics.not_recovered_epoch, statistics.not_recovered_ahead) == (1, 1)


async def test_an_unknown_room_gets_an_epoch_once(env: Env) -> None:
    history = env.history
    first = await history.position("public:new")
    assert first.offset == 0 and len(first.epoch) == 16
    assert await history.position("public:new") == first
    replay = await history.replay("public:new", 0, first.epoch)
    assert replay.recovered and replay.frames == [] and replay.position == first
    appended = await history.append_many([("public:new", template("public:new", "x"))])
    assert (appended[0].epoch, appended[0].offset) == (first.epoch, 1)
    fresh = await history.replay("project:7", 3, None)  # a rejoin to a room nobody knows
    assert not fresh.recovered and fresh.position.offset == 0
    assert await history.position("project:7") == fresh.position
    assert history.statistics().epochs_created == 2


async def test_read_returns_the_held_range(env: Env) -> None:
    history = env.history
    room = "public:g"
    await append(history, room, *(str(n) for n in range(1, 8)))  # keeps 3..7
    assert [o for o, _ in await history.read(room, 4, 6)] == [5, 6]
    assert [o for o, _ in await history.read(room, 0, 4)] == [3, 4]  # 1 and 2 are gone
    assert [o for o, _ in await history.read(room, 6, 100)] == [7]
    assert await history.read(room, 5, 5) == []
    assert await history.read(room, 7, 9) == []
    assert await history.read("public:nobody", 0, 10) == []
    frames = await history.read(room, 2, 3)
    assert [text_of(frame) for _, frame in frames] == ["3"]
    statistics = history.statistics()
    assert (statistics.reads, statistics.read_frames) == (7, 6)


async def test_an_expired_room_starts_a_new_epoch(env: Env) -> None:
    history = env.history
    room = "public:x"
    await append(history, room, "1", "2", "3")
    old = await history.position(room)
    await env.expire(room)
    replay = await history.replay(room, 3, old.epoch)
    assert not replay.recovered
    assert replay.position.epoch != old.epoch and replay.position.offset == 0
    assert await append(history, room, "again") == [1]
    assert (await history.position(room)).epoch == replay.position.epoch


async def test_statistics_count_batches_and_frames(env: Env) -> None:
    history = env.history
    await history.append_many([("public:s", template("public:s", "1"))])
    await history.append_many(
        [("public:s", template("public:s", "2")), ("public:z", template("public:z", "1"))]
    )
    await history.publish("public:s", b'{"type":"user_joined_room"}')
    statistics = history.statistics()
    assert (statistics.appended, statistics.batches, statistics.epochs_created) == (3, 2, 2)
    assert statistics.publishes == 0
    # Memory has no other node to skip; Redis skipped all three frames and the ephemeral one.
    assert statistics.publishes_skipped == (4 if env.kind == "redis" else 0)


@pytest.mark.parametrize("tasks", [8])
async def test_concurrent_appends_get_gap_free_increasing_offsets(env: Env, tasks: int) -> None:
    """Several tasks (on Redis: two nodes) append at once; every room's offsets are 1..N."""
    rooms = ["public:c1", "public:c2", "public:c3"]
    seen: dict[str, list[int]] = {room: [] for room in rooms}
    rounds = 100
    histories = [env.history]
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(env, RedisEnv):
            link = await stack.enter_async_context(RedisLink(env.url, clock=ManualClock()))
            histories.append(RedisEnv(link, env.url, "node-b").history)

        async def writer(number: int) -> None:
            rng = random.Random(number)
            history = histories[number % len(histories)]
            for step in range(rounds):
                batch = [rng.choice(rooms) for _ in range(rng.randint(1, 3))]
                items = [(room, template(room, f"{number}.{step}")) for room in batch]
                appended = await history.append_many(items)
                last: dict[str, int] = {}
                for item in appended:  # within a batch, per room, consecutive offsets
                    if item.room in last:
                        assert item.offset == last[item.room] + 1
                    last[item.room] = item.offset
                    seen[item.room].append(item.offset)
                await anyio.lowlevel.checkpoint()

        started = anyio.current_time()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for number in range(tasks):
                    tg.start_soon(writer, number)
        elapsed = anyio.current_time() - started
    total = sum(len(offsets) for offsets in seen.values())
    assert total >= tasks * rounds
    assert tasks * rounds / elapsed > 200  # batches per second: a realistic rate at least
    for room, offsets in seen.items():
        assert sorted(offsets) == list(range(1, len(offsets) + 1)), room
        position = await env.history.position(room)
        assert position.offset == len(offsets)
        replay = await env.history.replay(room, position.offset - SIZE, position.epoch)
        assert replay.recovered
        expected = list(range(position.offset - SIZE + 1, position.offset + 1))
        assert [offset for offset, _ in replay.frames] == expected


# -- memory only ----------------------------------------------------------------------------


async def test_memory_keeps_the_most_recent_rooms() -> None:
    env = MemoryEnv(HubSettings(history_size=SIZE, history_ttl_seconds=TTL, memory_history_rooms=3))
    history = env.memory
    epochs = {}
    for room in ("public:a", "public:b", "public:c"):
        await append(history, room, "1")
        epochs[room] = (await history.position(room)).epoch
    assert len(history) == 3
    await history.read("public:a", 0, 1)  # a read counts as use: b is now the coldest
    await append(history, "public:d", "1")
    assert len(history) == 3 and history.statistics().rooms_evicted == 1
    assert (await history.position("public:a")).epoch == epochs["public:a"]
    assert (await history.position("public:c")).epoch == epochs["public:c"]
    b = await history.replay("public:b", 1, epochs["public:b"])  # forgotten: a new epoch
    assert not b.recovered and b.position.epoch != epochs["public:b"]
    assert history.statistics().rooms == 3


async def test_memory_forgets_a_room_its_ttl_after_the_last_append() -> None:
    env = MemoryEnv()
    history = env.memory
    await append(history, "public:a", "1")
    epoch = (await history.position("public:a")).epoch
    env.clock.advance(TTL - 1)
    await append(history, "public:a", "2")  # the TTL starts again
    env.clock.advance(TTL - 1)
    await history.read("public:a", 0, 2)  # a read does not extend it
    assert (await history.replay("public:a", 0, epoch)).recovered
    env.clock.advance(1)
    replay = await history.replay("public:a", 2, epoch)
    assert not replay.recovered and replay.position.epoch != epoch
    assert history.statistics().rooms_expired == 1
    # Expired rooms at the cold end are dropped as new rooms arrive, unasked.
    await append(history, "public:old", "1")
    env.clock.advance(TTL)
    await history.position("public:new")
    assert len(history) == 1  # public:a (made again by the replay) expired as well
    assert history.statistics().rooms_expired == 3


async def test_memory_publish_is_a_no_op_and_a_joined_room_holds_no_ring() -> None:
    env = MemoryEnv()
    await env.memory.publish("public:a", b'{"type":"presence"}')
    await env.memory.position("public:a")
    assert env.memory._rooms["public:a"].frames is None  # white-box: no ring before a frame
    assert env.memory.statistics().publishes == 0


# -- the wire format of the fanout ---------------------------------------------------------


def test_splice_offset_and_parse_remote() -> None:
    assert splice_offset(b'{"type":"x"}', 12) == b'{"offset":12,"type":"x"}'
    assert splice_offset(b"{}", 1) == b'{"offset":1}'
    with pytest.raises(ValueError):
        splice_offset(b"", 1)
    payload = remote_payload("n1", "ab12", 7, b'{"offset":7}')
    assert payload == b'n1\nab12\n7\n{"offset":7}'
    assert payload.startswith(echo_prefix("n1"))
    assert parse_remote(payload) == RemoteFrame(
        epoch="ab12", offset=7, frame=b'{"offset":7}', node="n1"
    )
    ephemeral = remote_payload("n1", None, None, b'{"a":"\\n"}')
    assert parse_remote(ephemeral) == RemoteFrame(
        epoch=None, offset=None, frame=b'{"a":"\\n"}', node="n1"
    )
    assert parse_remote(b"n\ne\n1\n{\n}").frame == b"{\n}"  # only three newlines count
    for garbage in (
        b"", b"{}", b"n\ne\n1", b"\ne\n1\n{}", b"n\ne\n\n{}", b"n\n\n1\n{}", b"n\ne\nx\n{}",
        b"n\ne\n01\n{}", b"n\ne\n-1\n{}", b"n\ne\n1\n", b"n\n\xff\n1\n{}",
    ):  # fmt: skip
        with pytest.raises(ValueError):
            parse_remote(garbage)
    with pytest.raises(ValueError):
        remote_payload("n1", "e", None, b"{}")
    for bad in ("", "a\nb"):
        with pytest.raises(ValueError):
            echo_prefix(bad)


# -- Redis only -----------------------------------------------------------------------------


async def redis_now_ms(client: redis.asyncio.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@contextlib.asynccontextmanager
async def running_fanout(link: RedisLink) -> AsyncIterator[RedisFanout]:
    """A fanout reader running on ``link`` (whose loop runs too), connected."""
    fanout = RedisFanout(link, prefix="sw:fanout")
    async with anyio.create_task_group() as tg:
        await tg.start(link.run)
        await tg.start(fanout.run)
        with anyio.fail_after(WAIT_SECONDS):
            await fanout.wait_connected()
        yield fanout
        tg.cancel_scope.cancel()


async def next_payload(subscription: Subscription) -> bytes:
    with anyio.fail_after(WAIT_SECONDS):
        item = await subscription.receive()
    assert not isinstance(item, Gap), item
    return item


@pytest.mark.redis
async def test_redis_publishes_only_when_another_live_node_has_members(redis_url: str) -> None:
    room = "public:p"
    channel = KEYS.channel(room)
    async with (
        RedisLink(redis_url, clock=ManualClock()) as link,
        running_fanout(link) as fanout,
        fanout.subscribe(channel) as everything,
        fanout.subscribe(channel, skip_prefix=echo_prefix(NODE)) as others_only,
    ):
        client: Any = link.client
        a = RedisHistory(link, KEYS, fanout, NODE, SETTINGS)
        b = RedisHistory(link, KEYS, fanout, "node-b", SETTINGS)
        nodes = KEYS.nodes(room)
        await append(a, room, "nobody else")  # no nodes at all
        now = await redis_now_ms(client)
        await client.zadd(nodes, {NODE: now + 60_000})
        await append(a, room, "only me")
        await client.zadd(nodes, {"node-b": now - 1})  # node b's entry has expired
        await append(a, room, "b is dead")
        await a.publish(room, b'{"type":"user_joined_room"}')
        assert a.statistics().publishes_skipped == 4 and a.statistics().publishes == 0
        await fanout.publish(channel, b"marker 1")
        assert await next_payload(everything) == b"marker 1"  # nothing was published before
        assert await next_payload(others_only) == b"marker 1"

        await client.zadd(nodes, {"node-b": now + 60_000})
        appended = await a.append_many([(room, template(room, "4")), (room, template(room, "5"))])
        for item in appended:
            remote = parse_remote(await next_payload(everything))
            assert remote == RemoteFrame(
                epoch=item.epoch, offset=item.offset, frame=item.frame, node=NODE
            )
        await a.publish(room, b'{"type":"user_joined_room"}')
        assert parse_remote(await next_payload(everything)) == RemoteFrame(
            epoch=None, offset=None, frame=b'{"type":"user_joined_room"}', node=NODE
        )
        assert (a.statistics().publishes, a.statistics().publishes_skipped) == (3, 4)
        # Node b sees node a in `nodes`, so it publishes; a's subscription skipping its own
        # frames gets b's only.
        (from_b,) = await b.append_many([(room, template(room, "6"))])
        assert parse_remote(await next_payload(everything)).offset == 6
        remote = parse_remote(await next_payload(others_only))
        assert (remote.node, remote.offset, remote.frame) == ("node-b", 6, from_b.frame)
        await fanout.publish(channel, b"marker 2")
        assert await next_payload(others_only) == b"marker 2"
        assert fanout.statistics().published == 4 + 2  # the markers, and a's and b's frames


@pytest.mark.redis
async def test_redis_keys_expire_with_the_history_ttl(redis_url: str) -> None:
    async with RedisLink(redis_url, clock=ManualClock()) as link:
        env = RedisEnv(link, redis_url)
        await env.history.position("public:joined")
        ttl = await env.client.pttl(KEYS.meta("public:joined"))
        assert TTL * 1000 - 5000 < ttl <= TTL * 1000
        await append(env.history, "public:k", "1")
        for key in (KEYS.meta("public:k"), KEYS.history("public:k")):
            ttl = await env.client.pttl(key)
            assert TTL * 1000 - 5000 < ttl <= TTL * 1000, key
        await env.client.zadd(KEYS.nodes("public:k"), {"node-b": 1})
        await append(env.history, "public:k", "2")
        assert await env.client.pttl(KEYS.nodes("public:k")) == -1  # presence owns that TTL
        entries: Any = await env.client.xrange(KEYS.history("public:k"))
        assert [entry_id for entry_id, _ in entries] == [b"0-1", b"0-2"]
        assert await env.client.xlen(KEYS.history("public:k")) == 2


@pytest.mark.redis
async def test_redis_a_lost_meta_hash_starts_a_new_epoch_and_stream(redis_url: str) -> None:
    async with RedisLink(redis_url, clock=ManualClock()) as link:
        env = RedisEnv(link, redis_url)
        room = "public:m"
        await append(env.history, room, "1", "2", "3")
        old = await env.history.position(room)
        await env.client.delete(KEYS.meta(room))  # e.g. evicted; the stream is left behind
        (item,) = await env.history.append_many([(room, template(room, "new"))])
        assert item.epoch != old.epoch and item.offset == 1
        replay = await env.history.replay(room, 0, item.epoch)
        assert replay.recovered and [text_of(f) for _, f in replay.frames] == ["new"]
        assert not (await env.history.replay(room, 3, old.epoch)).recovered


@pytest.mark.redis
async def test_redis_restarted_empty_gives_rooms_a_new_epoch(redis_server: RedisServer) -> None:
    async with RedisLink(redis_server.url, clock=ManualClock()) as link:
        env = RedisEnv(link, redis_server.url)
        room = "user:7"
        await append(env.history, room, "1", "2", "3")
        old = await env.history.position(room)
        redis_server.restart(empty=True)  # the scripts are gone too: EVALSHA is refused once
        position = await retry_once(env.history.position, room)
        assert position.epoch != old.epoch and position.offset == 0
        replay = await env.history.replay(room, 3, old.epoch)
        assert replay == type(replay)(position=position, frames=[], recovered=False)
        assert not (await env.history.replay(room, 3, None)).recovered  # ahead of the room
        assert await append(env.history, room, "after") == [1]
        replay = await env.history.replay(room, 0, position.epoch)
        assert replay.recovered and [text_of(f) for _, f in replay.frames] == ["after"]


async def retry_once(call: Any, *args: Any) -> Any:
    """``call(*args)``, again once if the pooled connection broke with the restart."""
    try:
        return await call(*args)
    except RedisUnavailable:
        return await call(*args)


@pytest.mark.redis
async def test_redis_killed_mid_way_raises_then_works_after_the_restart(
    redis_server: RedisServer,
) -> None:
    room = "public:k"
    async with RedisLink(redis_server.url, clock=ManualClock()) as link:
        env = RedisEnv(link, redis_server.url)
        history = env.history
        stored: list[int] = []
        failures: list[RedisUnavailable] = []
        killed = anyio.Event()

        async def appender() -> None:
            while True:
                try:
                    stored.extend(await append(history, room, "x"))
                except RedisUnavailable as exc:
                    failures.append(exc)
                    if killed.is_set():
                        return
                await anyio.lowlevel.checkpoint()

        with anyio.fail_after(WAIT_SECONDS):
            async with anyio.create_task_group() as tg:
                tg.start_soon(appender)
                tg.start_soon(appender)
                while len(stored) < 50:
                    await anyio.lowlevel.checkpoint()
                await anyio.to_thread.run_sync(redis_server.kill)
                killed.set()
        assert failures and all(f.operation == "hub history append" for f in failures)
        assert sorted(stored) == list(range(1, len(stored) + 1))
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "position": lambda: history.position(room),
            "replay": lambda: history.replay(room, 0, None),
            "read": lambda: history.read(room, 0, 5),
            "publish": lambda: history.publish(room, b"{}"),
        }
        for name, call in calls.items():
            with pytest.raises(RedisUnavailable) as caught:
                await call()
            assert caught.value.operation == f"hub history {name}"

        redis_server.start()  # same port, no data (no AOF)
        (item,) = await retry_once(history.append_many, [(room, template(room, "back"))])
        assert item.offset == 1
        assert (await history.replay(room, 0, item.epoch)).frames == [(1, item.frame)]
