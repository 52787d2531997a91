"""The hub's Python client: backoff, positions and dedupe, frames, and its transport.

The unit tests need no server. The transport tests run the client against
``FakeHub``, a small ``websockets`` server in this file that speaks the hub's
protocol (welcome, rooms with a history and ``since`` replay, acks, errors,
``reconnect``, closes with the hub's codes), so each client behaviour has a
test that does not depend on the real hub's other parts.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

import actors.socket_hub
from actors.socket_hub import HUB, HUB_SETTINGS, Hub, HubSettings
from actors.socket_hub._client_buffer import EventBuffer
from actors.socket_hub._client_policy import (
    CloseAction,
    close_action,
    close_code_for_http_status,
    full_jitter_delay,
)
from actors.socket_hub._client_rooms import RoomTracker
from actors.socket_hub._client_wire import decode, encode, url_with_token
from actors.socket_hub._frames import (
    Ack,
    AuthRequest,
    ClientFrame,
    HubError,
    JoinRoom,
    LeaveRoom,
    NewMessage,
    Ping,
    Pong,
    PresenceFrame,
    PresenceMember,
    Reconnect,
    RoomJoined,
    RoomLeft,
    SendMessage,
    ServerFrame,
    TaskProgress,
    TokenExpiring,
    UserJoinedRoom,
    Welcome,
)
from actors.socket_hub.client import AuthMode, HubClient, HubClientError
from runtime import NodeContext, Secret, Settings, SystemClock, TokenVerifier
from runtime.testing import FaultProxy, ManualClock, open_app, serve_app

from .nodes_support import serve_nodes
from .nodes_support import token as nodes_token

WAIT = 10.0  # generous: the machine is shared


# -- unit: backoff and close codes ------------------------------------------------------------


def test_full_jitter_doubles_the_ceiling_up_to_the_cap_and_draws_below_it() -> None:
    top = [full_jitter_delay(n, base=0.2, cap=10.0, rng=lambda: 1.0) for n in range(9)]
    assert top == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])
    draws = iter([0.5, 0.25, 0.0, 0.9])
    delays = [full_jitter_delay(n, base=0.2, cap=10.0, rng=lambda: next(draws)) for n in range(4)]
    assert delays == pytest.approx([0.1, 0.1, 0.0, 1.44])
    assert full_jitter_delay(10_000, base=0.2, cap=10.0, rng=lambda: 0.5) == 5.0
    for bad in ({"base": 0.0, "cap": 1.0}, {"base": 1.0, "cap": float("inf")}):
        with pytest.raises(ValueError, match="finite numbers > 0"):
            full_jitter_delay(0, rng=lambda: 0.5, **bad)
    with pytest.raises(ValueError, match="attempt is -1"):
        full_jitter_delay(-1, base=0.2, cap=1.0, rng=lambda: 0.5)


def test_close_codes_map_to_what_the_client_does() -> None:
    assert close_action(1000) is CloseAction.STOP
    for code in (1001, 1006, 1011, 1012, 1013, 4008, 4029):
        assert close_action(code) is CloseAction.RECONNECT, code
    assert close_action(4001) is CloseAction.REAUTHENTICATE
    for code in (1008, 1009, 4003, 4400, 4999):
        assert close_action(code) is CloseAction.FATAL, code
    statuses = {401: 4001, 403: 4003, 429: 4029, 503: 1013, 502: 1011, 404: 1008}
    assert {status: close_code_for_http_status(status) for status in statuses} == statuses


# -- unit: positions, dedupe, replay order ----------------------------------------------------


def message(room: str, offset: int, text: str = "") -> NewMessage:
    return NewMessage(
        id=f"{room}-{offset}", room=room, offset=offset, user_id="u", message=text or str(offset),
        ts=1.0,
    )  # fmt: skip


def offsets(frames: list[NewMessage | TaskProgress]) -> list[int]:
    return [frame.offset for frame in frames]


def test_tracker_drops_offsets_seen_and_counts_gaps() -> None:
    tracker = RoomTracker()
    assert offsets(tracker.accept(message("public:a", 5))) == [5]  # untracked room: as is
    assert tracker.positions == {}
    tracker.joined(RoomJoined(room="public:a", epoch="e1", offset=3))
    delivered = [f for n in (4, 5, 4, 3, 7, 7, 8) for f in tracker.accept(message("public:a", n))]
    assert offsets(delivered) == [4, 5, 7, 8]
    assert (tracker.duplicates, tracker.gaps) == (3, 1)
    assert tracker.positions == {"public:a": ("e1", 8)}
    tracker.forget("public:a")
    assert tracker.position("public:a") is None


def test_tracker_holds_live_frames_that_overtake_a_replay_and_releases_them_in_order() -> None:
    tracker = RoomTracker()
    tracker.set_position("public:a", "e1", 10)
    tracker.begin_recovery("public:a")
    assert tracker.recovering("public:a")
    seen = [f for n in (14, 11, 12, 13, 15) for f in tracker.accept(message("public:a", n))]
    assert offsets(seen) == [11, 12, 13]  # 14 and 15 skipped ahead: held until the answer
    released = tracker.joined(RoomJoined(room="public:a", epoch="e1", offset=13, recovered=True))
    assert offsets(released) == [14, 15]
    assert not tracker.recovering("public:a")
    assert tracker.positions == {"public:a": ("e1", 15)}
    assert (tracker.duplicates, tracker.gaps) == (0, 0)


def test_tracker_takes_the_servers_offset_when_the_epoch_changed_or_recovery_failed() -> None:
    tracker = RoomTracker()
    tracker.set_position("public:a", "e1", 50)
    tracker.begin_recovery("public:a")
    assert tracker.joined(RoomJoined(room="public:a", epoch="e2", offset=4, recovered=False)) == []
    assert tracker.positions == {"public:a": ("e2", 4)}
    assert offsets(tracker.accept(message("public:a", 5))) == [5]  # the new epoch's offsets
    tracker.set_position("public:b", "e1", 10)
    tracker.joined(RoomJoined(room="public:b", epoch="e1", offset=90, recovered=False))
    assert tracker.position("public:b") == ("e1", 90)  # trimmed: resume after the join


def test_tracker_releases_held_frames_when_a_rejoin_is_refused_or_forgets_them_on_a_drop() -> None:
    tracker = RoomTracker()
    tracker.set_position("public:a", "e1", 1)
    tracker.begin_recovery("public:a")
    assert tracker.accept(message("public:a", 4)) == []
    assert tracker.accept(message("public:a", 3)) == []
    assert offsets(tracker.abandon_recovery("public:a")) == [3, 4]
    tracker.begin_recovery("public:a")
    assert tracker.accept(message("public:a", 9)) == []
    tracker.drop_recoveries()
    assert not tracker.recovering("public:a")
    assert tracker.position("public:a") == ("e1", 4)  # the next rejoin replays 5.. again


# -- unit: frames and the events buffer --------------------------------------------------------


def test_server_frames_decode_to_their_types_and_client_frames_omit_defaults() -> None:
    samples: dict[bytes, type[ServerFrame]] = {
        b'{"type":"welcome","user_id":"7","room":"user:7","epoch":"e","offset":0,'
        b'"expires_at":1.5,"connection_id":"c"}': Welcome,
        b'{"type":"ack","ref":3,"id":"m","offset":4}': Ack,
        b'{"type":"error","code":"forbidden","message":"no","ref":"x"}': HubError,
        b'{"type":"room_joined","room":"public:a","epoch":"e","offset":2,"recovered":false}': (
            RoomJoined
        ),
        b'{"type":"new_message","id":"m","room":"public:a","offset":3,"user_id":"7",'
        b'"message":"hi","ts":2.0}': NewMessage,
        b'{"type":"task_progress","task_id":"t","room":"user:7","offset":9,"percentage":50,'
        b'"ts":3.0}': TaskProgress,
        b'{"type":"presence","room":"public:a","members":[{"user_id":"7","connections":2}]}': (
            PresenceFrame
        ),
        b'{"type":"token_expiring","expires_at":9.0}': TokenExpiring,
        b'{"type":"reconnect","after_ms":250,"positions":{"public:a":["e",3]}}': Reconnect,
        b'{"type":"pong","ref":1,"ts":4.0}': Pong,
    }
    for data, kind in samples.items():
        assert type(decode(data)) is kind, data
    reconnect = decode(samples_key(samples, Reconnect))
    assert isinstance(reconnect, Reconnect) and reconnect.positions == {"public:a": ("e", 3)}
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'surprise'"):
        decode(b'{"type":"surprise"}')
    assert (
        encode(JoinRoom(room="public:a", ref=1))
        == b'{"type":"join_room","room":"public:a","ref":1}'
    )
    assert encode(SendMessage(room="public:a", message="hi", ref=2)) == (
        b'{"type":"send_message","room":"public:a","message":"hi","ref":2}'
    )


def samples_key(samples: dict[bytes, type[ServerFrame]], kind: type[ServerFrame]) -> bytes:
    return next(data for data, found in samples.items() if found is kind)


def test_the_token_goes_into_the_query_replacing_one_there() -> None:
    assert url_with_token("ws://h:1/ws", "a.b.c") == "ws://h:1/ws?token=a.b.c"
    assert url_with_token("ws://h:1/ws?x=1&token=old", "n+w") == "ws://h:1/ws?x=1&token=n%2Bw"


async def test_a_full_buffer_makes_the_reader_wait_until_the_application_takes_a_frame() -> None:
    buffer: EventBuffer[int] = EventBuffer(2)
    await buffer.put(1)
    await buffer.put(2)
    third = asyncio.create_task(buffer.put(3))
    for _ in range(5):
        await asyncio.sleep(0)  # checkpoints, not time: the put has every chance to finish
    assert not third.done() and buffer.paused and buffer.pauses == 1
    assert await buffer.get() == 1
    await asyncio.wait_for(third, WAIT)
    assert not buffer.paused and len(buffer) == 2
    buffer.close()
    assert [await buffer.get(), await buffer.get(), await buffer.get()] == [2, 3, None]
    with pytest.raises(ValueError, match="at least 1"):
        EventBuffer(0)


# -- transport: a fake hub that speaks the protocol --------------------------------------------

CLIENT_FRAMES: msgspec.json.Decoder[ClientFrame] = msgspec.json.Decoder(ClientFrame)
ENCODER = msgspec.json.Encoder()


@dataclass
class Room:
    """One room of the fake hub: an epoch, its history and who is in it."""

    epoch: str = "e1"
    history: list[NewMessage] = field(default_factory=list)
    members: set[ServerConnection] = field(default_factory=set)

    @property
    def offset(self) -> int:
        return self.history[-1].offset if self.history else 0


@dataclass
class FakeHub:
    """A protocol-speaking ``websockets`` server; ``rooms`` may be shared to play two nodes."""

    tokens: dict[str, str]
    rooms: dict[str, Room] = field(default_factory=dict)
    replay_overlap: int = 0  # replay this many frames before ``since`` too (a sloppy node)
    refuse: tuple[int, str] | None = None
    url: str = ""
    tokens_seen: list[str] = field(default_factory=list)
    auth_frames: list[str] = field(default_factory=list)
    joins: list[JoinRoom] = field(default_factory=list)
    connections: list[ServerConnection] = field(default_factory=list)
    _server: Server | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def room(self, name: str) -> Room:
        return self.rooms.setdefault(name, Room())

    async def post(self, room: str, text: str, user_id: str = "system") -> NewMessage:
        found = self.room(room)
        frame = NewMessage(
            id=f"m{next(self._ids)}", room=room, offset=found.offset + 1, user_id=user_id,
            message=text, ts=1.0,
        )  # fmt: skip
        found.history.append(frame)
        data = ENCODER.encode(frame)
        for member in list(found.members):
            try:
                await member.send(data, text=True)
            except ConnectionClosed:
                found.members.discard(member)
        return frame

    def drop_all(self) -> None:
        """Drop every connection without a close frame (a network failure)."""
        for connection in self.connections:
            connection.transport.abort()

    async def broadcast(self, frame: msgspec.Struct) -> None:
        for connection in self.connections:
            try:
                await connection.send(ENCODER.encode(frame), text=True)
            except ConnectionClosed:
                pass

    async def close_all(self, code: int, reason: str) -> None:
        for connection in self.connections:
            await connection.close(code, reason)

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        header = ws.request.headers.get("Authorization", "")
        token = query["token"][0] if "token" in query else header.removeprefix("Bearer ") or None
        if token is None:
            first = CLIENT_FRAMES.decode(await ws.recv(decode=False))
            assert isinstance(first, AuthRequest)
            token = first.token
        self.tokens_seen.append(token)
        if token not in self.tokens:
            await ws.send(ENCODER.encode(HubError(code="invalid_token", message="bad")), text=True)
            await ws.close(4001, "invalid_token")
            return
        if self.refuse is not None:
            await ws.close(*self.refuse)
            return
        user = self.tokens[token]
        personal = self.room(f"user:{user}")
        personal.members.add(ws)
        self.connections.append(ws)
        welcome = Welcome(
            user_id=user, room=f"user:{user}", epoch=personal.epoch, offset=personal.offset,
            expires_at=2e9, connection_id=f"c{len(self.connections)}",
        )  # fmt: skip
        await ws.send(ENCODER.encode(welcome), text=True)
        try:
            async for data in ws:
                assert isinstance(data, str)
                await self.answer(ws, user, CLIENT_FRAMES.decode(data))
        except ConnectionClosed:
            pass
        finally:
            for room in self.rooms.values():
                room.members.discard(ws)

    async def answer(self, ws: ServerConnection, user: str, frame: ClientFrame) -> None:
        reply: msgspec.Struct
        match frame:
            case JoinRoom(room=name, since=since, epoch=epoch, ref=ref):
                self.joins.append(frame)
                if name.startswith("admin:"):
                    reply = HubError(code="forbidden", message=f"{name} needs admin", ref=ref)
                else:
                    room = self.room(name)
                    recovered: bool | None = None
                    if since is not None:
                        recovered = epoch == room.epoch
                        start = since - self.replay_overlap if recovered else room.offset
                        for old in room.history:
                            if old.offset > start:
                                await ws.send(ENCODER.encode(old), text=True)
                    room.members.add(ws)
                    reply = RoomJoined(
                        room=name, epoch=room.epoch, offset=room.offset, recovered=recovered,
                        ref=ref,
                    )  # fmt: skip
                    await ws.send(ENCODER.encode(reply), text=True)
                    member = PresenceMember(user_id=user, connections=1)
                    reply = PresenceFrame(room=name, members=[member])
            case LeaveRoom(room=name, ref=ref):
                self.room(name).members.discard(ws)
                reply = RoomLeft(room=name, ref=ref)
            case SendMessage(room=name, message=text, ref=ref):
                if ws not in self.room(name).members:
                    reply = HubError(code="not_in_room", message=f"join {name} first", ref=ref)
                else:
                    posted = await self.post(name, text, user_id=user)
                    reply = Ack(ref=ref, id=posted.id, offset=posted.offset)
            case Ping(ref=ref):
                reply = Pong(ref=ref, ts=1.0)
            case AuthRequest(token=token, ref=ref):
                self.auth_frames.append(token)
                reply = Ack(ref=ref)
        await ws.send(ENCODER.encode(reply), text=True)

    @asynccontextmanager
    async def running(self, port: int = 0) -> AsyncIterator[FakeHub]:
        async with serve(self.handler, "127.0.0.1", port, compression=None) as server:
            self._server = server
            bound = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{bound}/ws"
            try:
                yield self
            finally:
                self.drop_all()
                self.connections.clear()


TOKENS = {"tok-ann": "ann", "tok-bob": "bob"}


@asynccontextmanager
async def fake_hub(**options: object) -> AsyncIterator[FakeHub]:
    async with FakeHub(dict(TOKENS), **options).running() as hub:  # type: ignore[arg-type]
        yield hub


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition`` holds, within ``WAIT`` seconds.

    Polls on purpose (noqa): the conditions are a real socket's progress in another task
    (a reconnect, a frame read), not time passing; every wait on time uses the clock.
    """
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    assert condition(), what


async def texts(client: HubClient, count: int, room: str) -> list[str]:
    """The next ``count`` messages of ``room``, within ``WAIT`` real seconds whatever the clock."""
    got = []
    async with asyncio.timeout(WAIT):
        for _ in range(count):
            frame = await client.next(NewMessage, timeout=WAIT, where=lambda m: m.room == room)
            got.append(frame.message)
    return got


async def collect(client: HubClient, last: Callable[[ServerFrame], bool]) -> list[ServerFrame]:
    """Every frame ``client`` delivers up to and including the first that ``last`` accepts."""
    seen: list[ServerFrame] = []
    async with asyncio.timeout(WAIT):
        async for frame in client.events():
            seen.append(frame)
            if last(frame):
                return seen
    raise AssertionError(f"the client stopped before the frame awaited; it saw {seen}")


@pytest.mark.parametrize("auth", ["query", "header", "frame"])
async def test_the_client_authenticates_each_way_and_gets_its_welcome(auth: str) -> None:
    async with fake_hub() as hub, HubClient(hub.url, "tok-ann", auth=auth) as client:  # type: ignore[arg-type]
        assert client.welcome is not None and client.welcome.user_id == "ann"
        assert hub.tokens_seen == ["tok-ann"]
        assert client.positions == {"user:ann": ("e1", 0)}
        assert await client.ping() >= 0 and client.last_round_trip is not None
    assert client.closed and client.error is None


async def test_join_send_and_receive_between_two_clients_with_acks_and_errors() -> None:
    async with (
        fake_hub() as hub,
        HubClient(hub.url, "tok-ann") as ann,
        HubClient(hub.url, "tok-bob") as bob,
    ):
        joined = await ann.join("public:lobby")
        assert (joined.room, joined.epoch, joined.offset, joined.recovered) == (
            "public:lobby", "e1", 0, None
        )  # fmt: skip
        await bob.join("public:lobby")
        ack = await bob.send("public:lobby", "hello")
        assert ack.offset == 1 and ack.id is not None
        got = await ann.next(NewMessage, timeout=WAIT)
        assert (got.message, got.user_id, got.offset) == ("hello", "bob", 1)
        assert ann.positions["public:lobby"] == ("e1", 1)
        with pytest.raises(HubClientError) as refused:
            await ann.send("public:elsewhere", "x")
        assert refused.value.code == "not_in_room" and "join public:elsewhere" in str(refused.value)
        with pytest.raises(HubClientError, match="forbidden: admin:ops needs admin"):
            await ann.join("admin:ops")
        assert ann.rooms == ["public:lobby"]
        await ann.leave("public:lobby")
        assert ann.rooms == [] and "public:lobby" not in ann.positions
        assert ann.statistics().frames_received >= 4


async def test_a_dropped_connection_resumes_every_room_without_loss_or_duplicates() -> None:
    async with (
        fake_hub(replay_overlap=2) as hub,
        HubClient(hub.url, "tok-ann", rng=lambda: 0.0) as ann,
    ):
        await ann.join("public:a")
        await ann.join("project:b")
        for n in range(3):
            await hub.post("public:a", f"a{n}")
        assert await texts(ann, 3, "public:a") == ["a0", "a1", "a2"]
        hub.drop_all()
        for n in range(3, 6):  # while the client is away
            await hub.post("public:a", f"a{n}")
            await hub.post("project:b", f"b{n}")
        await until(lambda: ann.statistics().reconnects == 1, "reconnected")
        await hub.post("public:a", "a6")  # live, after the replay
        assert await texts(ann, 4, "public:a") == ["a3", "a4", "a5", "a6"]
        assert ann.positions["public:a"] == ("e1", 7)
        await until(lambda: ann.positions["project:b"] == ("e1", 3), "room b resumed")
        rejoins = [(j.room, j.since, j.epoch) for j in hub.joins if j.since is not None]
        assert sorted(rejoins) == [("project:b", 0, "e1"), ("public:a", 3, "e1")]
        stats = ann.statistics()
        assert stats.duplicates_dropped == 2  # the sloppy replay's overlap in public:a
        assert (stats.connects, stats.gaps) == (2, 0)
        assert ann.close_code == 1006


class RecordingClock(ManualClock):
    """A manual clock that remembers every sleep asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


async def test_a_reconnect_frame_is_honoured_after_its_delay_on_the_next_node() -> None:
    clock = RecordingClock()
    shared: dict[str, Room] = {}
    async with (
        FakeHub(dict(TOKENS), rooms=shared).running() as old,
        FakeHub(dict(TOKENS), rooms=shared).running() as new,
        HubClient([old.url, new.url], "tok-ann", clock=clock, heartbeat_seconds=None) as ann,
    ):
        await ann.join("public:a")
        await old.post("public:a", "before")
        await old.broadcast(Reconnect(after_ms=1500, positions={"public:a": ("e1", 1)}))
        assert await texts(ann, 1, "public:a") == ["before"]
        notice = await ann.next(Reconnect, timeout=WAIT)
        assert notice.after_ms == 1500 and ann.url == new.url
        await until(lambda: 1.5 in clock.sleeps, "waits after_ms")
        shared["public:a"].members.clear()  # the old node stopped delivering
        await new.post("public:a", "while away")
        assert new.connections == [] and len(old.connections) == 1  # not before its time
        clock.advance(1.5)
        await until(lambda: len(new.connections) == 1, "moved to the next node")
        assert await texts(ann, 1, "public:a") == ["while away"]
        assert [(j.room, j.since) for j in new.joins] == [("public:a", 1)]
        assert ann.statistics().reconnects == 1 and ann.close_code == 1000


async def test_fatal_closes_end_the_client_with_an_error_naming_the_code() -> None:
    async with fake_hub() as hub:
        client = HubClient(hub.url, "tok-ann", heartbeat_seconds=None)
        await client.connect()
        await client.join("public:a")
        await hub.close_all(4003, "forbidden")
        with pytest.raises(HubClientError) as stopped:
            async for _ in client.events():
                pass
        assert stopped.value.close_code == 4003 and stopped.value.code == "forbidden"
        assert "closed the connection with 4003 (forbidden)" in str(stopped.value)
        assert client.closed and client.close_code == 4003 and client.error is stopped.value
        with pytest.raises(HubClientError, match="4003"):
            await client.send("public:a", "too late")
        await client.aclose()
        with pytest.raises(HubClientError) as refused:
            await HubClient(hub.url, "tok-forged").connect()
        assert refused.value.close_code == 4001
        assert str(refused.value) == (
            "invalid_token: the hub closed the connection with 4001 (invalid_token): "
            "invalid_token: bad"
        )


async def test_4001_with_a_token_provider_reconnects_with_a_fresh_token() -> None:
    fresh = iter(["tok-ann", "tok-ann2"])

    async def provider() -> str:
        return next(fresh)

    async with fake_hub() as hub:
        hub.tokens["tok-ann2"] = "ann"
        async with HubClient(hub.url, token_provider=provider, rng=lambda: 0.0) as ann:
            await ann.join("public:a")
            await hub.close_all(4001, "token_expired")
            await until(lambda: ann.statistics().reconnects == 1, "reconnected")
            assert hub.tokens_seen == ["tok-ann", "tok-ann2"]
            await until(lambda: len(hub.joins) == 2, "rejoined")
            assert not ann.closed and ann.close_code == 4001
            assert [(j.room, j.since) for j in hub.joins] == [("public:a", None), ("public:a", 0)]


async def test_token_expiring_makes_a_client_with_a_provider_send_auth_by_itself() -> None:
    async def provider() -> str:
        return "tok-new"

    async with fake_hub() as hub:
        hub.tokens["tok-new"] = "ann"
        async with HubClient(hub.url, "tok-ann", token_provider=provider) as ann:
            await hub.broadcast(TokenExpiring(expires_at=5.0))
            assert (await ann.next(TokenExpiring, timeout=WAIT)).expires_at == 5.0
            await until(lambda: ann.statistics().token_refreshes == 1, "refreshed")
            assert hub.auth_frames == ["tok-new"]
            await ann.refresh("tok-ann")
            assert hub.auth_frames == ["tok-new", "tok-ann"]


def sleeps_reach(clock: RecordingClock, count: int) -> Callable[[], bool]:
    return lambda: len(clock.sleeps) == count


async def test_reconnect_attempts_back_off_with_full_jitter_while_the_hub_is_down() -> None:
    clock = RecordingClock()
    hub = FakeHub(dict(TOKENS))
    async with hub.running():
        port = int(hub.url.rsplit(":", 1)[1].split("/")[0])
        ann = HubClient(hub.url, "tok-ann", clock=clock, rng=lambda: 0.5, heartbeat_seconds=None)
        await ann.connect()
        await ann.join("public:a")
    try:
        for expected in ([0.1], [0.1, 0.2], [0.1, 0.2, 0.4]):  # rng 0.5 of 0.2, 0.4, 0.8
            await until(sleeps_reach(clock, len(expected)), f"{expected} waited")
            assert clock.sleeps == pytest.approx(expected)
            clock.advance(clock.sleeps[-1])
        await until(lambda: ann.statistics().failed_attempts == 3, "three attempts failed")
        await hub.post("public:a", "missed")
        async with hub.running(port):
            clock.advance(0.8)
            assert await texts(ann, 1, "public:a") == ["missed"]
        assert ann.statistics().reconnects == 1
    finally:
        await ann.aclose()


async def test_a_client_that_gives_up_after_max_attempts_says_so() -> None:
    hub = FakeHub(dict(TOKENS))
    async with hub.running():
        ann = HubClient(hub.url, "tok-ann", max_attempts=2, rng=lambda: 0.0)
        await ann.connect()
    with pytest.raises(HubClientError) as stopped:
        await ann.next(NewMessage, timeout=WAIT)
    assert stopped.value.code == "gave_up" and "2 reconnect attempts failed" in str(stopped.value)
    assert ann.statistics().failed_attempts == 2
    await ann.aclose()


async def test_a_lost_history_arrives_as_room_joined_not_recovered() -> None:
    async with fake_hub() as hub, HubClient(hub.url, "tok-ann", rng=lambda: 0.0) as ann:
        await ann.join("public:a")
        await hub.post("public:a", "old")
        await ann.next(NewMessage, timeout=WAIT)
        hub.drop_all()
        hub.rooms["public:a"] = Room(epoch="e2")  # e.g. Redis restarted empty
        lost = await ann.next(RoomJoined, timeout=WAIT)
        assert (lost.room, lost.epoch, lost.recovered) == ("public:a", "e2", False)
        assert ann.positions["public:a"] == ("e2", 0)
        await hub.post("public:a", "new")
        assert await texts(ann, 1, "public:a") == ["new"]


async def test_a_reader_that_stops_reading_pauses_the_socket_and_loses_nothing() -> None:
    async with (
        fake_hub() as hub,
        HubClient(hub.url, "tok-ann", buffer_size=4, heartbeat_seconds=None) as ann,
    ):
        await ann.join("public:a")
        await ann.next(PresenceFrame, timeout=WAIT)
        for n in range(50):
            await hub.post("public:a", f"m{n}")
        await until(lambda: ann.statistics().buffer_pauses >= 1, "the reader paused")
        assert ann.statistics().frames_received < 50  # it stopped reading the socket
        assert await texts(ann, 50, "public:a") == [f"m{n}" for n in range(50)]


async def test_a_slow_consumer_close_recovers_what_it_had_not_read_from_history() -> None:
    async with fake_hub() as hub, HubClient(hub.url, "tok-ann", rng=lambda: 0.0) as ann:
        await ann.join("public:a")
        for n in range(3):
            await hub.post("public:a", f"m{n}")
        await until(lambda: ann.statistics().frames_delivered >= 4, "delivered")
        await hub.close_all(4008, "slow_consumer")
        for n in range(3, 6):
            await hub.post("public:a", f"m{n}")
        assert await texts(ann, 6, "public:a") == [f"m{n}" for n in range(6)]
        assert ann.close_code == 4008 and not ann.closed


async def test_next_times_out_on_the_clients_clock_and_close_ends_events() -> None:
    clock = ManualClock()
    async with fake_hub() as hub:
        ann = HubClient(hub.url, "tok-ann", clock=clock, heartbeat_seconds=None)
        await ann.connect()
        waiting = asyncio.create_task(ann.next(NewMessage, timeout=2.0))
        await until(lambda: clock.pending_timers >= 1, "next() waits on the clock")
        clock.advance(2.0)
        with pytest.raises(HubClientError, match="timeout: no NewMessage frame within 2s"):
            await waiting
        await ann.aclose()
        assert [frame async for frame in ann.events()] == []
        with pytest.raises(HubClientError, match="closed"):
            await ann.ping()


async def test_closing_a_client_whose_application_stopped_reading_is_prompt() -> None:
    async with fake_hub() as hub:
        ann = HubClient(hub.url, "tok-ann", buffer_size=1, connect_timeout=60.0)
        await ann.connect()
        await ann.join("public:a")
        for n in range(200):
            await hub.post("public:a", f"m{n}")
        await until(lambda: ann.statistics().buffer_pauses >= 1, "the reader paused")
        async with asyncio.timeout(WAIT):  # not the 60 s close timeout
            await ann.aclose()
        assert ann.closed and ann.error is None


# -- integration: the real hub on Hypercorn over TCP -------------------------------------------

SECRET = "hub-client-test-secret-" + "x" * 24
VERIFIER = TokenVerifier(SECRET, clock=SystemClock())


def hub_token(user: str, **claims: Any) -> str:
    return VERIFIER.issue(user, name=user.title(), **claims)


@dataclass
class LiveHub:
    """One in-memory hub node served by Hypercorn: its ``/ws`` URL, facade and context."""

    url: str
    hub: Hub
    context: NodeContext


@asynccontextmanager
async def live_hub(*, clock: ManualClock | None = None, **settings: Any) -> AsyncIterator[LiveHub]:
    sections = {HUB_SETTINGS: HubSettings(**settings)}
    async with (
        open_app(
            Settings(jwt_secret=Secret(SECRET)),
            compose=actors.socket_hub.install,
            sections=sections,
            clock=clock,
        ) as (app, context),
        serve_app(app) as url,
    ):
        yield LiveHub(url.replace("http", "ws") + "/ws", context.get(HUB), context)


@pytest.mark.e2e
@pytest.mark.parametrize("auth", ["query", "header", "frame"])
async def test_the_real_hub_accepts_each_way_of_authenticating(auth: AuthMode) -> None:
    async with live_hub() as node, HubClient(node.url, hub_token("ann"), auth=auth) as ann:
        assert ann.welcome is not None
        assert (ann.welcome.user_id, ann.welcome.user_name, ann.welcome.room) == (
            "ann", "Ann", "user:ann"
        )  # fmt: skip
        assert list(ann.positions) == ["user:ann"]
        assert await ann.ping() >= 0
        await node.hub.send_to_user("ann", "for you")
        mine = await ann.next(NewMessage, timeout=WAIT)
        assert (mine.room, mine.message, mine.kind) == ("user:ann", "for you", "notification")
        assert ann.positions["user:ann"][1] == mine.offset


@pytest.mark.e2e
async def test_the_real_hub_refuses_a_forged_token_with_4001_and_no_reconnect() -> None:
    async with live_hub() as node:
        forged = TokenVerifier("another-secret-of-32-bytes-or-more!!", clock=SystemClock()).issue(
            "ann"
        )
        ways: list[AuthMode] = ["query", "frame"]
        for auth in ways:
            with pytest.raises(HubClientError) as refused:
                await HubClient(node.url, forged, auth=auth).connect()
            assert refused.value.close_code == 4001, auth


@pytest.mark.e2e
async def test_the_real_hub_joins_sends_acks_delivers_and_refuses() -> None:
    async with (
        live_hub() as node,
        HubClient(node.url, hub_token("ann")) as ann,
        HubClient(node.url, hub_token("bob")) as bob,
    ):
        joined = await ann.join("public:lobby")
        assert (joined.room, joined.recovered) == ("public:lobby", None)
        presence = await ann.next(PresenceFrame, timeout=WAIT)
        assert [m.user_id for m in presence.members] == ["ann"]
        await bob.join("public:lobby")
        arrived = await ann.next(UserJoinedRoom, timeout=WAIT)
        assert arrived.user_id == "bob"
        ack = await bob.send("public:lobby", "hello")
        assert ack.offset == joined.offset + 1 and ack.id
        got = await ann.next(NewMessage, timeout=WAIT, where=lambda m: m.room == "public:lobby")
        assert (got.message, got.user_id, got.user_name, got.offset, got.id) == (
            "hello", "bob", "Bob", ack.offset, ack.id
        )  # fmt: skip
        with pytest.raises(HubClientError) as refused:
            await ann.send("public:elsewhere", "x")
        assert refused.value.code == "not_in_room"
        with pytest.raises(HubClientError) as forbidden:
            await ann.join("admin:ops")
        assert forbidden.value.code == "forbidden"
        with pytest.raises(HubClientError) as personal:
            await ann.leave("user:ann")
        assert personal.value.code == "personal_room"
        await ann.refresh(hub_token("ann"))
        assert ann.statistics().token_refreshes == 1
        await ann.leave("public:lobby")
        assert ann.rooms == [] and "public:lobby" not in ann.positions


@pytest.mark.e2e
async def test_a_real_drop_while_another_client_sends_resumes_every_message_once_in_order() -> None:
    async with live_hub() as node:
        host, port = urlsplit(node.url).hostname, urlsplit(node.url).port
        assert host is not None and port is not None
        async with (
            FaultProxy(host, port) as proxy,
            HubClient(
                proxy.url_for("ws", "/ws"),
                hub_token("ann"),
                backoff_base=0.01,
                backoff_max=0.2,
                rng=lambda: 0.5,
            ) as ann,
            HubClient(node.url, hub_token("bob")) as bob,
        ):
            await ann.join("public:chat")
            await bob.join("public:chat")
            for n in range(5):
                await bob.send("public:chat", f"m{n}")
            assert await texts(ann, 5, "public:chat") == [f"m{n}" for n in range(5)]
            proxy.refuse()  # ann stays away until the heal
            assert proxy.cut(reset=True) == 1
            for n in range(5, 15):
                await bob.send("public:chat", f"m{n}")
            await node.hub.task_progress("ann", "job-1", 50.0, stage="halfway")
            await until(lambda: ann.statistics().failed_attempts >= 1, "ann tried and failed")
            proxy.heal()
            seen = await collect(ann, lambda f: isinstance(f, NewMessage) and f.message == "m14")
            for n in range(15, 20):  # live again
                await bob.send("public:chat", f"m{n}")
            seen += await collect(ann, lambda f: isinstance(f, NewMessage) and f.message == "m19")
            chat = [
                f.message for f in seen if isinstance(f, NewMessage) and f.room == "public:chat"
            ]
            assert chat == [f"m{n}" for n in range(5, 20)]
            progress = [f for f in seen if isinstance(f, TaskProgress)]
            assert [(p.task_id, p.percentage, p.stage) for p in progress] == [
                ("job-1", 50.0, "halfway")
            ]
            stats = ann.statistics()
            assert stats.reconnects == 1 and stats.gaps == 0 and stats.failed_attempts >= 1
            assert ann.close_code == 1006
            served = await node.hub.statistics()
            assert served.replays == 2 and served.replays_unrecovered == 0  # chat + personal
            last = (await bob.send("public:chat", "x")).offset
            assert last is not None and ann.positions["public:chat"][1] == last - 1


@pytest.mark.e2e
async def test_the_real_hubs_reconnect_frame_is_honoured_and_the_client_moves_on() -> None:
    async with (
        live_hub(reconnect_max_ms=100) as leaving,
        live_hub() as staying,
        HubClient([leaving.url, staying.url], hub_token("ann"), rng=lambda: 0.0) as ann,
    ):
        await ann.join("public:chat")
        await leaving.hub.send_to_room("public:chat", "before")
        assert await texts(ann, 1, "public:chat") == ["before"]
        leaving.context.stopping.set()
        notice = await ann.next(Reconnect, timeout=WAIT)
        assert 0 <= notice.after_ms <= 100
        assert notice.positions["public:chat"] == ann.positions["public:chat"]
        # The other node keeps its own (memory) history: a new epoch, said plainly per room.
        seen = await collect(ann, lambda f: isinstance(f, RoomJoined) and f.room == "public:chat")
        fresh = sorted((f.room, f.recovered) for f in seen if isinstance(f, RoomJoined))
        assert fresh == [("public:chat", False), ("user:ann", False)]
        assert ann.url == staying.url and ann.close_code == 1001
        assert ann.close_reason == "node_stopping"
        await staying.hub.send_to_room("public:chat", "after")
        assert await texts(ann, 1, "public:chat") == ["after"]
        assert ann.statistics().reconnects == 1


async def test_a_request_timing_out_behind_a_full_buffer_says_the_application_must_read() -> None:
    clock = ManualClock()
    async with fake_hub() as hub:
        ann = HubClient(hub.url, "tok-ann", buffer_size=2, clock=clock, heartbeat_seconds=None)
        await ann.connect()
        await ann.join("public:a")
        for n in range(5):
            await hub.post("public:a", f"m{n}")
        await until(lambda: ann.statistics().buffer_pauses == 1, "the reader paused")
        sending = asyncio.create_task(ann.send("public:a", "stuck"))
        await until(lambda: clock.pending_timers >= 1, "the send waits for its answer")
        clock.advance(10.0)
        with pytest.raises(HubClientError, match=r"the events buffer is full \(2 frames\)"):
            await sending
        await ann.aclose()


@pytest.mark.e2e
async def test_on_the_real_hub_a_provider_refreshes_before_expiry_and_no_provider_means_4001() -> (
    None
):
    clock = ManualClock(wall_start=time.time())
    verifier = TokenVerifier(SECRET, clock=clock)
    issued: list[str] = []

    async def provider() -> str:
        issued.append(verifier.issue("ann", ttl_seconds=120))
        return issued[-1]

    async with (
        live_hub(clock=clock, idle_timeout_seconds=86_400) as node,
        HubClient(node.url, token_provider=provider, clock=clock, heartbeat_seconds=None) as ann,
        HubClient(
            node.url, verifier.issue("bob", ttl_seconds=120), clock=clock, heartbeat_seconds=None
        ) as bob,
    ):
        clock.advance(61)  # the tokens expire within the hub's 60 s warning
        warned = await ann.next(TokenExpiring, timeout=WAIT)
        assert warned.expires_at == pytest.approx(clock.time() + 59, abs=1.5)
        await until(lambda: ann.statistics().token_refreshes == 1, "ann refreshed by itself")
        assert len(issued) == 2
        assert (await bob.next(TokenExpiring, timeout=WAIT)).expires_at == warned.expires_at
        clock.advance(70)  # past the first tokens' expiry
        with pytest.raises(HubClientError) as expired:
            await bob.next(NewMessage, timeout=WAIT)
        assert (expired.value.close_code, expired.value.code) == (4001, "token_expired")
        await node.hub.send_to_user("ann", "still here")
        assert (await ann.next(NewMessage, timeout=WAIT)).message == "still here"
        assert ann.statistics().reconnects == 0 and not ann.closed


@pytest.mark.e2e
@pytest.mark.redis
async def test_a_deploy_moves_the_client_to_another_node_on_redis_without_loss(
    redis_url: str,
) -> None:
    async with serve_nodes(2, redis_url, hub=HubSettings(reconnect_max_ms=300)) as (old, new):
        mover = HubClient([old.url, new.url], nodes_token("mover"), rng=lambda: 0.0)
        async with mover, HubClient(new.url, nodes_token("talker")) as talker:
            await mover.join("public:deploy")
            await talker.join("public:deploy")
            for n in range(5):
                await talker.send("public:deploy", f"m{n}")
            await collect(mover, lambda f: isinstance(f, NewMessage) and f.message == "m4")
            old.node.context.stopping.set()  # as SIGTERM does: reconnect frames, then 1001
            notice = await mover.next(Reconnect, timeout=WAIT)
            sent_while_moving = []
            for n in range(5, 15):
                sent_while_moving.append((await talker.send("public:deploy", f"m{n}")).offset)
            seen = await collect(mover, lambda f: isinstance(f, NewMessage) and f.message == "m14")
            chat = [f.message for f in seen if isinstance(f, NewMessage)]
            assert chat == [f"m{n}" for n in range(5, 15)]  # once each, in order
            assert not [f for f in seen if isinstance(f, RoomJoined) and not f.recovered]
            assert mover.url == new.url and mover.close_code == 1001
            assert mover.statistics().reconnects == 1
            served = await new.node.context.get(HUB).statistics()
            assert served.replays == 1 and served.replays_unrecovered == 0  # the room, from since
            assert notice.positions["public:deploy"][1] <= min(o or 0 for o in sent_while_moving)
