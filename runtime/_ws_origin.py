"""The ``Origin`` check every WebSocket upgrade passes before it is accepted.

Browsers send cookies and other ambient credentials with a WebSocket
handshake from any page, and CORS does not apply to WebSockets, so without
this check any web site could open a socket to the node in its visitor's name
(cross-site WebSocket hijacking). The rule, in :func:`origin_allowed`:

* no ``Origin`` header: a non-browser client (a server, a CLI), allowed;
* ``'*'`` among the configured origins (``SWITCHYARD_CORS_ORIGINS``): any
  origin is allowed;
* an origin equal to a configured one (scheme, host and port compared, with
  the scheme's default port filled in and case ignored), allowed;
* an origin equal to the request's own (``ws`` counts as ``http`` and ``wss``
  as ``https``; the host is the ``Host`` header), allowed;
* anything else, including ``Origin: null``: refused before accept with a
  JSON 403, code ``origin_not_allowed``.

Behind a proxy that terminates TLS, the node sees ``ws`` while the page is
``https``: list the public origin in ``SWITCHYARD_CORS_ORIGINS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from quart import websocket

from ._responses import error_response
from ._ws_connection import counters_of_current_app

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from quart import Response

__all__ = ["origin_allowed", "origin_guard"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REQUEST_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def origin_allowed(origin: str | None, *, allowed: Sequence[str], scheme: str, host: str) -> bool:
    """Whether a WebSocket upgrade from ``origin`` may be accepted.

    Args:
        origin: the request's ``Origin`` header, or ``None`` when it has none.
        allowed: the configured origins (``settings.cors_origins``).
        scheme: the request's own scheme (``ws``, ``wss``, ``http`` or ``https``).
        host: the request's ``Host`` header (``example.com:8443``).
    """
    if origin is None or "*" in allowed:
        return True
    seen = _origin_key(origin)
    if seen is None:
        return False
    if any(_origin_key(candidate) == seen for candidate in allowed):
        return True
    own_scheme = _REQUEST_SCHEMES.get(scheme.lower())
    return own_scheme is not None and _origin_key(f"{own_scheme}://{host}") == seen


def origin_guard(allowed: Sequence[str]) -> Callable[[], Awaitable[Response | None]]:
    """A ``before_websocket`` hook that refuses upgrades :func:`origin_allowed` refuses."""
    origins = tuple(allowed)

    async def check_origin() -> Response | None:
        origin = websocket.headers.get("Origin")
        if origin_allowed(origin, allowed=origins, scheme=websocket.scheme, host=websocket.host):
            return None
        counters_of_current_app().reject("origin_not_allowed")
        shown = (origin or "")[:200]
        return error_response(
            403,
            "origin_not_allowed",
            f"origin {shown!r} may not open a WebSocket here; "
            "allowed are this node's own origin and SWITCHYARD_CORS_ORIGINS",
        )

    return check_origin


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin, or ``None`` if it is not ``scheme://host[:port]``."""
    try:
        parts = urlsplit(origin.strip().rstrip("/").lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path:
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    return parts.scheme, parts.hostname, port if port is not None else _DEFAULT_PORTS[parts.scheme]
