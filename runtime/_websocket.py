"""The WebSocket edge: authenticate a socket, then run it as a session with a bounded outbox.

A websocket route does three things, in this order::

    decoder = FrameDecoder(Join | Leave | Publish)       # once, at import time

    @routes.websocket("/ws")
    async def socket() -> None:
        principal = await authenticate_websocket(accept=("header", "query", "first_frame"))
        session = WebSocketSession(principal=principal, outbox_size=64)
        hub.register(session)                              # e.g. the socket hub
        try:
            await run_session(session, decoder, on_frame)
        finally:
            hub.unregister(session)

Before accept, the app has already checked ``Origin`` (``runtime._ws_origin``)
and the request id; a failed check, a bad token (header or query) or an error
raised by the route refuses the upgrade with the node's JSON error body and
status. After accept, an error that escapes the route becomes an error frame
and a close with the code of :class:`~runtime.CloseCode` for its status.

:func:`run_session` runs a reader (in the route's own task) and a writer task
under one cancel scope:

* the **reader** takes one frame at a time, checks its size and kind, decodes
  it with the :class:`~runtime.FrameDecoder` and awaits ``on_frame(session,
  frame)``; a frame's handler therefore runs before the next frame is read
  (per-connection order and backpressure). A bad frame, or a ``Rejected``,
  ``ApiError`` or ``AuthError`` from the handler, answers an error frame and
  the session goes on; ``max_consecutive_errors`` bad frames in a row close
  it (1008). Any other exception is logged with the request id and closes the
  session with 1011; the node goes on.
* the **writer** sends the outbox in order, up to 64 frames in one transport
  write where Hypercorn serves the socket (``runtime._ws_batch``), through
  the ASGI ``send`` otherwise. :meth:`WebSocketSession.send`
  never waits (an actor broadcasting to a room must not stall on one slow
  client): when the outbox (``outbox_size`` frames) is full, the frame is not
  queued, the session is closed with 4008 ``slow_consumer`` without flushing,
  and ``outbox_overflows`` is counted.

A session also closes with 1001 when the node starts stopping (after flushing
its outbox) and with 4001 ``token_expired`` when its principal's token
expires (unless ``close_on_expiry=False``; :meth:`~WebSocketSession.refresh`
replaces the principal). When the client goes away, Quart cancels the route's
task: the session's tasks end, and the route's ``finally`` runs.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec
from quart import g, websocket

from ._auth import AuthError, Principal, require_role
from ._edge_auth import handshake_principal, missing_token, verify_token
from ._errors import ActorCrashed, ActorStopped, AskTimeout, Rejected
from ._http import ApiError, node_context
from ._notifier import Notifier
from ._ws_batch import batch_writer
from ._ws_connection import (
    CloseCode,
    accept_websocket,
    close_websocket,
    connection_state,
    counters_of_current_app,
)
from ._ws_frames import AuthFrame, ErrorFrame, FrameDecoder, FrameError, encode_frame

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Coroutine, Hashable

    from ._edge_auth import TokenSource

__all__ = [
    "SessionClosed",
    "WebSocketSession",
    "WebSocketSessionStatistics",
    "authenticate_websocket",
    "run_session",
]

logger = logging.getLogger("runtime.websocket")

T = TypeVar("T")

_AUTH_FRAME: FrameDecoder[AuthFrame] = FrameDecoder(AuthFrame)
_MAX_AUTH_FRAME_BYTES = 16 * 1024


async def authenticate_websocket(
    accept: Collection[TokenSource] = ("header", "query"),
    *,
    role: str | None = None,
    first_frame_timeout_seconds: float = 10.0,
) -> Principal:
    """Authenticate the current WebSocket with the node's token verifier.

    Tries the sources in ``accept``: the ``Authorization: Bearer`` header, the
    ``token`` query parameter, then (if neither is present and
    ``"first_frame"`` is accepted) accepts the socket and waits up to
    ``first_frame_timeout_seconds`` (on the node's clock) for
    ``{"type": "auth", "token": "..."}``.

    Raises:
        AuthError: let it escape the route. Before accept the upgrade is
            refused with a JSON 401/403; after accept (first frame) the client
            gets an error frame with the code, then close 4001 (or 4003 for a
            missing ``role``).
    """
    node = node_context()
    principal = handshake_principal(node.verifier, accept)
    if principal is None:
        if "first_frame" not in accept:
            raise missing_token(accept)
        principal = await _first_frame_principal(first_frame_timeout_seconds)
    if role is not None:
        require_role(principal, role)
    return principal


async def _first_frame_principal(timeout_seconds: float) -> Principal:
    node = node_context()
    data: str | bytes | None = None
    with node.clock.move_on_after(timeout_seconds):  # armed before the client sees the accept
        await accept_websocket()
        data = await websocket.receive()
    if data is None:
        raise AuthError(
            "missing_token",
            f'no auth frame {{"type": "auth", "token": "..."}} within {timeout_seconds:g}s',
        )
    counters_of_current_app().frames_in += 1
    if len(data) > _MAX_AUTH_FRAME_BYTES:
        raise AuthError("malformed_token", f"auth frame exceeds {_MAX_AUTH_FRAME_BYTES} bytes")
    try:
        frame = _AUTH_FRAME.decode(data)
    except FrameError as exc:
        raise AuthError(
            "malformed_token",
            f'first frame must be {{"type": "auth", "token": "..."}} ({exc.code}: {exc.message})',
        ) from None
    return verify_token(node.verifier, frame.token)


# Frames a writer takes from the outbox at once (one transport write where Hypercorn
# serves the socket) before it lets other tasks run.
_FRAMES_PER_CHECKPOINT = 64


def _asgi_send(socket: object) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
    """The ASGI ``send`` behind Quart's websocket, or ``None`` where it cannot be found.

    Quart's ``websocket.send`` yields to the event loop before every frame
    (``asyncio.sleep(0)``, for handlers that send in a tight loop) and fires a
    signal nobody here listens to: a task switch per frame. The writer sends
    through the ASGI callable itself and yields once per
    ``_FRAMES_PER_CHECKPOINT`` frames instead. (Quart keeps the callable as the
    first argument of the ``functools.partial`` it stores in ``_send``; if that
    ever changes, the writer falls back to ``websocket.send``.)
    """
    bound = getattr(socket, "_send", None)
    args: tuple[Any, ...] = getattr(bound, "args", ())
    if isinstance(bound, functools.partial) and len(args) == 1 and callable(args[0]):
        send: Callable[[dict[str, Any]], Awaitable[None]] = args[0]
        return send
    return None


class _Coalesced:
    """An outbox entry whose frame a later one with the same key may replace.

    ``data`` is ``None`` once the entry is retired: a later frame with its key
    was queued at the end instead (see :meth:`WebSocketSession.send_encoded`).
    """

    __slots__ = ("data", "key")

    def __init__(self, key: Hashable, data: str | bytes) -> None:
        self.key = key
        self.data: str | bytes | None = data


class _Unbounded:
    """An outbox entry queued outside the bound (``send_encoded(bounded=False)``)."""

    __slots__ = ("data",)

    def __init__(self, data: str | bytes) -> None:
        self.data = data


def _is_retired(item: str | bytes | _Coalesced | _Unbounded) -> bool:
    return type(item) is _Coalesced and item.data is None


class SessionClosed(msgspec.Struct, frozen=True, kw_only=True):
    """How a session ended: the close ``code`` and ``reason`` the server sent."""

    code: int
    reason: str


class WebSocketSessionStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One session's counters and the fill of its outbox.

    ``bad_frames`` counts frames refused before their handler ran (not JSON,
    binary, too large, not a frame of the union); ``error_frames`` counts every
    error frame sent, these and the handler's refusals alike.
    """

    frames_in: int
    frames_out: int
    error_frames: int
    outbox_used: int
    outbox_size: int
    coalesced: int = 0
    bad_frames: int = 0


class WebSocketSession:
    """One WebSocket connection as a hub sees it: send frames, close, who and which request.

    Create it inside a websocket route (it binds to the current socket), then
    hand it to :func:`run_session`. Frames sent before :func:`run_session`
    starts wait in the outbox.

    Args:
        principal: who is connected (from :func:`authenticate_websocket`), or
            ``None`` for an anonymous socket.
        outbox_size: frames that may wait to be written; one more closes the
            session with 4008 ``slow_consumer``.
        max_frame_bytes: frames past this get a ``frame_too_large`` error frame.
        accept_binary: decode binary frames as UTF-8 JSON too; by default they
            get ``binary_not_supported``.
        max_consecutive_errors: bad frames in a row that close the session (1008).
        close_on_expiry: close with 4001 ``token_expired`` when the token expires.
        close_on_stopping: close with 1001 ``node_stopping`` as soon as the node
            starts to drain; ``False`` leaves that to the owner (the socket hub
            first tells its clients where to resume, then closes them).
        close_timeout_seconds: time the outbox gets to drain on a graceful close.
    """

    def __init__(
        self,
        *,
        principal: Principal | None = None,
        outbox_size: int = 64,
        max_frame_bytes: int = 64 * 1024,
        accept_binary: bool = False,
        max_consecutive_errors: int = 16,
        close_on_expiry: bool = True,
        close_on_stopping: bool = True,
        close_timeout_seconds: float = 5.0,
    ) -> None:
        if outbox_size < 1 or max_frame_bytes < 1 or max_consecutive_errors < 1:
            raise ValueError(
                "outbox_size, max_frame_bytes and max_consecutive_errors must be >= 1; got "
                f"{outbox_size}, {max_frame_bytes}, {max_consecutive_errors}"
            )
        connection_state()  # raises outside a websocket context
        node = node_context()
        self.principal = principal
        self.request_id: str = g.get("request_id") or "-"
        self.path: str = websocket.path
        self.outbox_size = outbox_size
        self.max_frame_bytes = max_frame_bytes
        self.accept_binary = accept_binary
        self.max_consecutive_errors = max_consecutive_errors
        self.close_on_expiry = close_on_expiry
        self.close_on_stopping = close_on_stopping
        self.close_timeout_seconds = close_timeout_seconds
        self._websocket = websocket._get_current_object()  # type: ignore[attr-defined]
        self._clock = node.clock
        self._stopping = node.stopping
        self._counters = counters_of_current_app()
        self._outbox: collections.deque[str | bytes | _Coalesced | _Unbounded] = collections.deque()
        self._coalescing: dict[Hashable, _Coalesced] = {}
        self._outbox_changed = Notifier()
        self._close: SessionClosed | None = None
        self._flush = True
        self._close_timer_started = False
        self._principal_changed = Notifier()
        self._scope: anyio.CancelScope | None = None  # the running session's, in the route task
        self._tasks: set[asyncio.Task[None]] = set()
        self._crash: BaseException | None = None
        self._frames_in = self._frames_out = self._error_frames = self._coalesced = 0
        self._bad_frames = 0
        self._retired = 0  # coalesced entries still in the outbox but superseded
        self._unbounded = 0  # entries queued with bounded=False, outside outbox_size

    def __repr__(self) -> str:
        who = self.principal.subject if self.principal is not None else None
        return (
            f"WebSocketSession(path={self.path!r}, subject={who!r}, request_id={self.request_id!r})"
        )

    @property
    def closing(self) -> SessionClosed | None:
        """The close the session is heading for, or ``None`` while it is open."""
        return self._close

    def send(self, frame: object) -> bool:
        """Encode ``frame`` as JSON and queue it as a text frame; never waits.

        Returns ``False`` when the frame was not queued: the session is closing,
        or the outbox was full (the session then closes with 4008).
        """
        return self.send_encoded(encode_frame(frame))

    def send_encoded(
        self,
        data: str | bytes,
        *,
        coalesce: Hashable | None = None,
        priority: bool = False,
        bounded: bool = True,
    ) -> bool:
        """Queue an already-encoded frame (``str``: text frame, ``bytes``: binary frame).

        For a broadcast, encode once with :func:`~runtime.encode_frame` and
        queue the same string on every session.

        Args:
            data: the encoded frame.
            coalesce: a key (e.g. ``("task", task_id)``): while a frame queued
                with the same key is still waiting, only the latest is written.
                ``data`` replaces it in place when nothing was queued after it;
                otherwise the waiting one is dropped and ``data`` is queued last,
                so it never overtakes frames queued before it (their order, such
                as the offsets of a room's history, is kept). Either way the
                outbox holds one frame per key.
            priority: an answer the client is owed (an ack, an error): it may
                use a second ``outbox_size`` of room before the session overflows.
            bounded: ``False`` for a burst the caller bounds itself (a history
                replay of at most its history size): it is queued whatever the
                fill, and neither counts against ``outbox_size`` nor overflows.
        """
        if self._close is not None:
            return False
        if not bounded:
            self._outbox.append(_Unbounded(data))
            self._unbounded += 1
            self._outbox_changed.notify()
            return True
        if coalesce is not None:
            waiting = self._coalescing.get(coalesce)
            if waiting is not None:
                self._coalesced += 1
                if self._outbox[-1] is waiting:
                    waiting.data = data
                    return True
                self._retire(waiting)
                self._queue_coalesced(coalesce, data)
                return True
        used = len(self._outbox) - self._retired - self._unbounded
        if used >= (2 * self.outbox_size if priority else self.outbox_size):
            self._counters.outbox_overflows += 1
            logger.info(
                "websocket %s (request id %s): outbox of %d frames overflowed; closing",
                self.path,
                self.request_id,
                self.outbox_size,
            )
            self._abort(CloseCode.SLOW_CONSUMER, "slow_consumer")
            return False
        if coalesce is not None:
            self._queue_coalesced(coalesce, data)
        else:
            self._outbox.append(data)
            self._outbox_changed.notify()
        return True

    def _queue_coalesced(self, key: Hashable, data: str | bytes) -> None:
        slot = _Coalesced(key, data)
        self._coalescing[key] = slot
        self._outbox.append(slot)
        self._outbox_changed.notify()

    def _retire(self, entry: _Coalesced) -> None:
        """Drop a waiting coalesced frame; compact the outbox when retired entries pile up."""
        entry.data = None
        self._retired += 1
        if self._retired > self.outbox_size:
            kept = [item for item in self._outbox if not _is_retired(item)]
            self._outbox.clear()  # in place: the writer holds this deque
            self._outbox.extend(kept)
            self._retired = 0

    def send_error(self, code: str, message: str, *, ref: str | int | None = None) -> bool:
        """Queue an error frame ``{"type": "error", "code": ..., "message": ...}``."""
        queued = self.send_encoded(
            encode_frame(ErrorFrame(code=code, message=message, ref=ref)), priority=True
        )
        if queued:
            self._error_frames += 1
            self._counters.error_frames += 1
        return queued

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after the frames already queued are written (within the close timeout).

        Idempotent: the first close wins. ``reason`` should be a stable code word.
        """
        if self._close is None:
            self._close = SessionClosed(code=int(code), reason=reason)
            self._outbox_changed.notify()
            self._start_close_timer()

    def refresh(self, principal: Principal) -> None:
        """Replace the principal (a refreshed token); the expiry timer follows the new one."""
        self.principal = principal
        self._principal_changed.notify()

    def statistics(self) -> WebSocketSessionStatistics:
        """This session's frame counts and outbox fill."""
        return WebSocketSessionStatistics(
            frames_in=self._frames_in,
            frames_out=self._frames_out,
            error_frames=self._error_frames,
            outbox_used=len(self._outbox) - self._retired - self._unbounded,
            outbox_size=self.outbox_size,
            coalesced=self._coalesced,
            bad_frames=self._bad_frames,
        )

    def _abort(self, code: int, reason: str) -> None:
        """Close now, dropping what is queued."""
        if self._close is None:
            self.close(code, reason)
            self._flush = False
            self._outbox.clear()
            self._coalescing.clear()
            self._retired = self._unbounded = 0
        self._end()

    def _end(self) -> None:
        """End the running session: its tasks stop, and :func:`run_session` closes the socket."""
        if self._scope is not None:
            self._scope.cancel()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a helper task of the session (its writer, its timers) until the session ends.

        Bare asyncio tasks under the session's one cancel scope rather than an
        anyio task group: measured 1.3 KiB less per idle connection, and a node
        holds thousands of idle sessions. A task that raises ends the session
        and :func:`run_session` re-raises its exception.
        """
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._crash is None:
            self._crash = task.exception()
            self._end()

    async def _read(
        self,
        decoder: FrameDecoder[T],
        on_frame: Callable[[WebSocketSession, T], Awaitable[None]],
    ) -> None:
        errors = 0
        while self._close is None:
            data = await self._websocket.receive()
            self._frames_in += 1
            self._counters.frames_in += 1
            if self._close is not None:
                return  # closing: frames that arrive meanwhile are not handled
            try:
                frame = self._decode(decoder, data)
            except FrameError as exc:
                errors += 1
                self._bad_frames += 1
                self.send_error(exc.code, exc.message)
                if errors >= self.max_consecutive_errors:
                    self.close(CloseCode.POLICY_VIOLATION, "too_many_bad_frames")
                continue
            errors = 0
            ref = getattr(frame, "ref", None)
            ref = ref if isinstance(ref, str | int) else None
            try:
                await on_frame(self, frame)
            except (Rejected, ApiError, AuthError) as exc:
                self.send_error(exc.code, exc.message, ref=ref)
            except (AskTimeout, ActorStopped, ActorCrashed) as exc:
                logger.warning("websocket %s (request id %s): %s", self.path, self.request_id, exc)
                self.send_error("unavailable", "the service is busy or restarting; retry", ref=ref)
            except Exception:
                logger.exception(
                    "unhandled error in a frame handler of websocket %s (request id %s)",
                    self.path,
                    self.request_id,
                )
                self._abort(CloseCode.INTERNAL_ERROR, "internal_error")
                return

    def _decode(self, decoder: FrameDecoder[T], data: str | bytes) -> T:
        if isinstance(data, bytes) and not self.accept_binary:
            raise FrameError(
                "binary_not_supported", "binary frames are not accepted; send JSON text frames"
            )
        limit = self.max_frame_bytes
        if len(data) > limit or (
            isinstance(data, str) and 4 * len(data) > limit and len(data.encode()) > limit
        ):
            raise FrameError("frame_too_large", f"frame exceeds the limit of {limit} bytes")
        return decoder.decode(data)

    def _take(self, most: int) -> list[str | bytes]:
        """Take up to ``most`` frames from the head of the outbox, in order."""
        outbox = self._outbox
        frames: list[str | bytes] = []
        while outbox and len(frames) < most:
            entry = outbox.popleft()
            if isinstance(entry, _Coalesced):
                if entry.data is None:  # superseded by a later frame with its key
                    self._retired -= 1
                    continue
                del self._coalescing[entry.key]
                frames.append(entry.data)
            elif isinstance(entry, _Unbounded):
                self._unbounded -= 1
                frames.append(entry.data)
            else:
                frames.append(entry)
        return frames

    async def _write(self) -> None:
        send = _asgi_send(self._websocket)
        write_many = batch_writer(send)
        while True:
            while self._outbox:
                frames = self._take(_FRAMES_PER_CHECKPOINT)
                if write_many is not None:
                    if not await write_many(frames):  # closed under us
                        self._end()
                        return
                else:
                    for frame in frames:
                        if send is None:
                            await self._websocket.send(frame)
                        elif type(frame) is str:
                            await send({"type": "websocket.send", "bytes": None, "text": frame})
                        else:
                            await send({"type": "websocket.send", "bytes": frame, "text": None})
                self._frames_out += len(frames)
                self._counters.frames_out += len(frames)
                if self._outbox:
                    await asyncio.sleep(0)  # a long outbox still lets other tasks run
            if self._close is not None:
                break  # closing, and the outbox is drained
            await self._outbox_changed.wait()
        self._end()

    def _start_close_timer(self) -> None:
        """Bound the drain of a closing session (a task only once it closes, not per session)."""
        if self._scope is not None and not self._close_timer_started:
            self._close_timer_started = True
            self._spawn(self._watch_close_timeout())

    async def _watch_close_timeout(self) -> None:
        await self._clock.sleep(self.close_timeout_seconds)
        logger.info(
            "websocket %s (request id %s): outbox not drained within %gs of close; closing anyway",
            self.path,
            self.request_id,
            self.close_timeout_seconds,
        )
        self._abort(CloseCode.NORMAL, "")

    async def _watch_stopping(self) -> None:
        await self._stopping.wait()
        self.close(CloseCode.GOING_AWAY, "node_stopping")

    async def _watch_expiry(self) -> None:
        while self.principal is not None:
            delay = self.principal.expires_at - self._clock.time()
            with self._clock.move_on_after(delay) as deadline:
                await self._principal_changed.wait()
            if deadline.cancelled_caught:
                self.close(CloseCode.UNAUTHORIZED, "token_expired")
                return


async def run_session(
    session: WebSocketSession,
    decoder: FrameDecoder[T],
    on_frame: Callable[[WebSocketSession, T], Awaitable[None]],
) -> SessionClosed:
    """Accept the socket (if not yet accepted) and serve ``session`` until it closes.

    Returns how the server closed it. If the client goes away first, the
    route's task is cancelled (by Quart) and this raises the cancellation.
    """
    await accept_websocket()
    if session.closing is None or session._flush:
        with anyio.CancelScope() as scope:
            session._scope = scope
            try:
                session._spawn(session._write())
                if session.closing is not None:
                    session._start_close_timer()
                if session.close_on_stopping:
                    session._spawn(session._watch_stopping())
                if session.close_on_expiry and session.principal is not None:
                    session._spawn(session._watch_expiry())
                # The reader runs in the route's own task (one task fewer per connection);
                # the writer ends the session (cancels this scope) once the outbox is drained.
                await session._read(decoder, on_frame)
                await anyio.sleep_forever()
            finally:
                session._scope = None
                tasks = list(session._tasks)
                for task in tasks:
                    task.cancel()
                if tasks:
                    with anyio.CancelScope(shield=True):
                        await asyncio.wait(tasks)
        if session._crash is not None:
            raise session._crash
    closed = session.closing or SessionClosed(code=CloseCode.NORMAL, reason="")
    with session._clock.move_on_after(session.close_timeout_seconds):
        await close_websocket(closed.code, closed.reason)
    return closed
