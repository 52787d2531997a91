"""Real hub nodes on one Redis, and WebSocket members that record what they receive.

``serve_nodes(n, redis_url)`` runs ``n`` in-process nodes (``open_nodes``) with
the hub installed, each served by Hypercorn over TCP. A :class:`Member` is a
raw ``websockets`` client of one node that joins rooms, sends with acks and
records every frame it receives; :func:`check_room` judges what members
received with the runtime's history checker (duplicates, out of order,
phantoms) plus the hub's own promise (every acknowledged offset delivered to
every member that was in the room throughout).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import websockets
from websockets.asyncio.client import ClientConnection

import actors.socket_hub
from actors.socket_hub import HUB_SETTINGS, HubSettings
from runtime import Secret, Settings, SystemClock, TokenVerifier
from runtime.testing import History, HistoryReport, Node, check_history, open_nodes, serve_app

SECRET = "nodes-support-secret-" + "x" * 24
VERIFIER = TokenVerifier(SECRET, clock=SystemClock())


def token(user: str, *, roles: Sequence[str] = (), name: str | None = None) -> str:
    """A valid token for ``user``."""
    return VERIFIER.issue(user, roles=list(roles), name=name or user.title())


@dataclass
class Served:
    """One node and the ``ws://`` URL of its ``/ws``."""

    node: Node
    url: str


@contextlib.asynccontextmanager
async def serve_nodes(
    count: int, redis_url: str, *, hub: HubSettings | None = None
) -> AsyncIterator[list[Served]]:
    """``count`` hub nodes on ``redis_url``, each served over TCP."""
    settings = Settings(jwt_secret=Secret(SECRET))
    sections = {HUB_SETTINGS: hub or HubSettings()}
    async with (
        open_nodes(
            count,
            redis_url=redis_url,
            settings=settings,
            compose=actors.socket_hub.install,
            sections=sections,
        ) as nodes,
        contextlib.AsyncExitStack() as stack,
    ):
        served = []
        for node in nodes:
            url = await stack.enter_async_context(serve_app(node.app))
            served.append(Served(node, url.replace("http", "ws") + "/ws"))
        yield served


@dataclass
class Member:
    """A WebSocket client that records frames (run :meth:`pump` in a task group)."""

    user: str
    url: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[str, tuple[str, int]] = field(default_factory=dict)
    socket: ClientConnection | None = None
    closed: tuple[int, str] | None = None
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    async def connect(self, url: str | None = None) -> dict[str, Any]:
        """Connect (to ``url`` or the member's own); return the ``welcome`` frame."""
        self.url = url or self.url
        self.closed = None
        self.socket = await websockets.connect(f"{self.url}?token={token(self.user)}")
        welcome: dict[str, Any] = json.loads(await self.socket.recv())
        assert welcome["type"] == "welcome", welcome
        self.positions.setdefault(welcome["room"], (welcome["epoch"], welcome["offset"]))
        return welcome

    async def pump(self) -> None:
        """Record every frame until the connection ends."""
        assert self.socket is not None
        try:
            async for data in self.socket:
                frame = json.loads(data)
                self.frames.append(frame)
                room, offset = frame.get("room"), frame.get("offset")
                if frame["type"] in ("new_message", "task_progress") and offset:
                    epoch = self.positions.get(room, ("", 0))[0]
                    self.positions[room] = (epoch, offset)
                elif frame["type"] == "room_joined":
                    self.positions[room] = (frame["epoch"], frame["offset"])
                self._notify()
        except websockets.ConnectionClosed as exc:
            if exc.rcvd is not None:
                self.closed = (exc.rcvd.code, exc.rcvd.reason)
        finally:
            if self.closed is None and self.socket.close_code is not None:
                self.closed = (self.socket.close_code, self.socket.close_reason or "")
            self._notify()

    def _notify(self) -> None:
        self._arrived.set()
        self._arrived = anyio.Event()

    async def until(self, condition: Callable[[], bool], *, timeout_seconds: float = 15.0) -> None:
        """Wait until ``condition()`` holds, re-checking as frames arrive (or the socket closes)."""
        with anyio.fail_after(timeout_seconds):
            while not condition():
                await self._arrived.wait()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout_seconds: float = 10.0
    ) -> dict[str, Any]:
        """The first recorded frame that matches ``predicate`` (waits up to the timeout)."""
        with anyio.fail_after(timeout_seconds):
            while True:
                for frame in self.frames:
                    if predicate(frame):
                        return frame
                if self.closed is not None:
                    raise AssertionError(f"{self.user}: closed {self.closed} while waiting")
                await self._arrived.wait()

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one frame."""
        assert self.socket is not None
        await self.socket.send(json.dumps(frame))

    async def join(self, room: str, ref: int, *, recover: bool = False) -> dict[str, Any]:
        """Join ``room`` (with ``since``/``epoch`` from the member's positions when ``recover``)."""
        frame: dict[str, Any] = {"type": "join_room", "room": room, "ref": ref}
        if recover and room in self.positions:
            epoch, offset = self.positions[room]
            frame |= {"since": offset, "epoch": epoch}
        await self.send_frame(frame)
        return await self.wait_for(lambda f: f.get("ref") == ref and f["type"] != "presence")

    def delivered(self, room: str) -> list[int]:
        """Offsets of the ``new_message`` frames received in ``room``, in arrival order."""
        return [
            f["offset"]
            for f in self.frames
            if f["type"] == "new_message" and f["room"] == room and "offset" in f
        ]

    async def close(self) -> None:
        """Close the connection."""
        if self.socket is not None:
            await self.socket.close()


def check_room(
    room: str,
    acknowledged: Sequence[int],
    members: Sequence[Member],
) -> HistoryReport:
    """Judge what ``members`` received in ``room`` against the ``acknowledged`` offsets.

    Fails on duplicates, offsets going backwards, phantoms (offsets nobody
    acknowledged), and acknowledged offsets a member never received.
    """
    history = History()
    now = history.now()
    for offset in acknowledged:
        history.write("senders", room, offset, ok=True, started=now, acked=now)
    for member in members:
        for offset in member.delivered(room):
            history.deliver(member.user, room, offset, at=now)
    report = check_history(history)
    missing = {
        member.user: sorted(set(acknowledged) - set(member.delivered(room))) for member in members
    }
    missing = {user: offsets for user, offsets in missing.items() if offsets}
    assert report.ok, report.summary()
    assert not missing, f"acknowledged but never delivered: {missing}"
    return report


async def wait_delivered(members: Sequence[Member], room: str, offsets: Sequence[int]) -> None:
    """Wait (bounded) until every member holds every offset in ``offsets``."""
    wanted = set(offsets)
    for member in members:
        await member.until(functools.partial(_holds, member, room, wanted))


def _holds(member: Member, room: str, wanted: set[int]) -> bool:
    return wanted <= set(member.delivered(room))


async def poll_until(
    condition: Callable[[], Awaitable[bool]], *, timeout_seconds: float, interval: float = 0.05
) -> None:
    """Re-check an outside condition until it holds: presence TTLs run on Redis's own clock.

    Raises:
        TimeoutError: it did not hold within ``timeout_seconds``.
    """
    with anyio.fail_after(timeout_seconds):
        while not await condition():  # noqa: ASYNC110 - nothing to wait on but Redis's clock
            await anyio.sleep(interval)
