"""The socket hub's Python client: connect, join rooms, send, and resume without loss.

Example::

    async with HubClient("ws://127.0.0.1:8000/ws", token) as hub:
        await hub.join("public:lobby")
        await hub.send("public:lobby", "hello")
        async for frame in hub.events():
            match frame:
                case NewMessage(user_name=who, message=text):
                    print(who, text)

* **Auth** by the ``token`` query parameter (``auth="query"``, the default),
  an ``Authorization: Bearer`` header (``"header"``) or a first ``auth`` frame
  (``"frame"``, keeps the token out of URLs). :meth:`HubClient.refresh` sends
  a new token on a live connection; with a ``token_provider`` the client
  refreshes by itself on ``token_expiring`` and fetches a fresh token for
  every reconnect.
* **Requests with answers**: :meth:`~HubClient.join`, :meth:`~HubClient.leave`,
  :meth:`~HubClient.send`, :meth:`~HubClient.ping` and :meth:`~HubClient.refresh`
  carry a ``ref`` and wait for the answer with that ``ref``; an ``error``
  answer raises :class:`HubClientError` with the hub's code. A request made
  while the client reconnects waits for the new connection (within
  ``request_timeout``); one in flight when the connection drops raises
  ``disconnected`` (a ``send`` is not retried: it may have been posted).
* **Resumption**: the client remembers each room's epoch and last offset
  (:attr:`~HubClient.positions`). After a dropped connection, a retryable
  close (see :mod:`actors.socket_hub._client_policy`) or a ``reconnect``
  frame (after its ``after_ms``, to the next URL of the list), it reconnects
  with full-jitter backoff, rejoins every room with ``since``/``epoch`` and
  delivers the replayed frames, then the live ones. Frames are deduplicated
  by offset per room, so none arrives twice. A rejoin the hub cannot recover
  (history trimmed, epoch changed) arrives as ``RoomJoined(recovered=False)``:
  resynchronise that room. Fatal closes (4003, 1008, 4001 without a token
  provider...) end the client with a :class:`HubClientError` naming the code.
* **Backpressure**: :meth:`~HubClient.events` reads a bounded buffer
  (``buffer_size`` frames). When the application stops taking frames, the
  client stops reading the socket (answers to requests wait too, so a
  request made while not reading may time out), TCP pushes back, the hub's
  outbox for this connection fills and the hub disconnects it (4008); the
  client then reconnects and recovers from the room history what it missed.

The first :meth:`~HubClient.connect` tries each URL once and raises when none
accepts; only later drops are retried. Time (backoff, timeouts, round trips)
reads an injectable :class:`runtime.Clock`, randomness an injectable ``rng``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self, TypeVar

from ._client_core import expect
from ._client_loop import ClientLoop
from ._client_wire import AuthMode, HubClientError, HubClientStatistics
from ._frames import (
    Ack,
    JoinRoom,
    LeaveRoom,
    MessageKind,
    RoomJoined,
    SendMessage,
    ServerFrame,
    Welcome,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from types import TracebackType

__all__ = ["AuthMode", "HubClient", "HubClientError", "HubClientStatistics"]

_F = TypeVar("_F", bound=ServerFrame)


class HubClient(ClientLoop):
    """A resumable connection to the socket hub (an async context manager).

    Args:
        url: the hub's ``ws://host:port/ws`` URL, or several (nodes to fail over to).
        token: the JWT; optional with a ``token_provider``.
        token_provider: ``async () -> str`` giving a fresh token; called for every
            reconnect and on ``token_expiring``.
        auth: where the token goes: ``"query"``, ``"header"`` or ``"frame"``.
        reconnect: reconnect and resume after retryable closes (else the client ends).
        backoff_base: the first backoff ceiling, in seconds (doubles per failed attempt).
        backoff_max: the largest backoff ceiling, in seconds.
        max_attempts: failed reconnect attempts in a row before giving up (``None``: never).
        buffer_size: frames the events buffer holds before the client stops reading.
        connect_timeout: seconds to connect and get ``welcome``.
        request_timeout: seconds a request waits for its answer (and for a connection).
        heartbeat_seconds: seconds between ``ping`` frames on a quiet connection
            (``None``: none); a ping unanswered within ``request_timeout`` while the
            client is reading drops the connection as dead.
        origin: the ``Origin`` header to send, for hubs that check it.
        max_frame_bytes: the largest server frame accepted.
        clock: the time source (``runtime.testing.ManualClock`` in tests).
        rng: floats in ``[0, 1)`` for the backoff jitter (``random.random``).
    """

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def connect(self) -> Welcome:
        """Connect (each URL once, in turn) and return the hub's ``welcome``.

        Raises:
            HubClientError: the hub refused with a fatal close (code named), or no URL
                accepted the connection (``unreachable``).
        """
        return await self._connect_first()

    async def aclose(self) -> None:
        """Close the connection and stop; ``events()`` ends after the frames buffered."""
        await self._shutdown()

    # -- state -------------------------------------------------------------------------------

    @property
    def positions(self) -> dict[str, tuple[str, int]]:
        """Each room's ``(epoch, last offset delivered)``, the personal room included."""
        return self._tracker.positions

    @property
    def rooms(self) -> list[str]:
        """The rooms joined with :meth:`join` (rejoined on every reconnect)."""
        return list(self._rooms)

    @property
    def welcome(self) -> Welcome | None:
        """The last connection's ``welcome`` (who the client is, its personal room)."""
        return self._welcome

    @property
    def connected(self) -> bool:
        """Whether a connection is up and every room has been rejoined."""
        return self._ready.is_set() and not self._closed

    @property
    def closed(self) -> bool:
        """Whether the client has stopped (closed by the application, or a fatal close)."""
        return self._closed

    @property
    def close_code(self) -> int | None:
        """The close code of the last connection that ended (1006: dropped without one)."""
        return self._close[0] if self._close else None

    @property
    def close_reason(self) -> str | None:
        """The close reason of the last connection that ended."""
        return self._close[1] if self._close else None

    @property
    def error(self) -> HubClientError | None:
        """Why the client stopped, when it was not closed by the application."""
        return self._error

    def statistics(self) -> HubClientStatistics:
        """A snapshot of the client's counters."""
        return HubClientStatistics(
            **self._counts,
            duplicates_dropped=self._tracker.duplicates,
            gaps=self._tracker.gaps,
            buffer_pauses=self._buffer.pauses,
        )

    # -- requests ----------------------------------------------------------------------------

    async def join(
        self, room: str, *, recover: bool = True, room_type: str | None = None
    ) -> RoomJoined:
        """Join ``room``; with ``recover`` and a position there, replay what was missed first.

        Raises:
            HubClientError: the hub refused (``forbidden``, ``invalid_room``...), or
                ``timeout``/``disconnected``/``closed``.
        """
        position = self._tracker.position(room) if recover else None
        if not recover:
            self._tracker.forget(room)
        frame = JoinRoom(
            room=room,
            room_type=room_type,
            since=position.offset if position else None,
            epoch=position.epoch if position else None,
        )
        if position is not None:
            self._tracker.begin_recovery(room)
        try:
            reply = await self._request(frame, room=room)
        finally:
            if self._tracker.recovering(room):
                for released in self._tracker.abandon_recovery(room):
                    await self._deliver(released)
        joined = expect(reply, RoomJoined)
        self._rooms[room] = room_type
        return joined

    async def leave(self, room: str) -> None:
        """Leave ``room`` and forget its position.

        Raises:
            HubClientError: the hub refused (``not_in_room``, ``personal_room``...) or the
                request failed.
        """
        self._rooms.pop(room, None)
        self._tracker.forget(room)
        await self._request(LeaveRoom(room=room))

    async def send(self, room: str, message: str, kind: MessageKind = "text") -> Ack:
        """Post ``message`` to ``room``; the ``ack`` carries its ``id`` and ``offset``.

        Raises:
            HubClientError: the hub refused (``not_in_room``, ``message_too_long``,
                ``rate_limited``...) or the request failed.
        """
        reply = await self._request(SendMessage(room=room, message=message, kind=kind))
        return expect(reply, Ack)

    async def ping(self) -> float:
        """Send ``ping`` and return the round trip to its ``pong``, in seconds."""
        return await self._ping_once()

    async def refresh(self, token: str) -> None:
        """Send ``auth {token}``: the connection goes on with the new token, as reconnects do.

        Raises:
            HubClientError: the hub refused the token (``token_expired``, ``invalid_token``...).
        """
        await self._send_auth(token)

    # -- events ------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ServerFrame]:
        """Every frame for the application, in order; ends when the client is closed.

        Raises:
            HubClientError: after the buffered frames, when the client stopped on a fatal close.
        """
        while True:
            frame = await self._buffer.get()
            if frame is None:
                if self._error is not None:
                    raise self._error
                return
            yield frame

    frames = events

    async def next(
        self,
        kind: type[_F],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - on the injectable clock, not asyncio's
        where: Callable[[_F], bool] | None = None,
    ) -> _F:
        """The next frame of type ``kind`` (that ``where`` accepts); frames passed over are dropped.

        Raises:
            HubClientError: ``timeout`` when none comes within ``timeout`` seconds, or the
                client stopped (its error, or ``closed``).
        """
        with self._clock.move_on_after(timeout):
            while True:
                frame = await self._buffer.get()
                if frame is None:
                    raise self._error or HubClientError("closed", "the client is closed")
                if isinstance(frame, kind) and (where is None or where(frame)):
                    return frame
        raise HubClientError("timeout", f"no {kind.__name__} frame within {timeout:g}s")
