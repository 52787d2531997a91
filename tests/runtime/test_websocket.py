"""The WebSocket edge over real Hypercorn and TCP: auth, Origin, frames, outbox, closes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, assert_never

import anyio
import httpx
import msgspec
import pytest
from quart import Blueprint, Quart
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from runtime import (
    CloseCode,
    FrameDecoder,
    Message,
    NodeContext,
    NodeSetup,
    Rejected,
    Secret,
    Settings,
    TokenSource,
    TokenVerifier,
    WebSocketSession,
    authenticate_websocket,
    current_principal,
    require_auth,
    run_session,
    websocket_statistics,
)
from runtime.testing import ManualClock, open_app, serve_app

pytestmark = pytest.mark.e2e

SECRET = "a-test-secret-that-is-32-bytes-long!"
ALLOWED_ORIGIN = "https://app.example"


class Echo(Message, tag="echo", kw_only=True, frozen=True):
    text: str
    ref: str | None = None


class Flood(Message, tag="flood", kw_only=True, frozen=True):
    count: int


class Fail(Message, tag="fail", kw_only=True, frozen=True):
    pass


class Refuse(Message, tag="refuse", kw_only=True, frozen=True):
    ref: str | None = None


class Bye(Message, tag="bye", kw_only=True, frozen=True):
    pass


Frame = Echo | Flood | Fail | Refuse | Bye
DECODER: FrameDecoder[Frame] = FrameDecoder(Frame)
FIRST_FRAME_ONLY: tuple[TokenSource, ...] = ("first_frame",)


async def on_frame(session: WebSocketSession, frame: Frame) -> None:
    match frame:
        case Echo(text=text):
            subject = session.principal.subject if session.principal else None
            session.send({"type": "echoed", "text": text, "subject": subject})
        case Flood(count=count):
            for n in range(count):  # no await in between: the writer cannot keep up
                session.send({"type": "tick", "n": n})
        case Fail():
            raise RuntimeError("a bug in a frame handler")
        case Refuse():
            raise Rejected("refused", "this frame is refused")
        case Bye():
            session.close(CloseCode.NORMAL, "bye")
        case _:
            assert_never(frame)


@dataclass
class Sessions:
    """What each session's route saw at its end: a close code, or 'cancelled'."""

    ended: list[int | str] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def run(self, session: WebSocketSession) -> None:
        outcome: int | str = "cancelled"
        try:
            outcome = (await run_session(session, DECODER, on_frame)).code
        finally:
            self.ended.append(outcome)
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_ended(self, count: int = 1) -> list[int | str]:
        with anyio.fail_after(5):
            while len(self.ended) < count:
                await self._changed.wait()
        return self.ended


def routes(sessions: Sessions) -> Blueprint:
    bp = Blueprint("ws_test", __name__)

    @bp.websocket("/ws/echo")
    @require_auth()
    async def echo() -> None:
        await sessions.run(WebSocketSession(principal=current_principal()))

    @bp.websocket("/ws/admin")
    @require_auth(role="admin")
    async def admin() -> None:
        await sessions.run(WebSocketSession(principal=current_principal()))

    @bp.websocket("/ws/first")
    async def first() -> None:
        principal = await authenticate_websocket(accept=("header", "query", "first_frame"))
        await sessions.run(WebSocketSession(principal=principal))

    @bp.websocket("/ws/first-admin")
    async def first_admin() -> None:
        principal = await authenticate_websocket(accept=FIRST_FRAME_ONLY, role="admin")
        await sessions.run(WebSocketSession(principal=principal))

    @bp.websocket("/ws/open")
    async def anonymous() -> None:
        session = WebSocketSession(outbox_size=4, max_frame_bytes=1024, max_consecutive_errors=3)
        await sessions.run(session)

    @bp.get("/plain")
    async def plain() -> dict[str, str]:
        return {"plain": "yes"}

    return bp


@dataclass
class Node:
    url: str
    app: Quart
    context: NodeContext
    clock: ManualClock
    sessions: Sessions

    @property
    def ws(self) -> str:
        return "ws" + self.url.removeprefix("http")

    @property
    def verifier(self) -> TokenVerifier:
        assert self.context.verifier is not None
        return self.context.verifier

    def token(self, *roles: str, ttl_seconds: float = 3600) -> str:
        return self.verifier.issue("alice", roles=roles, ttl_seconds=ttl_seconds)

    def bearer(self, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*roles)}"}

    def stats(self) -> Any:
        return websocket_statistics(self.app)


@asynccontextmanager
async def served() -> AsyncIterator[Node]:
    clock = ManualClock(wall_start=1_800_000_000.0)
    settings = Settings(jwt_secret=Secret(SECRET), cors_origins=(ALLOWED_ORIGIN,))
    sessions = Sessions()

    def compose(node: NodeSetup) -> None:
        node.add_blueprint(routes(sessions))

    async with (
        open_app(settings, compose=compose, clock=clock) as (app, context),
        serve_app(app) as url,
    ):
        yield Node(url, app, context, clock, sessions)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    with anyio.fail_after(5):
        data = await ws.recv()
    assert isinstance(data, str), data  # JSON frames are text frames
    frame: dict[str, Any] = json.loads(data)
    return frame


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    with anyio.fail_after(5):
        await ws.wait_closed()
    return ws.close_code, ws.close_reason


async def echoes(ws: ClientConnection, text: str = "ping") -> bool:
    await ws.send(json.dumps({"type": "echo", "text": text}))
    frame = await receive(ws)
    return bool(frame["type"] == "echoed" and frame["text"] == text)


async def refused(uri: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(uri, open_timeout=5, **kwargs):
            pass
    response = caught.value.response
    return response.status_code, json.loads(response.body or b"{}"), response.headers


# -- authentication -------------------------------------------------------------------------


async def test_a_bearer_header_is_accepted_and_frames_flow_both_ways() -> None:
    async with served() as node:
        async with connect(f"{node.ws}/ws/echo", additional_headers=node.bearer()) as ws:
            await ws.send(json.dumps({"type": "echo", "text": "hi"}))
            assert await receive(ws) == {"type": "echoed", "text": "hi", "subject": "alice"}
        assert await node.sessions.wait_ended() == ["cancelled"]
        stats = node.stats()
        assert (stats.accepted, stats.frames_in, stats.frames_out) == (1, 1, 1)


async def test_a_token_query_parameter_is_accepted() -> None:
    async with served() as node, connect(f"{node.ws}/ws/echo?token={node.token()}") as ws:
        assert await echoes(ws)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("missing", 401, "missing_token"),
        ("malformed", 401, "malformed_token"),
        ("expired", 401, "token_expired"),
        ("wrong_role", 403, "insufficient_role"),
    ],
)
async def test_a_bad_token_refuses_the_upgrade_with_the_json_error(
    case: str, status: int, code: str
) -> None:
    async with served() as node:
        path, headers = "/ws/echo", {"X-Request-ID": "req-7"}
        if case == "malformed":
            headers["Authorization"] = "Basic dXNlcjpwYXNz"
        elif case == "expired":
            headers["Authorization"] = f"Bearer {node.token(ttl_seconds=60)}"
            node.clock.advance(61)
        elif case == "wrong_role":
            path, headers["Authorization"] = "/ws/admin", f"Bearer {node.token('viewer')}"
        got_status, body, response_headers = await refused(
            f"{node.ws}{path}", additional_headers=headers
        )
        assert got_status == status
        assert body["error"]["code"] == code
        assert body["error"]["message"]
        assert response_headers["X-Request-ID"] == "req-7"
        assert response_headers["Content-Type"] == "application/json"
        stats = node.stats()
        assert stats.rejected == {code: 1}
        assert (stats.accepted, stats.connections_open) == (0, 0)
        assert node.sessions.ended == []


async def test_the_admin_route_accepts_a_token_with_the_role() -> None:
    async with served() as node:
        headers = node.bearer("admin")
        async with connect(f"{node.ws}/ws/admin", additional_headers=headers) as ws:
            assert await echoes(ws)


async def test_first_frame_authentication_accepts_a_valid_token() -> None:
    async with served() as node, connect(f"{node.ws}/ws/first") as ws:
        await ws.send(json.dumps({"type": "auth", "token": node.token()}))
        assert await echoes(ws)


async def test_first_frame_route_still_takes_a_header_token_before_accept() -> None:
    async with served() as node:
        status, body, _ = await refused(
            f"{node.ws}/ws/first", additional_headers={"Authorization": "Bearer not-a-jwt"}
        )
        assert (status, body["error"]["code"]) == (401, "malformed_token")


@pytest.mark.parametrize(
    ("path", "frame", "code", "close_code"),
    [
        ("/ws/first", {"type": "auth", "token": "x.y.z"}, "malformed_token", 4001),
        ("/ws/first", {"type": "hello"}, "malformed_token", 4001),
        ("/ws/first", "expired", "token_expired", 4001),
        ("/ws/first-admin", "valid", "insufficient_role", 4003),
    ],
)
async def test_a_bad_first_frame_gets_an_error_frame_then_its_close_code(
    path: str, frame: object, code: str, close_code: int
) -> None:
    async with served() as node:
        async with connect(f"{node.ws}{path}") as ws:
            if frame == "expired":  # issued an hour ago (moving the node's clock would time out)
                past = ManualClock(wall_start=node.clock.time() - 3600)
                old_token = TokenVerifier(SECRET, clock=past).issue("bob", ttl_seconds=60)
                frame = {"type": "auth", "token": old_token}
            elif frame == "valid":
                frame = {"type": "auth", "token": node.token("viewer")}
            await ws.send(json.dumps(frame))
            error = await receive(ws)
            assert (error["type"], error["code"]) == ("error", code)
            assert await closed_with(ws) == (close_code, code)
        stats = node.stats()
        assert stats.rejected == {code: 1}
        assert stats.closes == {close_code: 1}
        assert node.sessions.ended == []


async def test_no_first_frame_within_the_timeout_closes_4001() -> None:
    async with served() as node, connect(f"{node.ws}/ws/first") as ws:
        node.clock.advance(10)  # the deadline is armed before the socket is accepted
        error = await receive(ws)
        assert error["code"] == "missing_token"
        assert "within 10s" in error["message"]
        assert await closed_with(ws) == (4001, "missing_token")


async def test_a_session_closes_4001_when_its_token_expires() -> None:
    async with served() as node:
        token = node.token(ttl_seconds=60)
        async with connect(f"{node.ws}/ws/echo?token={token}") as ws:
            assert await echoes(ws)  # the session runs, its expiry timer is armed
            node.clock.advance(60)
            assert await closed_with(ws) == (4001, "token_expired")
        assert await node.sessions.wait_ended() == [CloseCode.UNAUTHORIZED]


# -- Origin ---------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [None, ALLOWED_ORIGIN, "HTTPS://APP.EXAMPLE:443", "own"])
async def test_allowed_origins_are_accepted(origin: str | None) -> None:
    async with served() as node:
        if origin == "own":
            origin = node.url
        kwargs: dict[str, Any] = {} if origin is None else {"origin": origin}
        async with connect(f"{node.ws}/ws/open", **kwargs) as ws:
            assert await echoes(ws)


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://app.example"])
async def test_other_origins_are_refused_403_before_accept(origin: str) -> None:
    async with served() as node:
        status, body, _ = await refused(f"{node.ws}/ws/open", origin=origin)
        assert (status, body["error"]["code"]) == (403, "origin_not_allowed")
        assert repr(origin) in body["error"]["message"]
        assert node.stats().rejected == {"origin_not_allowed": 1}
        assert node.stats().accepted == 0


async def test_the_origin_is_checked_before_the_token() -> None:
    async with served() as node:
        status, body, _ = await refused(
            f"{node.ws}/ws/echo", origin="https://evil.example", additional_headers=node.bearer()
        )
        assert (status, body["error"]["code"]) == (403, "origin_not_allowed")


# -- frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "code", "in_message"),
    [
        ("not json", "malformed_frame", "not valid JSON"),
        ('{"type": "echo"', "malformed_frame", "truncated"),
        ('{"type": "nope"}', "unknown_type", "'nope'"),
        ('{"type": "echo", "text": 5}', "validation_error", "$.text"),
        ('{"text": "hi"}', "validation_error", "`type`"),
        ("[1, 2]", "validation_error", "array"),
        ("x" * 1025, "frame_too_large", "1024 bytes"),
        ("é" * 600, "frame_too_large", "1024 bytes"),  # 600 characters, 1200 bytes
        (b'{"type": "echo", "text": "hi"}', "binary_not_supported", "text frames"),
    ],
)
async def test_a_bad_frame_gets_its_error_frame_and_the_connection_goes_on(
    sent: str | bytes, code: str, in_message: str
) -> None:
    async with served() as node:
        async with connect(f"{node.ws}/ws/open") as ws:
            await ws.send(sent)
            error = await receive(ws)
            assert (error["type"], error["code"]) == ("error", code)
            assert in_message in error["message"], error["message"]
            assert await echoes(ws)
        assert node.stats().error_frames == 1


async def test_a_rejection_from_the_handler_is_an_error_frame_with_the_frames_ref() -> None:
    async with served() as node, connect(f"{node.ws}/ws/open") as ws:
        await ws.send(json.dumps({"type": "refuse", "ref": "r-1"}))
        assert await receive(ws) == {
            "type": "error",
            "code": "refused",
            "message": "this frame is refused",
            "ref": "r-1",
        }
        assert await echoes(ws)


async def test_too_many_bad_frames_in_a_row_close_1008() -> None:
    async with served() as node, connect(f"{node.ws}/ws/open") as ws:
        for _ in range(3):  # the route allows 3
            await ws.send("garbage")
        codes = [(await receive(ws))["code"] for _ in range(3)]
        assert codes == ["malformed_frame"] * 3
        assert await closed_with(ws) == (1008, "too_many_bad_frames")


async def test_an_overflowing_outbox_closes_the_slow_consumer_4008() -> None:
    async with served() as node:
        async with connect(f"{node.ws}/ws/open") as ws:
            await ws.send(json.dumps({"type": "flood", "count": 10}))  # the outbox holds 4
            assert await closed_with(ws) == (CloseCode.SLOW_CONSUMER, "slow_consumer")
        assert await node.sessions.wait_ended() == [4008]
        stats = node.stats()
        assert stats.outbox_overflows == 1
        assert stats.closes == {4008: 1}
        assert stats.frames_out < 10


async def test_a_close_from_the_handler_flushes_the_outbox_first() -> None:
    async with served() as node:
        async with connect(f"{node.ws}/ws/open") as ws:
            await ws.send(json.dumps({"type": "flood", "count": 3}))
            await ws.send(json.dumps({"type": "bye"}))
            assert [(await receive(ws))["n"] for _ in range(3)] == [0, 1, 2]
            assert await closed_with(ws) == (1000, "bye")
        assert await node.sessions.wait_ended() == [1000]


async def test_a_handler_bug_closes_1011_and_the_node_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with served() as node:
        async with connect(f"{node.ws}/ws/open") as ws:
            await ws.send(json.dumps({"type": "fail"}))
            assert await closed_with(ws) == (1011, "internal_error")
        assert "unhandled error in a frame handler of websocket /ws/open" in caplog.text
        async with connect(f"{node.ws}/ws/open") as ws:
            assert await echoes(ws)


async def test_the_sessions_tasks_end_when_the_client_goes_away() -> None:
    async with served() as node:
        ws = await connect(f"{node.ws}/ws/open")
        assert await echoes(ws)
        assert node.stats().connections_open == 1
        await ws.close()
        assert await node.sessions.wait_ended() == ["cancelled"]
        stats = node.stats()
        assert (stats.connections_open, stats.disconnects, stats.closes) == (0, 1, {})


async def test_a_stopping_node_closes_its_sessions_1001() -> None:
    async with served() as node:
        async with connect(f"{node.ws}/ws/open") as ws:
            assert await echoes(ws)
            node.context.stopping.set()
            assert await closed_with(ws) == (1001, "node_stopping")
        assert await node.sessions.wait_ended() == [1001]


async def test_receiving_after_close_raises_connection_closed() -> None:
    async with served() as node, connect(f"{node.ws}/ws/open") as ws:
        await ws.send(json.dumps({"type": "bye"}))
        with pytest.raises(ConnectionClosed), anyio.fail_after(5):
            await ws.recv()


# -- HTTP beside it -------------------------------------------------------------------------


async def test_http_routes_are_unaffected_and_routing_errors_speak_switchyard() -> None:
    async with served() as node, connect(f"{node.ws}/ws/open") as ws:
        async with httpx.AsyncClient(base_url=node.url, timeout=5) as client:
            assert (await client.get("/plain")).json() == {"plain": "yes"}
            assert (await client.get("/healthz")).status_code == 200
            missing = await client.get("/nope")
            assert missing.status_code == 404
            assert missing.json() == {
                "error": {"code": "not_found", "message": "no route for GET /nope"}
            }
            upgrade_only = await client.get("/ws/open")
            assert upgrade_only.status_code == 400
            assert "is a WebSocket route" in upgrade_only.json()["error"]["message"]
        assert await echoes(ws)


async def test_a_websocket_to_an_unknown_path_gets_a_json_404() -> None:
    async with served() as node:
        status, body, _ = await refused(f"{node.ws}/nope")
        assert (status, body["error"]["code"]) == (404, "not_found")
        assert body["error"]["message"] == "no WebSocket route for /nope"
        status, body, _ = await refused(f"{node.ws}/plain")
        assert status == 400
        assert "is an HTTP route" in body["error"]["message"]


async def test_statistics_is_a_frozen_snapshot() -> None:
    async with served() as node:
        before = node.stats()
        async with connect(f"{node.ws}/ws/open") as ws:
            assert await echoes(ws)
        assert before.frames_in == 0
        with pytest.raises(AttributeError):
            before.frames_in = 5
        assert msgspec.json.decode(msgspec.json.encode(node.stats()))["frames_in"] == 1
