"""Bearer-token authentication at the edge, for HTTP requests and WebSocket handshakes alike.

An HTTP request carries its token in ``Authorization: Bearer <token>``. A
WebSocket handshake may carry it there too (servers, CLIs), or in a ``token``
query parameter (browsers cannot set headers on a WebSocket), or, after
accept, in a first frame ``{"type": "auth", "token": "..."}`` (keeps the
token out of URLs and access logs); see ``authenticate_websocket``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from quart import has_websocket_context, request, websocket

from ._auth import AuthError

if TYPE_CHECKING:
    from collections.abc import Collection

    from ._auth import Principal, TokenVerifier

__all__ = ["TokenSource", "authenticate", "handshake_principal", "missing_token", "verify_token"]

TokenSource = Literal["header", "query", "first_frame"]
"""Where a WebSocket client may put its token: ``Authorization`` header, ``token`` query
parameter, or a first frame ``{"type": "auth", "token": "..."}`` after accept."""

_NO_SECRET = (
    "this node has no JWT secret configured (set SWITCHYARD_JWT_SECRET), "
    "so it cannot accept any token"
)


def authenticate(verifier: TokenVerifier | None, header: str | None) -> Principal:
    """Verify a bearer ``Authorization`` header value; the check HTTP and WebSockets share."""
    if verifier is None:
        raise AuthError("missing_token", _NO_SECRET)
    return verifier.verify_authorization_header(header)


def verify_token(verifier: TokenVerifier | None, token: str) -> Principal:
    """Verify a bare token (from a query parameter or an auth frame)."""
    if verifier is None:
        raise AuthError("missing_token", _NO_SECRET)
    if not token.strip():
        raise AuthError("missing_token", "the token is empty")
    return verifier.verify(token.strip())


def handshake_principal(
    verifier: TokenVerifier | None, sources: Collection[TokenSource]
) -> Principal | None:
    """The principal of the current request's handshake, or ``None`` if it carries no token.

    Looks at the ``Authorization`` header (if ``"header"`` is in ``sources``),
    then the ``token`` query parameter (if ``"query"`` is). A token that is
    present but bad raises; the other source is not tried.

    Raises:
        AuthError: the token is malformed, invalid, expired, or the node has no secret.
    """
    if verifier is None:
        raise AuthError("missing_token", _NO_SECRET)
    headers = websocket.headers if has_websocket_context() else request.headers
    args = websocket.args if has_websocket_context() else request.args
    if "header" in sources:
        header = headers.get("Authorization")
        if header is not None:
            return authenticate(verifier, header)
    if "query" in sources:
        token = args.get("token")
        if token is not None:
            return verify_token(verifier, token)
    return None


def missing_token(sources: Collection[TokenSource]) -> AuthError:
    """The ``missing_token`` error that names where a token could have been sent."""
    where = {
        "header": "an 'Authorization: Bearer <token>' header",
        "query": "a 'token' query parameter",
        "first_frame": 'a first frame {"type": "auth", "token": "..."}',
    }
    listed = [where[source] for source in ("header", "query", "first_frame") if source in sources]
    return AuthError("missing_token", "no token; send " + " or ".join(listed))
