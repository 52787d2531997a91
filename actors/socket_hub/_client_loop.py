"""The hub client's connection loop: connect, serve a socket, reconnect, rejoin.

:class:`ClientLoop` connects (each URL once at first), serves the socket (its
reader hands frames to :meth:`~._client_core.ClientCore._dispatch`; a
heartbeat pings a quiet connection), and when the connection ends decides with
the close-code table of :mod:`._client_policy`: stop, give up with an error
naming the code, or reconnect with full-jitter backoff (after a ``reconnect``
frame: after its ``after_ms``, to the next URL) and rejoin every room from its
position, the personal room too when its ``welcome`` shows it moved on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, NamedTuple

import msgspec
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from ._client_core import ClientCore
from ._client_policy import CloseAction, close_action, full_jitter_delay
from ._client_wire import HubClientError, Refused, close_of, decode, open_socket
from ._frames import JoinRoom, Welcome

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = ["ClientLoop", "fatal_close"]

logger = logging.getLogger("actors.socket_hub.client")

_Opened = tuple["ClientConnection", Welcome]
_RETRY_ERRORS = (OSError, TimeoutError, WebSocketException)


class _Ended(NamedTuple):
    code: int
    reason: str
    reconnect_at: float | None  # set by a ``reconnect`` frame: monotonic time to come back


class ClientLoop(ClientCore):
    """The connection loop of a hub client, on the state of :class:`ClientCore`."""

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

    def _action(self, code: int) -> CloseAction:
        action = close_action(code)
        if action is CloseAction.REAUTHENTICATE:
            return CloseAction.FATAL if self._token_provider is None else CloseAction.RECONNECT
        return action

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


def fatal_close(code: int, reason: str, detail: str = "") -> HubClientError:
    said = f": {detail}" if detail else ""
    return HubClientError(
        reason or f"closed_{code}",
        f"the hub closed the connection with {code} ({reason or 'no reason'}){said}",
        close_code=code,
    )
