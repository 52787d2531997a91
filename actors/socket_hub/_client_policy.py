"""When the hub client reconnects, and how long it waits: close codes and full-jitter backoff.

=========================================  ===========================================
close code                                 what the client does
=========================================  ===========================================
1000 normal                                ends (``events()`` stops, no error)
1001 going away, 1006 dropped, 1011        reconnects with backoff and resumes
internal error, 1012 service restart,
1013 try again later, 1014 bad gateway,
4008 slow consumer, 4029 rate limited
4001 unauthorized / token expired          reconnects with a fresh token when it has a
                                           ``token_provider``; fatal without one
anything else (1008 policy, 1009 too big,  fatal: the client ends with a
4003 forbidden, ...)                       :class:`~actors.socket_hub.client.HubClientError`
                                           naming the code and reason
=========================================  ===========================================

An upgrade the server refuses with an HTTP status counts as the close code that
status stands for after accept (401 → 4001, 403 → 4003, 429 → 4029, 503 →
1013, other 5xx → 1011, other 4xx → 1008), as the runtime maps them.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "RETRYABLE_CLOSE_CODES",
    "CloseAction",
    "close_action",
    "close_code_for_http_status",
    "full_jitter_delay",
]

RETRYABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014, 4008, 4029})
"""Close codes after which the client reconnects (and resumes from its positions)."""

_UNAUTHORIZED = 4001
_HTTP_CLOSE_CODES = {401: 4001, 403: 4003, 429: 4029, 503: 1013}


class CloseAction(enum.Enum):
    """What a close code asks of the client."""

    STOP = "stop"
    """The session ended normally: stop without an error."""
    RECONNECT = "reconnect"
    """Reconnect with backoff and rejoin every room from its position."""
    REAUTHENTICATE = "reauthenticate"
    """Reconnect with a fresh token, if the client has a token provider; else fatal."""
    FATAL = "fatal"
    """Give up: reconnecting would be refused the same way."""


def close_action(code: int) -> CloseAction:
    """What the client does about a connection closed with ``code`` (see the module table)."""
    if code == 1000:
        return CloseAction.STOP
    if code in RETRYABLE_CLOSE_CODES:
        return CloseAction.RECONNECT
    if code == _UNAUTHORIZED:
        return CloseAction.REAUTHENTICATE
    return CloseAction.FATAL


def close_code_for_http_status(status: int) -> int:
    """The close code a refused upgrade's HTTP ``status`` stands for."""
    if status in _HTTP_CLOSE_CODES:
        return _HTTP_CLOSE_CODES[status]
    return 1011 if status >= 500 else 1008


def full_jitter_delay(attempt: int, *, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Seconds to wait before reconnect ``attempt`` (0 first): ``rng() * min(cap, base * 2**n)``.

    "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"):
    the ceiling doubles per failed attempt up to ``cap``, and the wait is drawn
    uniformly below it, so clients dropped together do not come back together.
    ``rng`` returns a float in ``[0, 1)`` (``random.random``).

    Raises:
        ValueError: ``attempt`` is negative, or ``base``/``cap`` are not positive numbers.
    """
    if attempt < 0:
        raise ValueError(f"attempt is {attempt}; expected 0 or more")
    if not (math.isfinite(base) and base > 0 and math.isfinite(cap) and cap > 0):
        raise ValueError(f"base ({base!r}) and cap ({cap!r}) must be finite numbers > 0")
    ceiling = cap if attempt >= 64 else min(cap, base * 2.0**attempt)
    return rng() * ceiling
