"""The hub client's machinery: one connection loop, its requests, and what it delivers.

:class:`ClientCore` holds the client's state and runs its loop: serve a socket
(read, decode, dispatch answers to their requests, deduplicate and deliver the
rest), then reconnect with full-jitter backoff and rejoin every room from its
position. :class:`actors.socket_hub.client.HubClient` builds the public API on it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import msgspec
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from runtime import SystemClock

from ._client_buffer import EventBuffer
from ._client_policy import CloseAction, close_action, full_jitter_delay
from ._client_rooms import RoomTracker
from ._client_wire import AuthMode, HubClientError, Refused, close_of, decode, encode, open_socket
from ._frames import (
    AuthRequest,
    ClientFrame,
    HubError,
    JoinRoom,
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

__all__ = ["ClientCore", "expect", "fatal_close"]

logger = logging.getLogger("actors.socket_hub.client")

_F = TypeVar("_F", bound=ServerFrame)
_Opened = tuple["ClientConnection", Welcome]
_RETRY_ERRORS = (OSError, TimeoutError, WebSocketException)


class _Request(NamedTuple):
    future: asyncio.Future[ServerFrame]
    room: str | None
    rejoin: bool


class _Ended(NamedTuple):
    code: int
    reason: str
    reconnect_at: float | None  # set by a ``reconnect`` frame: monotonic time to come back


class ClientCore:
    """The state and connection loop of a hub client (see ``HubClient`` for the arguments)."""

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

    # -- connection loop ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL the client connects (or is connected) to now."""
        return self._urls[self._url_index]

    async def _connect_first(self) -> Welcome:
        if self._runner is not None or self._closed:
            raise RuntimeError("HubClient.connect() is called once per client")
        problem: BaseException | None = None
        for _ in self._urls:
            try:
                socket, welcome = await self._open(self.url)
                break
            except Refused as refused:
                self._counts["failed_attempts"] += 1
                if self._action(refused.code) is not CloseAction.RECONNECT:
                    raise fatal_close(refused.code, refused.reason, refused.detail) from refused
                problem = refused
            except InvalidURI:
                raise
            except _RETRY_ERRORS as exc:
                self._counts["failed_attempts"] += 1
                problem = exc
            self._advance_url()
        else:
            raise HubClientError(
                "unreachable", f"no hub at {self._urls} accepted the connection: {problem}"
            ) from problem
        self._socket = socket
        joins = self._plan_rejoin(welcome)  # none: tracks the personal room from its welcome
        if not joins:
            self._ready.set()
        self._runner = asyncio.create_task(self._run(socket, joins))
        return welcome

    async def _shutdown(self) -> None:
        if self._closed and self._runner is None:
            return
        self._closing = True
        self._buffer.close()  # a reader waiting for room reads on: the close handshake completes
        socket = self._socket
        if socket is not None:
            await socket.close(1000, "client_closed")
        for task in [*self._background, *([self._runner] if self._runner else [])]:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        self._finish(None)

    async def _ping_once(self) -> float:
        started = self._clock.monotonic()
        expect(await self._request(Ping()), Pong)
        self.last_round_trip = self._clock.monotonic() - started
        return self.last_round_trip

    async def _send_auth(self, token: str) -> None:
        self._token = token
        await self._request(AuthRequest(token=token))
        self._counts["token_refreshes"] += 1

    def _action(self, code: int) -> CloseAction:
        action = close_action(code)
        if action is CloseAction.REAUTHENTICATE:
            return CloseAction.FATAL if self._token_provider is None else CloseAction.RECONNECT
        return action

    def _advance_url(self) -> None:
        self._url_index = (self._url_index + 1) % len(self._urls)

    async def _open(self, url: str) -> _Opened:
        if self._token_provider is not None and (self._token is None or self._counts["connects"]):
            self._token = await self._token_provider()
        assert self._token is not None
        opened = await open_socket(
            url,
            self._token,
            auth=self._auth,
            clock=self._clock,
            timeout_seconds=self._connect_timeout,
            max_frame_bytes=self._max_frame_bytes,
            origin=self._origin,
        )
        self._counts["connects"] += 1
        self._welcome = opened[1]
        return opened

    async def _run(self, socket: ClientConnection, joins: list[JoinRoom]) -> None:
        error: HubClientError | None = None
        try:
            while True:
                ended = await self._serve(socket, joins)
                self._close = (ended.code, ended.reason)
                if self._closing:
                    return
                action = CloseAction.RECONNECT
                if ended.reconnect_at is None:
                    action = self._action(ended.code)
                if action is CloseAction.STOP:
                    return
                if action is CloseAction.FATAL:
                    error = fatal_close(ended.code, ended.reason)
                    return
                if not self._reconnect:
                    error = HubClientError(
                        "disconnected",
                        f"the connection closed with {ended.code} ({ended.reason or 'no reason'}) "
                        "and reconnect=False",
                        close_code=ended.code,
                    )
                    return
                socket, welcome = await self._reopen(ended)
                joins = self._plan_rejoin(welcome)
                self._counts["reconnects"] += 1
        except HubClientError as exc:
            error = exc
        except Exception as exc:
            logger.exception("hub client: the connection loop failed")
            error = HubClientError("internal", f"the client's connection loop failed: {exc!r}")
        finally:
            self._finish(error)

    async def _reopen(self, ended: _Ended) -> _Opened:
        attempt = 0
        while True:
            if self._max_attempts is not None and attempt >= self._max_attempts:
                raise HubClientError(
                    "gave_up", f"{attempt} reconnect attempts failed; the last close was "
                    f"{ended.code} ({ended.reason or 'no reason'})", close_code=ended.code
                )  # fmt: skip
            if attempt == 0 and ended.reconnect_at is not None:
                delay = max(0.0, ended.reconnect_at - self._clock.monotonic())
            else:
                delay = full_jitter_delay(
                    attempt, base=self._backoff_base, cap=self._backoff_max, rng=self._rng
                )
            await self._clock.sleep(delay)
            attempt += 1
            try:
                return await self._open(self.url)
            except Refused as refused:
                if self._action(refused.code) is not CloseAction.RECONNECT:
                    raise fatal_close(refused.code, refused.reason, refused.detail) from refused
                logger.info("hub client: %s refused a reconnect: %s", self.url, refused)
            except InvalidURI:
                raise
            except _RETRY_ERRORS as exc:
                logger.info("hub client: reconnect to %s failed: %r", self.url, exc)
            self._counts["failed_attempts"] += 1
            self._advance_url()

    async def _serve(self, socket: ClientConnection, joins: list[JoinRoom]) -> _Ended:
        self._socket = socket
        self._reconnect_at = None
        tasks: list[asyncio.Task[None]] = []
        if joins:
            tasks.append(asyncio.create_task(self._rejoin(socket, joins)))
        else:
            self._ready.set()
        if self._heartbeat_seconds is not None:
            tasks.append(asyncio.create_task(self._heartbeat(socket, self._heartbeat_seconds)))
        code, reason = 1006, ""
        try:
            code, reason = await self._read(socket)
        finally:
            self._ready.clear()
            self._socket = None
            self._fail_pending(
                HubClientError(
                    "disconnected",
                    f"the connection closed ({code}) before the answer",
                    close_code=code,
                )
            )
            self._tracker.drop_recoveries()
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception):
                    logger.error("hub client: a connection task failed", exc_info=outcome)
        return _Ended(code, reason, self._reconnect_at)

    def _plan_rejoin(self, welcome: Welcome) -> list[JoinRoom]:
        joins: list[JoinRoom] = []
        personal = self._tracker.position(welcome.room)
        if personal is None:
            self._tracker.set_position(welcome.room, welcome.epoch, welcome.offset)
        elif personal.epoch != welcome.epoch or personal.offset < welcome.offset:
            joins.append(JoinRoom(room=welcome.room, since=personal.offset, epoch=personal.epoch))
        for room, room_type in self._rooms.items():
            if room != welcome.room:
                position = self._tracker.position(room)
                since, epoch = (position.offset, position.epoch) if position else (None, None)
                joins.append(JoinRoom(room=room, room_type=room_type, since=since, epoch=epoch))
        for join in joins:
            self._tracker.begin_recovery(join.room)
        return joins

    async def _rejoin(self, socket: ClientConnection, joins: list[JoinRoom]) -> None:
        outcomes = await asyncio.gather(
            *(self._request(join, room=join.room, rejoin=True) for join in joins),
            return_exceptions=True,
        )
        for join, outcome in zip(joins, outcomes, strict=True):
            if isinstance(outcome, HubClientError):
                if outcome.code == "disconnected":
                    return
                if outcome.code == "timeout":
                    logger.warning("hub client: no answer to rejoining %s; reconnecting", join.room)
                    socket.transport.abort()
                    return
                logger.warning("hub client: could not rejoin %s: %s", join.room, outcome)
                self._rooms.pop(join.room, None)
            elif isinstance(outcome, BaseException):
                raise outcome
        self._ready.set()

    async def _heartbeat(self, socket: ClientConnection, every: float) -> None:
        while True:
            await self._clock.sleep(every)
            try:
                await self._ping_once()
            except HubClientError as exc:
                if exc.code == "timeout" and not self._buffer.paused:
                    logger.warning("hub client: no pong within %gs; reconnecting", every)
                    socket.transport.abort()
                    return
                if exc.code in ("disconnected", "closed"):
                    return
                logger.warning("hub client: heartbeat ping failed: %s", exc)

    async def _read(self, socket: ClientConnection) -> tuple[int, str]:
        while True:
            try:
                data = await socket.recv(decode=False)
            except ConnectionClosed as closed:
                return close_of(closed)
            self._counts["frames_received"] += 1
            try:
                frame = decode(data)
            except msgspec.DecodeError as exc:
                self._counts["undecodable"] += 1
                logger.warning("hub client: skipped a frame that is not a hub frame: %s", exc)
                continue
            await self._dispatch(frame, socket)

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


def fatal_close(code: int, reason: str, detail: str = "") -> HubClientError:
    said = f": {detail}" if detail else ""
    return HubClientError(
        reason or f"closed_{code}",
        f"the hub closed the connection with {code} ({reason or 'no reason'}){said}",
        close_code=code,
    )
