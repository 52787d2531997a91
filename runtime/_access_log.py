"""The access log: one DEBUG record per HTTP request and per WebSocket, on ``runtime.access``.

Each record reads ``GET /api/cache/user:1 200 0.42 ms (request id 3f2a...)`` and
carries ``method``, ``path``, ``status``, ``duration_ms`` and ``request_id`` as
fields (JSON keys under ``--log-format json``). A WebSocket is logged when its
session ends, as method ``WEBSOCKET`` with status 101, or with the status of
the response that refused the upgrade. The query string is never logged: it
may carry a token. The duration is read from the node's clock.

When ``runtime.access`` is not enabled for DEBUG (the default at INFO), a
request costs one level check.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

from quart import g, request, websocket

if TYPE_CHECKING:
    from quart import Quart

    from ._clock import Clock

__all__ = ["install_access_log"]

logger = logging.getLogger("runtime.access")

_Response = TypeVar("_Response")


def install_access_log(app: Quart, clock: Clock) -> None:
    """Log each request and WebSocket of ``app`` at DEBUG on ``runtime.access``, timed by ``clock``.

    Registers a before and an after hook for requests and for WebSockets.
    """

    async def start() -> None:
        if logger.isEnabledFor(logging.DEBUG):
            g.access_started = clock.monotonic()

    async def finish_request(response: _Response) -> _Response:
        started: float | None = g.get("access_started")
        if started is not None:
            status: int = getattr(response, "status_code", 0)
            _log(request.method, request.path, status, clock.monotonic() - started)
        return response

    async def finish_websocket(response: _Response) -> _Response:
        started: float | None = g.get("access_started")
        if started is not None:
            status: int = getattr(response, "status_code", 101)  # None: the session ran
            _log("WEBSOCKET", websocket.path, status, clock.monotonic() - started)
        return response

    app.before_request(start)
    app.before_websocket(start)
    app.after_request(finish_request)
    app.after_websocket(finish_websocket)


def _log(method: str, path: str, status: int, seconds: float) -> None:
    duration_ms = round(seconds * 1000, 3)
    request_id = g.get("request_id", "-")
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
