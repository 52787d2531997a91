"""Shared helpers of the hub's end-to-end tests: a real node on Hypercorn, real clients.

:func:`hub_node` runs one node with the socket hub (in memory) served over
loopback TCP; :class:`HubNode` issues tokens and opens :class:`Client`
connections, thin wrappers of the ``websockets`` client that decode JSON
text frames with bounded waits. :meth:`Client.quiet` proves that nothing
else was sent to a client: frames of one connection are written in order, so
a ``pong`` right after a ``ping`` means nothing was queued before it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from quart import Quart
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import actors.socket_hub
from actors.socket_hub import HUB, HUB_SETTINGS, Connection, Hub, HubSettings, HubStatistics
from runtime import Clock, NodeContext, Secret, Settings, TokenVerifier
from runtime.testing import ManualClock, open_app, serve_app

__all__ = [
    "SECRET",
    "WAIT",
    "Client",
    "HubNode",
    "hub_node",
]

SECRET = "a-hub-test-secret-that-is-32-bytes-or-more"
WAIT = 10.0
"""Seconds any single wait may take before the test fails (generous: a loaded 2-core box)."""


class Client:
    """One WebSocket client of the hub: send frames, receive decoded frames, see the close."""

    def __init__(self, ws: ClientConnection, welcome: dict[str, Any] | None) -> None:
        self.ws = ws
        self.welcome = welcome
        self._refs = itertools.count(1)

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        """Send a frame: a dict as JSON text, ``str`` as text, ``bytes`` as a binary frame."""
        await self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def recv(self, timeout_seconds: float = WAIT) -> dict[str, Any]:
        """The next frame, decoded; it must be a JSON text frame."""
        with anyio.fail_after(timeout_seconds):
            data = await self.ws.recv()
        assert isinstance(data, str), f"the hub sent a binary frame: {data!r}"
        frame: dict[str, Any] = json.loads(data)
        return frame

    async def recv_many(self, count: int, timeout_seconds: float = WAIT) -> list[dict[str, Any]]:
        """The next ``count`` frames."""
        with anyio.fail_after(timeout_seconds):
            return [await self.recv(timeout_seconds) for _ in range(count)]

    async def expect(self, kind: str, timeout_seconds: float = WAIT) -> dict[str, Any]:
        """The next frame, which must be of type ``kind``."""
        frame = await self.recv(timeout_seconds)
        assert frame["type"] == kind, frame
        return frame

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame`` with a fresh ``ref``; return the next frame, which must carry it."""
        ref = next(self._refs)
        await self.send({**frame, "ref": ref})
        answer = await self.recv()
        assert answer.get("ref") == ref, (frame, answer)
        return answer

    async def error(self, frame: dict[str, Any] | str | bytes) -> dict[str, Any]:
        """Send ``frame``; the next frame must be an ``error``: return it."""
        await self.send(frame)
        answer = await self.expect("error")
        return answer

    async def join(self, room: str, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Join ``room``; return its ``room_joined`` and ``presence`` frames."""
        joined = await self.request({"type": "join_room", "room": room, **fields})
        assert joined["type"] == "room_joined", joined
        presence = await self.expect("presence")
        assert presence["room"] == room
        return joined, presence

    async def say(self, room: str, message: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send a chat message; return its echo (``new_message``) and its ``ack``."""
        ref = next(self._refs)
        await self.send({"type": "send_message", "room": room, "message": message, "ref": ref})
        echo = await self.expect("new_message")
        ack = await self.expect("ack")
        assert ack["ref"] == ref and ack["id"] == echo["id"], (echo, ack)
        return echo, ack

    async def quiet(self) -> None:
        """Assert that nothing was queued for this client: a ping's pong is its next frame."""
        pong = await self.request({"type": "ping"})
        assert pong["type"] == "pong", pong

    async def closed(self, timeout_seconds: float = WAIT) -> tuple[int | None, str | None]:
        """Wait for the close; return its code and reason (frames still queued are skipped)."""
        with anyio.fail_after(timeout_seconds):
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed:
                pass
        return self.ws.close_code, self.ws.close_reason

    async def frames_until_close(self, timeout_seconds: float = WAIT) -> list[dict[str, Any]]:
        """Every frame until the server closes the connection."""
        frames: list[dict[str, Any]] = []
        with anyio.fail_after(timeout_seconds):
            try:
                while True:
                    data = await self.ws.recv()
                    assert isinstance(data, str), data
                    frames.append(json.loads(data))
            except ConnectionClosed:
                pass
        return frames

    async def close(self) -> None:
        """Close from the client side."""
        await self.ws.close()


@dataclass
class HubNode:
    """One node with the socket hub, served over TCP."""

    url: str
    app: Quart
    context: NodeContext
    clock: Clock
    hub: Hub

    @property
    def ws_url(self) -> str:
        """The hub's WebSocket URL."""
        return "ws" + self.url.removeprefix("http") + "/ws"

    @property
    def verifier(self) -> TokenVerifier:
        """The node's token verifier (on the node's clock)."""
        assert self.context.verifier is not None
        return self.context.verifier

    @property
    def manual_clock(self) -> ManualClock:
        """The node's clock, when the test gave it a :class:`ManualClock`."""
        assert isinstance(self.clock, ManualClock)
        return self.clock

    def token(
        self,
        user: str,
        *,
        roles: Sequence[str] = (),
        name: str | None = None,
        ttl_seconds: float = 3600,
    ) -> str:
        """A valid token for ``user``."""
        return self.verifier.issue(
            user, roles=list(roles), name=name or user.title(), ttl_seconds=ttl_seconds
        )

    def bearer(self, user: str, *, roles: Sequence[str] = ()) -> dict[str, str]:
        """An ``Authorization`` header for ``user``."""
        return {"Authorization": f"Bearer {self.token(user, roles=roles)}"}

    @asynccontextmanager
    async def client(
        self,
        user: str = "alice",
        *,
        roles: Sequence[str] = (),
        token: str | None = None,
        welcome: bool = True,
        **options: Any,
    ) -> AsyncIterator[Client]:
        """A connected client with a header token; its ``welcome`` already read."""
        ws = await self.open(user, roles=roles, token=token, **options)
        try:
            client = Client(ws, None)
            if welcome:
                client.welcome = await client.expect("welcome")
            yield client
        finally:
            await ws.close()

    @asynccontextmanager
    async def anonymous(self, query: str = "") -> AsyncIterator[Client]:
        """A client that connects without a header token (first-frame auth, or ``?token=``)."""
        async with connect(self.ws_url + query, open_timeout=WAIT, max_queue=None) as ws:
            yield Client(ws, None)

    async def open(
        self,
        user: str = "alice",
        *,
        roles: Sequence[str] = (),
        token: str | None = None,
        **options: Any,
    ) -> ClientConnection:
        """Open a raw connection with a header token (the caller closes it).

        Unless ``max_queue`` says otherwise the client buffers every frame it has
        not read yet, so a test that leaves frames unread still closes at once.
        """
        token = token or self.token(user, roles=roles)
        options.setdefault("max_queue", None)
        headers = {"Authorization": f"Bearer {token}"} | options.pop("additional_headers", {})
        return await connect(self.ws_url, additional_headers=headers, open_timeout=WAIT, **options)

    async def refused(
        self, query: str = "", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """An upgrade that must be refused: its status and JSON body."""
        try:
            async with connect(
                self.ws_url + query, additional_headers=headers or {}, open_timeout=WAIT
            ):
                pass
        except InvalidStatus as refused:
            response = refused.response
            assert response.headers["Content-Type"] == "application/json"
            body: dict[str, Any] = json.loads(response.body or b"{}")
            return response.status_code, body
        raise AssertionError("the upgrade was accepted")

    def http(self) -> httpx.AsyncClient:
        """An HTTP client of the node."""
        return httpx.AsyncClient(base_url=self.url, timeout=WAIT)

    def connections(self, user: str | None = None) -> list[Connection]:
        """The hub's connections (of ``user``)."""
        return [c for c in self.hub._parts.connections if user is None or c.user_id == user]

    async def statistics(self) -> HubStatistics:
        """The hub's statistics."""
        return await self.hub.statistics()

    async def wait_for(self, condition: Any, timeout_seconds: float = WAIT) -> None:
        """Wait (checking often, never sleeping on the node's clock) until ``condition()``."""
        with anyio.fail_after(timeout_seconds):
            while not condition():  # noqa: ASYNC110 - another task's state, no event to wait on
                await anyio.sleep(0.005)

    def advance(self, seconds: float) -> None:
        """Move the node's manual clock on (wakes the hub's sweeper and session timers).

        Wait for what the move causes (a frame, a close) before moving it again:
        the sweeper re-arms its timer only after it ran.
        """
        self.manual_clock.advance(seconds)


@asynccontextmanager
async def hub_node(
    settings: HubSettings | None = None,
    *,
    clock: Clock | None = None,
    node: Settings | None = None,
) -> AsyncIterator[HubNode]:
    """A node with the socket hub (``settings``), served on Hypercorn over loopback TCP."""
    node_settings = node or Settings(jwt_secret=Secret(SECRET))
    async with (
        open_app(
            node_settings,
            compose=actors.socket_hub.install,
            sections={HUB_SETTINGS: settings or HubSettings()},
            clock=clock,
        ) as (app, context),
        serve_app(app) as url,
    ):
        yield HubNode(url=url, app=app, context=context, clock=context.clock, hub=context.get(HUB))
