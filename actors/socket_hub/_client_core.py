"""The hub client's state, its requests, and what it does with each frame it reads.

:class:`ClientCore` holds the state, sends requests and matches their answers
by ``ref``, and dispatches every other frame: history frames through the
:class:`~._client_rooms.RoomTracker` (deduplicated, replays in order) into
the events buffer, ``reconnect`` and ``token_expiring`` to their handling.
:class:`~._client_loop.ClientLoop` runs the connections on it, and
:class:`actors.socket_hub.client.HubClient` is the public API on both.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import msgspec
from websockets.exceptions import ConnectionClosed

from runtime import SystemClock

from ._client_buffer import EventBuffer
from ._client_policy import full_jitter_delay
from ._client_rooms import RoomTracker
from ._client_wire import AuthMode, HubClientError, close_of, encode
from ._frames import (
    AuthRequest,
    ClientFrame,
    HubError,
    NewMessage,
    Ping,
    Pong,
    Reconnect,
    RoomJoined,
    ServerFrame,
    TaskProgress,
    TokenExpiring,
    Welcome,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from websockets.asyncio.client import ClientConnection

    from runtime import Clock

__all__ = ["ClientCore", "expect"]

logger = logging.getLogger("actors.socket_hub.client")

_F = TypeVar("_F", bound=ServerFrame)


class _Request(NamedTuple):
    future: asyncio.Future[ServerFrame]
    room: str | None
    rejoin: bool


class ClientCore:
    """The state, requests and frame dispatch of a hub client (``HubClient`` has the arguments)."""

    def __init__(
        self,
        url: str | Sequence[str],
        token: str | None = None,
        *,
        token_provider: Callable[[], Awaitable[str]] | None = None,
        auth: AuthMode = "query",
        reconnect: bool = True,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        max_attempts: int | None = None,
        buffer_size: int = 1024,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        heartbeat_seconds: float | None = 25.0,
        origin: str | None = None,
        max_frame_bytes: int = 4 * 1024 * 1024,
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("HubClient needs at least one URL")
        if token is None and token_provider is None:
            raise ValueError("HubClient needs a token or a token_provider")
        if auth not in ("query", "header", "frame"):
            raise ValueError(f"auth is {auth!r}; expected 'query', 'header' or 'frame'")
        full_jitter_delay(0, base=backoff_base, cap=backoff_max, rng=lambda: 0.0)  # validates
        self._urls = urls
        self._url_index = 0
        self._token = token
        self._token_provider = token_provider
        self._auth: AuthMode = auth
        self._reconnect = reconnect
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_attempts = max_attempts
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._heartbeat_seconds = heartbeat_seconds
        self._origin = origin
        self._max_frame_bytes = max_frame_bytes
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.random
        self._tracker = RoomTracker()
        self._rooms: dict[str, str | None] = {}  # the rooms the application joined -> room_type
        self._buffer: EventBuffer[ServerFrame] = EventBuffer(buffer_size)
        self._pending: dict[int, _Request] = {}
        self._refs = itertools.count(1)
        self._socket: ClientConnection | None = None
        self._welcome: Welcome | None = None
        self._ready = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._reconnect_at: float | None = None
        self._closing = False
        self._closed = False
        self._error: HubClientError | None = None
        self._close: tuple[int, str] | None = None
        self._counts = dict.fromkeys(
            ("connects", "reconnects", "failed_attempts", "frames_received", "frames_delivered",
             "undecodable", "token_refreshes"),
            0,
        )  # fmt: skip
        self.last_round_trip: float | None = None
        """Seconds the last ``ping`` (the heartbeat's or :meth:`ping`'s) took."""

    # -- requests and frames -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL the client connects (or is connected) to now."""
        return self._urls[self._url_index]

    async def _ping_once(self) -> float:
        started = self._clock.monotonic()
        expect(await self._request(Ping()), Pong)
        self.last_round_trip = self._clock.monotonic() - started
        return self.last_round_trip

    async def _send_auth(self, token: str) -> None:
        self._token = token
        await self._request(AuthRequest(token=token))
        self._counts["token_refreshes"] += 1

    def _advance_url(self) -> None:
        self._url_index = (self._url_index + 1) % len(self._urls)

    async def _dispatch(self, frame: ServerFrame, socket: ClientConnection) -> None:
        if isinstance(frame, NewMessage | TaskProgress):
            for accepted in self._tracker.accept(frame):
                await self._deliver(accepted)
            return
        ref = getattr(frame, "ref", None)
        request = self._pending.pop(ref, None) if isinstance(ref, int) else None
        if isinstance(frame, RoomJoined):
            released = self._tracker.joined(frame)
            if request is None or (request.rejoin and frame.recovered is False):
                await self._deliver(frame)
            _settle(request, frame)
            for accepted in released:
                await self._deliver(accepted)
        elif isinstance(frame, HubError) and request is not None:
            if request.room is not None and self._tracker.recovering(request.room):
                for accepted in self._tracker.abandon_recovery(request.room):
                    await self._deliver(accepted)
            if request.rejoin:
                await self._deliver(frame)
            _settle(request, HubClientError(frame.code, frame.message))
        elif request is not None:
            _settle(request, frame)
        else:
            if isinstance(frame, Reconnect):
                self._on_reconnect(frame, socket)
            elif isinstance(frame, TokenExpiring) and self._token_provider is not None:
                self._spawn(self._refresh_from_provider())
            await self._deliver(frame)

    def _on_reconnect(self, frame: Reconnect, socket: ClientConnection) -> None:
        delay = frame.after_ms / 1000
        self._reconnect_at = self._clock.monotonic() + delay
        self._advance_url()

        async def close_later() -> None:
            await self._clock.sleep(delay)
            await socket.close(1000, "reconnecting")

        self._spawn(close_later())

    async def _refresh_from_provider(self) -> None:
        assert self._token_provider is not None
        try:
            await self._send_auth(await self._token_provider())
        except Exception:
            logger.warning("hub client: refreshing the token failed", exc_info=True)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver(self, frame: ServerFrame) -> None:
        self._counts["frames_delivered"] += 1
        await self._buffer.put(frame)

    async def _request(
        self, frame: ClientFrame, *, room: str | None = None, rejoin: bool = False
    ) -> ServerFrame:
        if not rejoin:
            await self._wait_ready()
        socket = self._socket
        if socket is None:
            raise HubClientError("disconnected", "not connected")
        ref = next(self._refs)
        future: asyncio.Future[ServerFrame] = asyncio.get_running_loop().create_future()
        self._pending[ref] = _Request(future, room, rejoin)
        try:
            await socket.send(encode(msgspec.structs.replace(frame, ref=ref)), text=True)
            with self._clock.move_on_after(self._request_timeout):
                return await future
            why = ""
            if self._buffer.paused:
                why = (
                    f"; the events buffer is full ({self._buffer.size} frames): the client "
                    "stops reading the socket, answers included, until events() is read"
                )
            raise HubClientError(
                "timeout",
                f"no answer to {type(frame).__name__} within {self._request_timeout:g}s{why}",
            )
        except ConnectionClosed as closed:
            code, _ = close_of(closed)
            raise HubClientError(
                "disconnected", f"the connection closed ({code}) before the answer", close_code=code
            ) from closed
        finally:
            self._pending.pop(ref, None)

    async def _wait_ready(self) -> None:
        if not self._ready.is_set() and not self._closed:
            with self._clock.move_on_after(self._request_timeout):
                await self._ready.wait()
        if self._closed:
            raise self._error or HubClientError("closed", "the client is closed")
        if not self._ready.is_set():
            raise HubClientError("disconnected", f"not connected within {self._request_timeout:g}s")

    def _fail_pending(self, error: HubClientError) -> None:
        pending, self._pending = self._pending, {}
        for request in pending.values():
            _settle(request, error)

    def _finish(self, error: HubClientError | None) -> None:
        if self._error is None and error is not None:
            self._error = error
            logger.warning("hub client: stopped: %s", error)
        self._closed = True
        self._fail_pending(self._error or HubClientError("closed", "the client is closed"))
        self._buffer.close()
        self._ready.set()


def _settle(request: _Request | None, outcome: ServerFrame | HubClientError) -> None:
    if request is None or request.future.done():
        return
    if isinstance(outcome, HubClientError):
        request.future.set_exception(outcome)
    else:
        request.future.set_result(outcome)


def expect(reply: ServerFrame, kind: type[_F]) -> _F:
    if not isinstance(reply, kind):
        raise HubClientError(
            "protocol", f"expected a {kind.__name__} answer, got {type(reply).__name__}"
        )
    return reply
