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

import asyncio
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

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


class _Flight:
    """One request or WebSocket being served, and what has been sent on it.

    Its :meth:`receive` and :meth:`send` stand for the server's in the app's
    hands: they track the request, and a cut ends a pending ``receive``.
    """

    __slots__ = (
        "_receive",
        "_send",
        "cancelled",
        "cut",
        "disconnected",
        "finished",
        "kind",
        "receiving",
        "scope",
        "started",
    )

    def __init__(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        self.kind, self.scope, self._receive, self._send = kind, scope, receive, send
        self.cut = False
        self.started = False  # HTTP response started / WebSocket accepted
        self.finished = False  # HTTP response complete / WebSocket closed
        self.disconnected = False  # the client went away
        self.receiving: asyncio.Task[Any] | None = None  # waiting in receive() now
        self.cancelled = False  # cut_now() cancelled that wait

    @property
    def where(self) -> str:
        """``GET /path`` or ``WEBSOCKET /path``, for the log."""
        scope = self.scope
        method = scope.get("method", "WEBSOCKET") if self.kind == "http" else "WEBSOCKET"
        return f"{method} {str(scope.get('path', ''))[:_MAX_PATH_SHOWN]}"

    def cut_now(self) -> None:
        self.cut = True
        if self.receiving is not None and not self.cancelled:
            self.cancelled = True
            self.receiving.cancel()

    def _disconnect(self) -> Message:
        if self.kind == "http":
            return {"type": "http.disconnect"}
        return {"type": "websocket.disconnect", "code": _CLOSE_GOING_AWAY}

    # A bare task cancel rather than an anyio CancelScope per call: a scope cost ~10 us
    # per receive and ~25 us when Quart cancels the pending one, on every request.
    async def receive(self) -> Message:
        """The server's ``receive``, or a disconnect once the request is cut."""
        if self.cut:
            return self._disconnect()
        task = asyncio.current_task()
        self.receiving = task
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            # Ours (cut_now) and nobody else's: answer as a disconnect; else propagate.
            if self.cancelled and task is not None and task.uncancel() == 0:
                self.cancelled = False
                return self._disconnect()
            raise
        finally:
            self.receiving = None
        if message["type"] in ("http.disconnect", "websocket.disconnect"):
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        """The server's ``send``, noting when the response starts and ends."""
        kind = message["type"]
        if kind in ("http.response.start", "websocket.accept"):
            self.started = True
        elif (kind == "http.response.body" and not message.get("more_body", False)) or (
            kind == "websocket.close"
        ):
            self.finished = True
        await self._send(message)


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
        flight = _Flight(kind, scope, receive, send)
        self._flights.add(flight)
        try:
            await self.app(scope, flight.receive, flight.send)
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
