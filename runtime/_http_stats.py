"""Counters of the HTTP edge, for the node's statistics registry (``runtime.http``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from quart import Quart, Response

__all__ = ["HttpCounters", "HttpStatistics", "http_counters"]

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
        """Count every request of ``app`` (before/after-request hooks)."""
        app.extensions[_EXTENSION] = self
        app.before_request(self._on_request)
        app.after_request(self._on_response)

    async def _on_request(self) -> None:
        self.started += 1

    async def _on_response(self, response: Response) -> Response:
        self.finished += 1
        self.by_class[min(response.status_code // 100, 5)] += 1
        return response

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
