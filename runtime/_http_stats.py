"""Counters of the HTTP edge, for the node's statistics registry (``runtime.http``).

The same ASGI layer stamps every HTTP request with its request id (see
:meth:`HttpCounters.install`), so a request pays one wrapper for both.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from quart import Quart

    _Receive = Callable[[], Awaitable[dict[str, Any]]]
    _Send = Callable[[dict[str, Any]], Awaitable[None]]

__all__ = ["REQUEST_ID_SCOPE_KEY", "HttpCounters", "HttpStatistics", "http_counters"]

_Message = dict[str, Any]
_EXTENSION = "switchyard.http_counters"

#: Where an HTTP request's id (``str``) is kept in its ASGI scope.
REQUEST_ID_SCOPE_KEY = "switchyard.request_id"
_REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class HttpStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Requests answered since the node started, by status class, and those in flight."""

    requests: int
    in_flight: int
    responses_2xx: int
    responses_3xx: int
    responses_4xx: int
    responses_5xx: int


class HttpCounters:
    """Mutable counters behind :class:`HttpStatistics`; one per app, updated by its hooks."""

    __slots__ = ("by_class", "finished", "started")

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.by_class = [0, 0, 0, 0, 0, 0]  # index: status // 100

    def install(self, app: Quart) -> None:
        """Count every HTTP request of ``app`` and give it a request id, as ASGI middleware.

        The id is the client's ``X-Request-ID`` when it is 1 to 64 characters
        of ``[A-Za-z0-9._-]``, else 32 random hex digits; it is kept in the
        scope under :data:`REQUEST_ID_SCOPE_KEY` and sent back as the
        response's ``X-Request-ID`` (replacing one the app may have set).

        Middleware rather than Quart hooks: it costs one counter, one closure
        and one check per response message, and sees every response, error
        responses included. It must be the innermost layer that reads the
        response headers (the access log reads the id there).
        """
        app.extensions[_EXTENSION] = self
        inner = app.asgi_app
        by_class = self.by_class

        async def counted(scope: _Message, receive: _Receive, send: _Send) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)  # type: ignore[arg-type]
                return
            self.started += 1
            request_id = _request_id(scope["headers"])
            scope[REQUEST_ID_SCOPE_KEY] = request_id.decode("ascii")
            echoed = (_REQUEST_ID_HEADER, request_id)

            async def watch(message: _Message) -> None:
                if message["type"] == "http.response.start":
                    by_class[min(message["status"] // 100, 5)] += 1
                    # Quart sends its header names in lower case (ASGI asks for it).
                    headers = [h for h in message["headers"] if h[0] != _REQUEST_ID_HEADER]
                    headers.append(echoed)
                    message["headers"] = headers
                await send(message)

            try:
                await inner(scope, receive, watch)  # type: ignore[arg-type]
            finally:
                self.finished += 1

        app.asgi_app = counted  # type: ignore[method-assign,assignment]

    def statistics(self) -> HttpStatistics:
        """A snapshot of the counters."""
        by_class = self.by_class
        return HttpStatistics(
            requests=self.started,
            in_flight=max(0, self.started - self.finished),
            responses_2xx=by_class[2],
            responses_3xx=by_class[3],
            responses_4xx=by_class[4],
            responses_5xx=by_class[5],
        )


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The client's ``X-Request-ID`` if well formed, else a new random one (as bytes)."""
    for name, value in headers:
        if name == _REQUEST_ID_HEADER or name.lower() == _REQUEST_ID_HEADER:
            if _REQUEST_ID.fullmatch(value):
                return bytes(value)
            break
    return os.urandom(16).hex().encode()


def http_counters(app: Quart) -> HttpCounters:
    """The counters :meth:`HttpCounters.install` attached to ``app``."""
    counters: HttpCounters = app.extensions[_EXTENSION]
    return counters
