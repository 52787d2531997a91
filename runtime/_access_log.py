"""The access log: one DEBUG record per HTTP request and per WebSocket, on ``runtime.access``.

Each record reads ``GET /api/cache/user:1 200 0.42 ms (request id 3f2a...)`` and
carries ``method``, ``path``, ``status``, ``duration_ms`` and ``request_id`` as
fields (JSON keys under ``--log-format json``). A WebSocket is logged when its
session ends, as method ``WEBSOCKET`` with status 101 once accepted, or the
status of the response that refused it. The query string is never logged (it
may carry a token). Durations are read from the node's clock.

It is ASGI middleware around the app, so while ``runtime.access`` is not
enabled for DEBUG (the default at INFO) a request costs one level check and
no Quart hook.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from quart import g, websocket

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from quart import Quart

    from ._clock import Clock

__all__ = ["install_access_log"]

logger = logging.getLogger("runtime.access")

_SCOPE_KEY = "switchyard.access_log"  # where a WebSocket's request id is left for the log
_REQUEST_ID_HEADER = b"x-request-id"
_Message = dict[str, Any]


def install_access_log(app: Quart, clock: Clock) -> None:
    """Log each request and WebSocket of ``app`` at DEBUG on ``runtime.access``, timed by ``clock``.

    Wraps ``app.asgi_app``; HTTP responses give their status and ``X-Request-ID``
    header, and one ``after_websocket`` hook hands a WebSocket's request id over.
    """
    inner = app.asgi_app

    async def asgi_app(
        scope: _Message,
        receive: Callable[[], Awaitable[_Message]],
        send: Callable[[_Message], Awaitable[None]],
    ) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or not logger.isEnabledFor(logging.DEBUG):
            await inner(scope, receive, send)  # type: ignore[arg-type]
            return
        started = clock.monotonic()
        seen: dict[str, Any] = {"status": 500, "request_id": "-"}
        if kind == "websocket":
            scope = {**scope, _SCOPE_KEY: seen}

        async def watch(message: _Message) -> None:
            event = message["type"]
            if event in ("http.response.start", "websocket.http.response.start"):
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == _REQUEST_ID_HEADER:
                        seen["request_id"] = value.decode("latin-1")
            elif event == "websocket.accept":
                seen["status"] = 101
            elif event == "websocket.close" and seen["status"] == 500:
                seen["status"] = 403  # closed before it was accepted: ASGI's refusal
            await send(message)

        try:
            await inner(scope, receive, watch)  # type: ignore[arg-type]
        finally:
            method = scope.get("method", "GET") if kind == "http" else "WEBSOCKET"
            seconds = clock.monotonic() - started
            _log(method, scope["path"], seen["status"], seconds, seen["request_id"])

    async def hand_over_request_id(response: Any) -> Any:
        seen = websocket.scope.get(_SCOPE_KEY)
        if isinstance(seen, dict):
            seen["request_id"] = g.get("request_id", "-")
        return response

    app.asgi_app = asgi_app  # type: ignore[method-assign,assignment]
    app.after_websocket(hand_over_request_id)


def _log(method: str, path: str, status: int, seconds: float, request_id: str) -> None:
    duration_ms = round(seconds * 1000, 3)
    logger.debug(
        "%s %s %s %s ms (request id %s)",
        method,
        path,
        status,
        duration_ms,
        request_id,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "request_id": request_id,
        },
    )
