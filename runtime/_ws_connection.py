"""The WebSocket close codes, the edge's counters, and accept/close for one connection.

Close codes
-----------
Every close the runtime initiates uses one of these codes; the close reason is
the stable error ``code`` word (``"slow_consumer"``, ``"token_expired"``),
never a sentence, so clients can switch on it. The runtime owns 1000-1015 (as
RFC 6455 defines them) and 4000-4099; actor packages (the socket hub first)
define their own codes in 4100-4999 in an ``IntEnum`` of their own.

====  ===================  ===============================================
code  name                 when
====  ===================  ===============================================
1000  NORMAL               the handler or the client ended the session
1001  GOING_AWAY           the node is stopping (drain on SIGTERM)
1008  POLICY_VIOLATION     a 4xx outside the table below after accept, or
                           too many bad frames in a row
1009  MESSAGE_TOO_BIG      a frame past Hypercorn's hard limit
                           (``websocket_max_message_size``, 16 MiB); frames
                           past the session's own, lower ``max_frame_bytes``
                           get a ``frame_too_large`` error frame instead
1011  INTERNAL_ERROR       an unexpected exception in a frame handler
1013  TRY_AGAIN_LATER      an actor was busy or restarting (a 503) after
                           accept; reconnect with backoff
4001  UNAUTHORIZED         missing, malformed, invalid or expired token
                           (first-frame auth, or the token expired while
                           connected); reconnect with a fresh token
4003  FORBIDDEN            the token lacks the role the route needs
4008  SLOW_CONSUMER        the outbox overflowed: the client did not read
                           fast enough; reconnect and resynchronise
4029  RATE_LIMITED         a 429 after accept; reconnect later
====  ===================  ===============================================

Why 4001/4003/4029 and not 1008 for all of them: a browser sees neither the
HTTP status of a refused upgrade nor its body (the WebSocket API reports 1006),
so whatever a client must react to differently (get a new token, give up,
back off) needs a close code of its own after accept.

Counters
--------
:class:`WebSocketCounters` is owned by one Quart app (``app.extensions``,
created by ``create_app``); :func:`websocket_statistics` reads a frozen
:class:`WebSocketStatistics` snapshot of it.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

import msgspec
from quart import current_app, g, has_websocket_context, websocket

if TYPE_CHECKING:
    from quart import Quart

__all__ = [
    "CloseCode",
    "WebSocketCounters",
    "WebSocketStatistics",
    "accept_websocket",
    "close_code_for_status",
    "close_websocket",
    "connection_state",
    "install_websocket_counters",
    "websocket_statistics",
]

logger = logging.getLogger("runtime.websocket")

_COUNTERS = "switchyard.websocket"
_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes


class CloseCode(enum.IntEnum):
    """The close codes the runtime sends (see the module docstring for when)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    SLOW_CONSUMER = 4008
    RATE_LIMITED = 4029


_STATUS_CLOSE_CODES: dict[int, CloseCode] = {
    401: CloseCode.UNAUTHORIZED,
    403: CloseCode.FORBIDDEN,
    413: CloseCode.MESSAGE_TOO_BIG,
    429: CloseCode.RATE_LIMITED,
    503: CloseCode.TRY_AGAIN_LATER,
}


def close_code_for_status(status: int) -> CloseCode:
    """The close code that stands for an HTTP error ``status`` once a socket is accepted."""
    if status in _STATUS_CLOSE_CODES:
        return _STATUS_CLOSE_CODES[status]
    return CloseCode.POLICY_VIOLATION if 400 <= status < 500 else CloseCode.INTERNAL_ERROR


class WebSocketStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one app's WebSocket edge.

    ``rejected`` counts upgrades refused before accept (and first-frame auth
    failures) by error code; ``closes`` counts closes the server sent, by
    close code; ``disconnects`` counts accepted connections the client ended.
    """

    connections_open: int
    accepted: int
    rejected: dict[str, int]
    frames_in: int
    frames_out: int
    error_frames: int
    outbox_overflows: int
    closes: dict[int, int]
    disconnects: int


class WebSocketCounters:
    """The mutable counters behind :class:`WebSocketStatistics`; one per app.

    Only the event loop that serves the app touches them, so plain integers
    suffice.
    """

    def __init__(self) -> None:
        self.connections_open = 0
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.frames_in = 0
        self.frames_out = 0
        self.error_frames = 0
        self.outbox_overflows = 0
        self.closes: dict[int, int] = {}
        self.disconnects = 0

    def reject(self, code: str) -> None:
        """Count an upgrade refused (or a first-frame auth failed) with error ``code``."""
        self.rejected[code] = self.rejected.get(code, 0) + 1

    def snapshot(self) -> WebSocketStatistics:
        """A frozen copy of the counters."""
        return WebSocketStatistics(
            connections_open=self.connections_open,
            accepted=self.accepted,
            rejected=dict(self.rejected),
            frames_in=self.frames_in,
            frames_out=self.frames_out,
            error_frames=self.error_frames,
            outbox_overflows=self.outbox_overflows,
            closes=dict(self.closes),
            disconnects=self.disconnects,
        )


def install_websocket_counters(app: Quart) -> WebSocketCounters:
    """Give ``app`` its counters and the teardown that keeps ``connections_open`` right."""
    counters = WebSocketCounters()
    app.extensions[_COUNTERS] = counters
    app.teardown_websocket(_count_teardown)
    return counters


def websocket_statistics(app: Quart) -> WebSocketStatistics:
    """The WebSocket edge's statistics of ``app`` (an app built by ``create_app``)."""
    counters: WebSocketCounters = app.extensions[_COUNTERS]
    return counters.snapshot()


def counters_of_current_app() -> WebSocketCounters:
    """The counters of the app serving the current request or WebSocket."""
    counters: WebSocketCounters = current_app.extensions[_COUNTERS]
    return counters


class ConnectionState:
    """What the runtime knows about the current WebSocket: accepted, and closed by us."""

    __slots__ = ("accepted", "close_code", "closed")

    def __init__(self) -> None:
        self.accepted = False
        self.closed = False
        self.close_code: int | None = None


def connection_state() -> ConnectionState:
    """The state of the WebSocket being served (created on first use)."""
    if not has_websocket_context():
        raise RuntimeError("this needs a WebSocket context (call it from a websocket route)")
    state: ConnectionState | None = g.get("_switchyard_ws")
    if state is None:
        state = g._switchyard_ws = ConnectionState()
    return state


async def accept_websocket() -> None:
    """Accept the current WebSocket (idempotent) and count it as open."""
    state = connection_state()
    if state.accepted:
        return
    await websocket.accept()
    state.accepted = True
    counters = counters_of_current_app()
    counters.accepted += 1
    counters.connections_open += 1


async def close_websocket(code: int, reason: str = "") -> bool:
    """Close the current WebSocket with ``code`` once; ``False`` if it was already closed.

    Before accept, this refuses the upgrade (Hypercorn answers 403). The reason
    is cut to the 123 bytes a close frame holds.
    """
    state = connection_state()
    if state.closed:
        return False
    state.closed = True
    state.close_code = code
    closes = counters_of_current_app().closes
    closes[code] = closes.get(code, 0) + 1
    await websocket.close(code, _truncate_reason(reason))
    return True


def _truncate_reason(reason: str) -> str:
    data = reason.encode()
    if len(data) <= _MAX_REASON_BYTES:
        return reason
    return data[:_MAX_REASON_BYTES].decode(errors="ignore")


async def _count_teardown(exc: BaseException | None) -> None:
    state: ConnectionState | None = g.get("_switchyard_ws")
    if state is None or not state.accepted:
        return
    counters = counters_of_current_app()
    counters.connections_open -= 1
    if not state.closed:
        counters.disconnects += 1
