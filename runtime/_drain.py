"""Cutting in-flight requests cleanly when a node stops: the ASGI wrapper around its app.

Hypercorn's own way to end a request that outlives ``graceful_timeout`` is to
cancel its task: the client gets an empty 500 (or nothing) and the log a
traceback per connection. :class:`RequestDrain` ends requests the way a client
disconnect would, which Quart handles cleanly: the request's ``receive()``
answers ``http.disconnect`` (``websocket.disconnect``), Quart cancels the
handler and returns, and the wrapper answers what the handler could not:

* an HTTP request whose response has not started gets 503 ``unavailable``
  ("the node is stopping") in the node's JSON error shape, with
  ``Connection: close``;
* one whose response had started is left incomplete (Hypercorn then closes
  the connection, so the client sees a truncated response, never a complete
  wrong one);
* an accepted WebSocket is closed with 1001 ``node_stopping``.

Each cut request is logged once, at INFO, without a traceback. An HTTP request
the app ends without a response (or with an exception escaping Quart's own
handling) gets a JSON 500 instead of Hypercorn's empty one.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from ._protocol import ErrorReply

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]  # Quart types its events precisely

__all__ = ["STOPPING_CODE", "STOPPING_MESSAGE", "RequestDrain"]

logger = logging.getLogger("runtime.http")

STOPPING_CODE = "unavailable"
STOPPING_MESSAGE = "the node is stopping"
_CLOSE_GOING_AWAY = 1001
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
_MAX_PATH_SHOWN = 200


@dataclass(eq=False)
class _Flight:
    """One request or WebSocket being served, and what has been sent on it."""

    kind: str
    where: str
    cut: bool = False
    started: bool = False  # HTTP response started / WebSocket accepted
    finished: bool = False  # HTTP response complete / WebSocket closed
    disconnected: bool = False  # the client went away
    receiving: anyio.CancelScope | None = field(default=None)

    def cut_now(self) -> None:
        self.cut = True
        if self.receiving is not None:
            self.receiving.cancel()


class RequestDrain:
    """An ASGI app wrapping ``app``: it tracks in-flight requests and can cut them.

    :meth:`cut` ends every request and WebSocket in flight at once (see the
    module docstring for what each client gets); the node calls it when its
    shutdown grace expires and on a second SIGINT/SIGTERM. Lifespan events
    pass straight through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._flights: set[_Flight] = set()

    @property
    def in_flight(self) -> int:
        """How many HTTP requests and WebSockets are being served now."""
        return len(self._flights)

    def cut(self) -> int:
        """Cut every request and WebSocket in flight; return how many were cut."""
        flights = [f for f in self._flights if not f.cut]
        for flight in flights:
            flight.cut_now()
        return len(flights)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection through the wrapped app."""
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "WEBSOCKET") if kind == "http" else "WEBSOCKET"
        flight = _Flight(kind, f"{method} {str(scope.get('path', ''))[:_MAX_PATH_SHOWN]}")
        self._flights.add(flight)
        try:
            await self.app(scope, _receiver(flight, receive), _sender(flight, send))
        except Exception as exc:
            # Quart answers a handler's errors itself; this is one escaping its ASGI layer.
            logger.error("%s failed outside its handler", flight.where, exc_info=exc)
            if kind == "http" and not flight.started and not flight.disconnected:
                await _answer(send, scope, 500, "internal_error", "internal server error")
            return
        finally:
            self._flights.discard(flight)
        if flight.cut:
            await _answer_cut(flight, scope, send)
        elif kind == "http" and not flight.started and not flight.disconnected:
            logger.error("%s returned without a response", flight.where)
            await _answer(send, scope, 500, "internal_error", "the app returned no response")


def _receiver(flight: _Flight, receive: Receive) -> Receive:
    disconnect: Message = (
        {"type": "http.disconnect"}
        if flight.kind == "http"
        else {"type": "websocket.disconnect", "code": _CLOSE_GOING_AWAY}
    )

    async def receive_or_cut() -> Message:
        if flight.cut:
            return dict(disconnect)
        with anyio.CancelScope() as scope:
            flight.receiving = scope
            try:
                message = await receive()
                if message["type"] in ("http.disconnect", "websocket.disconnect"):
                    flight.disconnected = True
                return message
            finally:
                flight.receiving = None
        return dict(disconnect)  # the scope was cancelled by cut()

    return receive_or_cut


def _sender(flight: _Flight, send: Send) -> Send:
    async def send_and_track(message: Message) -> None:
        kind = message["type"]
        if kind in ("http.response.start", "websocket.accept"):
            flight.started = True
        elif (kind == "http.response.body" and not message.get("more_body", False)) or (
            kind == "websocket.close"
        ):
            flight.finished = True
        await send(message)

    return send_and_track


async def _answer_cut(flight: _Flight, scope: Scope, send: Send) -> None:
    if flight.finished:
        logger.info("%s completed as it was cut", flight.where)
        return
    if flight.kind == "websocket":
        if flight.started:
            await send(
                {"type": "websocket.close", "code": _CLOSE_GOING_AWAY, "reason": "node_stopping"}
            )
            logger.info("cut %s: closed 1001 node_stopping", flight.where)
        else:
            await send({"type": "websocket.close", "code": _CLOSE_GOING_AWAY})
            logger.info("cut %s before it was accepted: refused", flight.where)
        return
    if flight.started:
        logger.info("cut %s mid-response: the connection is closed", flight.where)
        return
    await _answer(send, scope, 503, STOPPING_CODE, STOPPING_MESSAGE)
    logger.info("cut %s: answered 503 %s", flight.where, STOPPING_CODE)


async def _answer(send: Send, scope: Scope, status: int, code: str, message: str) -> None:
    """Send a complete JSON error response in the node's shape, closing the connection."""
    body = msgspec.json.encode(ErrorReply.of(code, message))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"x-request-id", _request_id(scope)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _request_id(scope: Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"x-request-id" and _REQUEST_ID.match(value):
            return bytes(value)
    return uuid.uuid4().hex.encode()
