"""The hub client's transport: its error, its counters, and opening one authenticated socket.

:func:`open_socket` connects with the token where :data:`AuthMode` says, sends
the ``auth`` frame for first-frame authentication, and waits for ``welcome``.
A server that refuses (an HTTP status before the upgrade, or a close before
``welcome``) raises :class:`Refused` with the close code the refusal stands
for, so the client decides with one table (:mod:`._client_policy`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from ._client_policy import close_code_for_http_status
from ._frames import AuthRequest, HubError, ServerFrame, Welcome

if TYPE_CHECKING:
    from runtime import Clock

__all__ = [
    "AuthMode",
    "HubClientError",
    "HubClientStatistics",
    "Refused",
    "close_of",
    "decode",
    "encode",
    "open_socket",
    "url_with_token",
]

AuthMode = Literal["query", "header", "frame"]
"""Where the client puts its token: ``token`` query parameter, ``Authorization`` header, or
a first ``auth`` frame."""

logger = logging.getLogger("actors.socket_hub.client")

_ENCODER = msgspec.json.Encoder()
_DECODER: msgspec.json.Decoder[ServerFrame] = msgspec.json.Decoder(ServerFrame)


class HubClientError(Exception):
    """The hub refused a request (``error {code, message}``) or the client had to stop.

    ``code`` is the hub's error code (``forbidden``, ``not_in_room``...) or one of
    the client's own: ``timeout``, ``disconnected`` (the connection dropped
    before the answer), ``closed`` (the client is closed), ``protocol`` (an
    unexpected answer) and, for a fatal close, the close reason (or
    ``closed_<code>``). ``close_code`` is set when a close caused the error.
    """

    def __init__(self, code: str, message: str, *, close_code: int | None = None) -> None:
        self.code = code
        self.message = message
        self.close_code = close_code
        super().__init__(f"{code}: {message}")


class HubClientStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one client's counters."""

    connects: int
    """Connections that reached ``welcome`` (the first one included)."""
    reconnects: int
    """Connections after the first."""
    failed_attempts: int
    """Connection attempts that failed (refused, unreachable, no ``welcome`` in time)."""
    frames_received: int
    """Server frames read from the socket (every connection)."""
    frames_delivered: int
    """Frames put into the events buffer for the application."""
    duplicates_dropped: int
    """History frames dropped because their offset was seen already."""
    gaps: int
    """History frames delivered that skipped ahead of their room's last offset."""
    undecodable: int
    """Frames that were not a known server frame (logged and skipped)."""
    buffer_pauses: int
    """How many times the reader stopped reading because the events buffer was full."""
    token_refreshes: int
    """``auth`` refreshes the hub acknowledged."""


class Refused(Exception):
    """The server refused a connection before ``welcome``: the close code it stands for."""

    def __init__(self, code: int, reason: str, detail: str = "") -> None:
        self.code = code
        self.reason = reason
        self.detail = detail
        super().__init__(
            f"refused with {code} ({reason or 'no reason'}){': ' if detail else ''}{detail}"
        )


def close_of(closed: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason the server sent (1006 and ``""`` when it sent none)."""
    if closed.rcvd is None:
        return 1006, ""
    return closed.rcvd.code, closed.rcvd.reason


def url_with_token(url: str, token: str) -> str:
    """``url`` with ``token`` as its ``token`` query parameter (replacing one it had)."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def encode(frame: msgspec.Struct) -> bytes:
    """A client frame as JSON bytes (sent as a text frame)."""
    return _ENCODER.encode(frame)


def decode(data: bytes) -> ServerFrame:
    """A server frame from its JSON bytes.

    Raises:
        msgspec.DecodeError: not JSON, or not a frame this client knows.
    """
    return _DECODER.decode(data)


async def open_socket(
    url: str,
    token: str,
    *,
    auth: AuthMode,
    clock: Clock,
    timeout_seconds: float,
    max_frame_bytes: int,
    origin: str | None,
) -> tuple[ClientConnection, Welcome]:
    """Connect to ``url``, authenticate, and return the socket with its ``welcome``.

    Raises:
        Refused: the server refused the upgrade or closed before ``welcome``.
        TimeoutError: no ``welcome`` within ``timeout_seconds``.
        OSError: the server cannot be reached.
    """
    headers = {"Authorization": f"Bearer {token}"} if auth == "header" else None
    target = url_with_token(url, token) if auth == "query" else url
    try:
        socket = await connect(
            target,
            additional_headers=headers,
            origin=Origin(origin) if origin is not None else None,
            open_timeout=timeout_seconds,
            proxy=None,
            compression=None,
            max_size=max_frame_bytes,
            ping_interval=None,  # the client pings the hub itself (an application frame)
            close_timeout=timeout_seconds,
        )
    except InvalidStatus as refused:
        status = refused.response.status_code
        raise Refused(close_code_for_http_status(status), f"http_{status}") from refused
    try:
        if auth == "frame":
            await socket.send(encode(AuthRequest(token=token)), text=True)
        welcome: Welcome | None = None
        with clock.move_on_after(timeout_seconds):
            welcome = await _welcome(socket)
        if welcome is None:
            raise TimeoutError(f"no welcome from {url} within {timeout_seconds:g}s")
    except BaseException:
        socket.transport.abort()
        raise
    return socket, welcome


async def _welcome(socket: ClientConnection) -> Welcome:
    error: HubError | None = None
    while True:
        try:
            data = await socket.recv(decode=False)
        except ConnectionClosed as closed:
            code, reason = close_of(closed)
            detail = f"{error.code}: {error.message}" if error is not None else ""
            raise Refused(code, reason, detail) from closed
        try:
            frame = _DECODER.decode(data)
        except msgspec.DecodeError as exc:
            logger.warning("hub client: skipped a frame before welcome that is not one: %s", exc)
            continue
        if isinstance(frame, Welcome):
            return frame
        if isinstance(frame, HubError):
            error = frame
