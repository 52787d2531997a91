"""Counters of the HTTP edge, for the node's statistics registry (``runtime.http``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from quart import Quart

    _Receive = Callable[[], Awaitable[dict[str, Any]]]
    _Send = Callable[[dict[str, Any]], Awaitable[None]]

__all__ = ["HttpCounters", "HttpStatistics", "http_counters"]

_Message = dict[str, Any]
_EXTENSION = "switchyard.http_counters"


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
        """Count every HTTP request of ``app``, as ASGI middleware around it.

        Middleware rather than Quart hooks: it costs one counter, one closure
        and one check per response message, and sees the status of every
        response, error responses included.
        """
        app.extensions[_EXTENSION] = self
        inner = app.asgi_app
        by_class = self.by_class

        async def counted(scope: _Message, receive: _Receive, send: _Send) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)  # type: ignore[arg-type]
                return
            self.started += 1

            async def watch(message: _Message) -> None:
                if message["type"] == "http.response.start":
                    by_class[min(message["status"] // 100, 5)] += 1
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


def http_counters(app: Quart) -> HttpCounters:
    """The counters :meth:`HttpCounters.install` attached to ``app``."""
    counters: HttpCounters = app.extensions[_EXTENSION]
    return counters
